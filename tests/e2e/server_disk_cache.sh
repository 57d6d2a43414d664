#!/usr/bin/env bash
# dsv3 serve --cache-dir: a prompt's context-cache blocks written by one server process are hits
# (prompt_cache_hit_tokens) for the next process started on the same directory, with the same
# greedy continuation; a corrupted file is a miss with the same output; the same with a BF16 cache.
#   tests/e2e/server_disk_cache.sh path/to/dsv3
set -euo pipefail
BIN="$1"
FIX="${DSV3_FIXTURES:?}"
tmp="$(mktemp -d)"
pid=""
source "$(dirname "$0")/lib/server.bash"
trap 'rc=$?; [ $rc = 0 ] || { echo "--- server stderr:"; cat "$tmp/err" 2>/dev/null; }; [ -z "$pid" ] || kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT

run_once() {  # prints "hit_tokens ids" of one greedy request to a fresh server process (ARGS added)
  start_server -m "$FIX/v3-fp8" --cache-dir "$tmp/cache" --cache-disk-gb 1 "$@"
  python3 - "$url" <<'PY'
import json, sys, urllib.request
prompt = [(i * 37 + 11) % 1000 for i in range(200)]
body = {"prompt": prompt, "max_tokens": 8, "temperature": 0, "ignore_eos": True, "return_token_ids": True}
r = urllib.request.Request(sys.argv[1] + "/v1/completions", data=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
res = json.load(urllib.request.urlopen(r, timeout=300))
print(res["usage"]["prompt_cache_hit_tokens"], json.dumps(res["choices"][0]["token_ids"]))
PY
  kill -TERM $pid
  wait $pid
  pid=""
}

first="$(run_once)"
second="$(run_once)"
[ "${first%% *}" = 0 ] || { echo "first run hit the cache: $first"; exit 1; }
[ "${second%% *}" = 192 ] || { echo "second run: expected 192 cached tokens, got: $second"; exit 1; }
[ "${first#* }" = "${second#* }" ] || { echo "continuations differ: $first / $second"; exit 1; }
ls "$tmp/cache"/*/*.kv >/dev/null
echo "server_disk_cache: ok ($second)"
# A BF16 latent cache keeps its blocks apart from the f32 ones in the same directory (no hits
# from them), and hits its own after a restart with the same continuation.
third="$(run_once --kv-dtype bf16)"
fourth="$(run_once --kv-dtype bf16)"
[ "${third%% *}" = 0 ] || { echo "a bf16 cache hit f32 blocks: $third"; exit 1; }
[ "${fourth%% *}" = 192 ] || { echo "bf16 restart: expected 192 cached tokens, got: $fourth"; exit 1; }
[ "${third#* }" = "${fourth#* }" ] || { echo "bf16 continuations differ: $third / $fourth"; exit 1; }
echo "server_disk_cache --kv-dtype bf16: ok ($fourth)"

# A 1,000-token prompt on the e2e-bf16 fixture: after a restart >= 960 tokens are hits with the
# cold run's logprobs exactly; with every file corrupted, no hits and the same logprobs. (The
# time-to-first-token ratio it prints means something on a bigger model: run
# bench/bench_disk_cache.sh without a model argument.)
bash "$(dirname "$0")/../../bench/bench_disk_cache.sh" "$BIN" "$FIX/e2e-bf16"
