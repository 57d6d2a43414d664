#!/usr/bin/env bash
# `dsv3 tokenizer train`: the CLI (errors, output files, `dsv3 template` with the trained folder),
# then parity with Hugging Face's Rust `tokenizers` (tests/js/train_parity.mjs): every id of the
# held-out text and of texts with added tokens, and the merges HF's own trainer picks.
#   tests/e2e/tokenizer_train_hf_parity.sh path/to/dsv3
set -euo pipefail
BIN="$1"
SRC="${DSV3_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
export DSV3_NODE_DIR="${DSV3_NODE_DIR:-$SRC/.cache/node}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

expect_fail() {  # expect_fail "message part" ARGS...: must exit non-zero naming the problem
  local want="$1"
  shift
  if "$BIN" "$@" >"$tmp/out" 2>"$tmp/err"; then
    echo "FAIL: dsv3 $* succeeded" >&2
    exit 1
  fi
  grep -qF -- "$want" "$tmp/err" || { echo "FAIL: dsv3 $*: expected '$want' in: $(cat "$tmp/err")" >&2; exit 1; }
}

printf 'the cat sat on the mat\nthe dog sat on the log\n' >"$tmp/small.txt"
expect_fail "at least 274" tokenizer train --vocab 100 --out "$tmp/t0" "$tmp/small.txt"
expect_fail "$tmp/missing.txt" tokenizer train --vocab 300 --out "$tmp/t0" "$tmp/missing.txt"
mkdir -p "$tmp/busy" && touch "$tmp/busy/x"
expect_fail "not empty" tokenizer train --vocab 300 --out "$tmp/busy" "$tmp/small.txt"
"$BIN" -q tokenizer train --vocab 300 --out "$tmp/busy" --force "$tmp/small.txt"
"$BIN" -q tokenizer train --vocab 300 --out "$tmp/t1" --threads 1 --min-frequency 2 "$tmp/small.txt"
ls "$tmp/t1" | tr '\n' ' ' | grep -qx "tokenizer.json tokenizer_config.json " || { echo "FAIL: files in OUT: $(ls -a "$tmp/t1")" >&2; exit 1; }
got="$(echo '[{"role":"system","content":"S"},{"role":"user","content":"Hi"}]' | "$BIN" template -m "$tmp/t1" --add-generation-prompt)"
want="<｜begin▁of▁sentence｜>S<｜User｜>Hi<｜Assistant｜>"
[ "$got" = "$want" ] || { echo "FAIL: dsv3 template: got '$got', want '$want'" >&2; exit 1; }
echo "cli: errors, --force, --threads/--min-frequency and dsv3 template OK"

if [ ! -d "$DSV3_NODE_DIR/node_modules/tokenizers" ]; then
  echo "FAIL: tokenizers (Hugging Face) is not installed in $DSV3_NODE_DIR (scripts/test.sh installs it)" >&2
  exit 1
fi
exec node "$SRC/tests/js/train_parity.mjs" "$BIN"
