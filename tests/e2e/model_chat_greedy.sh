#!/usr/bin/env bash
# Chat end to end on the real vocabulary: the e2e-bf16 fixture (DeepseekV3, 129280 tokens) with
# DeepSeek-V3's tokenizer.json copied in; for every ref.json "chat" case with a generation
# prompt, `dsv3 generate --prompt-ids <ids> -n 24 --ignore-eos --json` must give transformers'
# greedy tokens and its decoded text (a divergence is allowed only at a near tie, gap < 0.05).
#   tests/e2e/model_chat_greedy.sh path/to/dsv3
set -euo pipefail
BIN="$1"
SRC="${DSV3_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
FIX="${DSV3_FIXTURES:?DSV3_FIXTURES is not set}"
TOK="${DSV3_TOKENIZER_DIR:-$SRC/.cache/tokenizer}"
DATA="${DSV3_TEST_DATA:-$SRC/tests/data}"
if [ ! -f "$TOK/tokenizer.json" ]; then
  echo "FAIL: $TOK/tokenizer.json is missing (scripts/setup.sh fetches it)" >&2
  exit 1
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cp "$FIX"/e2e-bf16/* "$WORK/"
cp "$TOK/tokenizer.json" "$WORK/"
chmod -R u+w "$WORK"

n_cases=$(node -e 'const r=require(process.argv[1]); console.log(r.chat.length)' "$DATA/ref.json")
checked=0
for ((i = 0; i < n_cases; i++)); do
  ids=$(node -e 'const c=require(process.argv[1]).chat[+process.argv[2]];
    console.log(c.add_generation_prompt ? c.ids.join(",") : "")' "$DATA/ref.json" "$i")
  [ -z "$ids" ] && continue
  "$BIN" generate -m "$WORK" --prompt-ids "$ids" -n 24 --ignore-eos --json > "$WORK/out_$i.json" 2> "$WORK/err_$i.txt" || {
    echo "FAIL: chat case $i: dsv3 generate exited non-zero" >&2
    cat "$WORK/err_$i.txt" >&2
    exit 1
  }
  node - "$DATA/ref.json" "$i" "$WORK/out_$i.json" <<'JS'
const fs = require('fs');
const [refPath, idx, outPath] = process.argv.slice(2);
const c = require(refPath).chat[+idx];
const out = JSON.parse(fs.readFileSync(outPath, 'utf8'));
const fail = (m) => { console.error(`FAIL: chat case ${idx}: ${m}`); process.exit(1); };
if (!Array.isArray(out.tokens) || out.tokens.length !== c.greedy.length)
  fail(`expected ${c.greedy.length} tokens, got ${JSON.stringify(out.tokens)}`);
if (out.finish_reason !== 'length') fail(`finish_reason ${out.finish_reason}`);
let diverged = -1;
for (let j = 0; j < c.greedy.length; j++) {
  if (out.tokens[j] === c.greedy[j]) continue;
  if (c.gaps[j] >= 0.05) fail(`token ${j}: ${out.tokens[j]} vs ${c.greedy[j]} (transformers' gap ${c.gaps[j]})`);
  diverged = j;
  break;
}
if (diverged < 0) {
  if (out.text !== c.greedy_text) fail(`text ${JSON.stringify(out.text)} vs ${JSON.stringify(c.greedy_text)}`);
  console.log(`chat case ${idx}: ${c.ids.length} prompt tokens, 24 tokens and text match`);
} else {
  console.log(`chat case ${idx}: matches up to a near tie at step ${diverged} (gap ${c.gaps[diverged]})`);
}
JS
  checked=$((checked + 1))
done
if [ "$checked" -lt 4 ]; then
  echo "FAIL: only $checked chat cases with a generation prompt" >&2
  exit 1
fi
echo "PASS: $checked chat cases"
