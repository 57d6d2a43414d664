#!/usr/bin/env bash
# `dsv3 tokenize` / `dsv3 detokenize` against the Hugging Face golden cases (tests/data/ref.json)
# through stdin/stdout, plus error reporting with line numbers.
#   tests/e2e/tokenizer_cli.sh path/to/dsv3
set -euo pipefail
BIN="$1"
SRC="${DSV3_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
TOK="${DSV3_TOKENIZER_DIR:-$SRC/.cache/tokenizer}"
DATA="${DSV3_TEST_DATA:-$SRC/tests/data}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

check() {  # check NAME EXPECTED ACTUAL
  if [ "$2" != "$3" ]; then
    echo "FAIL $1: expected $2, got $3" >&2
    exit 1
  fi
}

check "tokenize arg" "[19923,2058]" "$("$BIN" tokenize -m "$TOK" "Hello world")"
check "tokenize stdin" "[0,23166,1]" "$(printf '<｜begin▁of▁sentence｜>Hi<｜end▁of▁sentence｜>' | "$BIN" tokenize -m "$TOK")"
no_special="$("$BIN" tokenize -m "$TOK" --no-special "<｜User｜>")"
[ "$no_special" != "[128803]" ] || { echo "FAIL --no-special matched <｜User｜>" >&2; exit 1; }
check "detokenize" "Hello world" "$(echo '[0, 19923, 2058, 1]' | "$BIN" detokenize -m "$TOK" --skip-special)"

# Golden cases: texts in, ids out; ids in, texts out.
node -e '
  const ref = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const cases = [...ref.tokenize, ...ref.chat];
  require("fs").writeFileSync(process.argv[2], cases.map((c) => JSON.stringify(c.text)).join("\n") + "\n");
  require("fs").writeFileSync(process.argv[3], cases.map((c) => JSON.stringify(c.ids)).join("\n") + "\n");
  require("fs").writeFileSync(process.argv[4], cases.map((c) => JSON.stringify(c.decoded ?? c.text)).join("\n") + "\n");
' "$DATA/ref.json" "$tmp/texts.jsonl" "$tmp/ids.jsonl" "$tmp/decoded.jsonl"
"$BIN" tokenize -m "$TOK" --jsonl < "$tmp/texts.jsonl" > "$tmp/got_ids.jsonl"
"$BIN" detokenize -m "$TOK" --jsonl < "$tmp/ids.jsonl" > "$tmp/got_text.jsonl"
node -e '
  const fs = require("fs");
  const lines = (f) => fs.readFileSync(f, "utf8").split("\n").filter((l) => l.length).map((l) => JSON.parse(l));
  const [want, got, wantText, gotText] = process.argv.slice(1).map(lines);
  let bad = 0;
  for (let i = 0; i < want.length; ++i) {
    if (JSON.stringify(want[i]) !== JSON.stringify(got[i])) { ++bad; console.error(`ids differ on case ${i}`); }
    if (wantText[i] !== gotText[i]) { ++bad; console.error(`text differs on case ${i}`); }
  }
  if (want.length !== got.length || wantText.length !== gotText.length) { ++bad; console.error("line counts differ"); }
  console.log(`${want.length} golden cases, ${bad} differences`);
  process.exit(bad ? 1 : 0);
' "$tmp/ids.jsonl" "$tmp/got_ids.jsonl" "$tmp/decoded.jsonl" "$tmp/got_text.jsonl"

# Errors name the line and exit non-zero.
expect_error() {  # expect_error NAME PATTERN CMD...
  local name="$1" pattern="$2"
  shift 2
  if "$@" > /dev/null 2> "$tmp/err"; then
    echo "FAIL $name: succeeded" >&2
    exit 1
  fi
  grep -q -- "$pattern" "$tmp/err" || { echo "FAIL $name: stderr was: $(cat "$tmp/err")" >&2; exit 1; }
}
printf '"ok"\nnot json\n' > "$tmp/bad1"
expect_error "bad json line" "line 2" sh -c "'$BIN' tokenize -m '$TOK' --jsonl < '$tmp/bad1'"
printf '"ok"\n"ok"\n[1]\n' > "$tmp/bad2"
expect_error "not a string" "line 3" sh -c "'$BIN' tokenize -m '$TOK' --jsonl < '$tmp/bad2'"
printf '[1,2]\n[5, 999999]\n' > "$tmp/bad3"
expect_error "id out of range" "line 2.*out of range" sh -c "'$BIN' detokenize -m '$TOK' --jsonl < '$tmp/bad3'"
printf 'a\xffb' > "$tmp/bad4"
expect_error "invalid utf-8" "not valid UTF-8" sh -c "'$BIN' tokenize -m '$TOK' < '$tmp/bad4'"
expect_error "missing tokenizer" "tokenizer.json" "$BIN" tokenize -m "$tmp/nowhere" "x"
echo "tokenizer CLI: all checks passed"
