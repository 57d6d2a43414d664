#!/usr/bin/env bash
# The disk tier of the context cache (dsv3 serve --cache-dir) across a server restart, on a random
# model big enough that prefilling 1,000 tokens takes real time (configs/bench-dense.json cut to
# 2 layers: ~300M parameters, ~0.6 GB bf16, written to a temporary directory and deleted after).
# Not a test, but it fails if the restarted server's answer is wrong:
#   - run 1 (fresh server, empty cache dir): cold, prompt_cache_hit_tokens 0;
#   - run 2 (restarted server, same dir): >= 960 of the 1,000 prompt tokens are hits, and the
#     logprobs (top 5, 4 greedy tokens) equal the cold run's; time to first token is printed with
#     the cold/warm ratio;
#   - run 3 (restarted, every cache file corrupted): no hits, the same logprobs again.
#   bench/bench_disk_cache.sh path/to/dsv3 [MODEL_DIR]   (MODEL_DIR: use this model instead)
set -euo pipefail
BIN="$1"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
MODEL="${2:-}"
if [ -z "$MODEL" ]; then
  python3 -c "
import json, sys
c = json.load(open('$ROOT/configs/bench-dense.json'))
c['num_hidden_layers'] = 2; c['first_k_dense_replace'] = 2
json.dump(c, open('$tmp/config.json', 'w'), indent=1)"
  "$BIN" init --config "$tmp/config.json" --out "$tmp/model" --dtype bf16 >/dev/null
  MODEL="$tmp/model"
  echo "model: bench-dense with 2 layers, $(du -sh "$MODEL" | cut -f1)"
fi

source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/e2e/lib/server.bash"
SERVER_WAIT_S=300
start() { start_server -m "$MODEL" --max-batch 1 --ctx 2048 --cache-dir "$tmp/cache" --cache-disk-gb 2; }
stop() { kill -TERM $pid; wait $pid || true; pid=""; }

run() {  # one streamed greedy request with a 1,000-token prompt to a fresh server: writes $tmp/$1.json
  start
  python3 - "$url" "$tmp/$1.json" <<'PY'
import json, sys, time, urllib.request
url, out = sys.argv[1], sys.argv[2]
# Warm the server up on an unrelated prompt (pages the weights in) without touching the cache chain.
def req(prompt, stream):
    body = {"prompt": prompt, "max_tokens": 4, "temperature": 0, "ignore_eos": True, "logprobs": 5,
            "stream": stream, "stream_options": {"include_usage": True}} if stream else \
           {"prompt": prompt, "max_tokens": 1, "temperature": 0}
    return urllib.request.urlopen(urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                  headers={"Content-Type": "application/json"}), timeout=3600)
req([5, 6, 7], False).read()
prompt = [(i * 7919 + 13) % 31000 + 2 for i in range(1000)]
t0 = time.perf_counter()
ttft, usage, lps = None, None, []
with req(prompt, True) as resp:
    for line in resp:
        line = line.decode().strip()
        if not line.startswith("data: {"): continue
        ev = json.loads(line[6:])
        for ch in ev["choices"]:
            if ch.get("text") is not None and ttft is None: ttft = time.perf_counter() - t0
            lp = ch.get("logprobs")
            # Flattened: how tokens are grouped into stream events depends on timing.
            if lp: lps.extend(zip(lp["token_logprobs"], lp["top_logprobs"], lp["tokens"]))
        if ev.get("usage"): usage = ev["usage"]
json.dump({"ttft": ttft, "usage": usage, "logprobs": lps}, open(out, "w"))
PY
  stop
}

run cold
run warm
for f in "$tmp"/cache/*/*.kv; do printf '\x7f\x7f\x7f\x7f' | dd of="$f" bs=1 seek=200 conv=notrunc 2>/dev/null; done
run corrupt
python3 - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
cold, warm, bad = (json.load(open(f"{d}/{k}.json")) for k in ("cold", "warm", "corrupt"))
hits = [r["usage"]["prompt_cache_hit_tokens"] for r in (cold, warm, bad)]
print("prompt_cache_hit_tokens cold/warm/corrupt: %d / %d / %d (of %d)" % (*hits, warm["usage"]["prompt_tokens"]))
print("time to first token: cold %.3f s, after restart %.3f s: %.1fx shorter" %
      (cold["ttft"], warm["ttft"], cold["ttft"] / warm["ttft"]))
print("logprobs after restart identical to cold:", warm["logprobs"] == cold["logprobs"],
      "; after corruption:", bad["logprobs"] == cold["logprobs"])
ok = hits[0] == 0 and hits[1] >= 960 and hits[2] == 0 and warm["logprobs"] == cold["logprobs"] \
     and bad["logprobs"] == cold["logprobs"] and cold["logprobs"]
sys.exit(0 if ok else 1)
PY
echo "bench_disk_cache: ok"
