#!/usr/bin/env bash
# dsv3 tokenize vs the independent JS tokenizer (@lenml/tokenizers, installed by scripts/test.sh
# into .cache/node) on >= 5 MB of mixed text; fails on any mismatch.
#   tests/e2e/tokenizer_js_parity.sh path/to/dsv3
set -euo pipefail
BIN="$1"
SRC="${DSV3_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TOK="${DSV3_TOKENIZER_DIR:-$SRC/.cache/tokenizer}"
export DSV3_NODE_DIR="${DSV3_NODE_DIR:-$SRC/.cache/node}"
if [ ! -d "$DSV3_NODE_DIR/node_modules/@lenml/tokenizers" ]; then
  echo "FAIL: @lenml/tokenizers is not installed in $DSV3_NODE_DIR (scripts/test.sh installs it)" >&2
  exit 1
fi
exec node "$SRC/tests/js/parity.mjs" "$BIN" "$TOK"
