#!/usr/bin/env bash
# The chat page at / driven by headless chromium (playwright-core from .cache/node): the real
# tokenizer model (e2e-bf16 + tokenizer.json), a streamed answer equal to transformers' greedy
# text, history, the stop button. Skips (exit 0 with a note) when chromium or playwright-core is
# missing.   tests/e2e/server_web.sh path/to/dsv3
set -euo pipefail
BIN="$1"
ROOT="${DSV3_SOURCE_DIR:?}"
NODE_DIR="$ROOT/.cache/node"
if [ ! -x /usr/bin/chromium ] || [ ! -d "$NODE_DIR/node_modules/playwright-core" ]; then
  echo "server_web: SKIPPED (needs /usr/bin/chromium and playwright-core in $NODE_DIR)"
  exit 0
fi
tmp="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
cp -r "${DSV3_FIXTURES:?}/e2e-bf16" "$tmp/model"
cp "${DSV3_TOKENIZER_DIR:?}/tokenizer.json" "$tmp/model/"
"$BIN" serve -m "$tmp/model" --port 0 --ctx 16384 --max-batch 2 >"$tmp/out" 2>"$tmp/err" &
pid=$!
for _ in $(seq 1 600); do
  grep -q "listening on" "$tmp/out" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$tmp/err"; exit 1; }
  sleep 0.1
done
url="$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$tmp/out" | head -1)"
expect="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['chat'][0]['greedy_text'], end='')" "${DSV3_TEST_DATA:?}/ref.json")"
shot="${SCREENSHOT:-$tmp/chat_page.png}"
EXPECT_TEXT="$expect" DSV3_NODE_DIR="$NODE_DIR" node "$ROOT/tests/web/chat_page.mjs" "$url/" "$shot"
kill -TERM $pid
wait $pid
pid=""
echo "server_web: ok"
