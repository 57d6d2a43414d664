#!/usr/bin/env bash
# dsv3 tokenize vs Hugging Face's Rust `tokenizers` (official Node binding, installed by
# scripts/test.sh into .cache/node) on >= 5 MB of mixed text; fails on any mismatch. The second
# independent reference next to tokenizer_js_parity.sh (@lenml/tokenizers).
#   tests/e2e/tokenizer_hf_parity.sh path/to/dsv3
set -euo pipefail
BIN="$1"
SRC="${DSV3_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TOK="${DSV3_TOKENIZER_DIR:-$SRC/.cache/tokenizer}"
export DSV3_NODE_DIR="${DSV3_NODE_DIR:-$SRC/.cache/node}"
if [ ! -d "$DSV3_NODE_DIR/node_modules/tokenizers" ]; then
  echo "FAIL: tokenizers (Hugging Face) is not installed in $DSV3_NODE_DIR (scripts/test.sh installs it)" >&2
  exit 1
fi
exec node "$SRC/tests/js/parity.mjs" --ref hf "$BIN" "$TOK"
