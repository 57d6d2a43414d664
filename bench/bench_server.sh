#!/usr/bin/env bash
# dsv3 serve under load (not a test; prints numbers).
#   bench/bench_server.sh path/to/dsv3 [BATCH_MODEL_DIR] [LOAD_MODEL_DIR]
# 1. Batching: decode throughput of 1 stream vs 8 concurrent streams on BATCH_MODEL_DIR
#    (default /tmp/b5, e.g. made by `dsv3 init --config configs/bench-5gb.json --dtype fp8`).
# 2. Load: 1,000 requests from 64 concurrent keep-alive clients on LOAD_MODEL_DIR (default the
#    v3-fp8 fixture); every request must succeed.
set -euo pipefail
BIN="$1"
BATCH_MODEL="${2:-/tmp/b5}"
LOAD_MODEL="${3:-${DSV3_FIXTURES:-$(cd "$(dirname "$0")/.." && pwd)/../shared/fixtures}/v3-fp8}"
tmp="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT

source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/e2e/lib/server.bash"
SERVER_WAIT_S=300
start() {  # model, extra args...
  local model="$1"; shift
  start_server -m "$model" "$@"
}
stop() { kill -TERM $pid; wait $pid || true; pid=""; }

start "$BATCH_MODEL" --max-batch 8 --ctx 1024
python3 - "$url" "${DECODE_TOKENS:-48}" <<'PY'
import json, sys, threading, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])

def stream(prompt, out):
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": True, "stream": True}
    r = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
    times = []
    with urllib.request.urlopen(r, timeout=3600) as resp:
        for line in resp:
            line = line.decode().strip()
            if line.startswith("data: {"):
                for ch in json.loads(line[6:])["choices"]:
                    times += [time.perf_counter()] * len(ch.get("token_ids", []))
    out.append(times)

def run(k):
    outs, th = [], []
    for i in range(k):
        th.append(threading.Thread(target=stream, args=([0, 17 + i, 33 + i, 5], outs)))
    for t in th: t.start()
    for t in th: t.join()
    # Decode phase: from the moment every stream has its first token to the last token.
    start = max(o[0] for o in outs)
    end = max(o[-1] for o in outs)
    toks = sum(sum(1 for t in o if t > start) for o in outs)
    return toks / (end - start), sum(len(o) for o in outs)

run(1)  # warm-up (page in the weights)
one, _ = run(1)
eight, total = run(8)
print(f"decode throughput: 1 stream {one:.2f} tok/s, 8 streams {eight:.2f} tok/s aggregate "
      f"({eight / one:.2f}x; {total} tokens)")
PY
curl -s "$url/metrics" | grep -E "^dsv3_batch_size_mean|^dsv3_engine_steps_total" || true
stop

start "$LOAD_MODEL" --max-batch 16 --parallel 64
python3 - "$url" <<'PY'
import http.client, json, sys, threading, time, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
N, C = 1000, 64
lock = threading.Lock()
next_i, lat, errors = [0], [], []

def client(c):
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    while True:
        with lock:
            i = next_i[0]; next_i[0] += 1
        if i >= N: break
        stream = i % 4 == 0
        body = {"prompt": [0, 1 + i % 2000, 7, 9], "max_tokens": 8, "temperature": 0.8, "seed": i, "stream": stream}
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            ok = r.status == 200 and (b"data: [DONE]" in data if stream else len(json.loads(data)["choices"][0]["token_ids"]) > 0)
            if not ok: errors.append((r.status, data[:200]))
        except Exception as e:
            errors.append(repr(e))
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
        lat.append(time.perf_counter() - t0)

t0 = time.perf_counter()
th = [threading.Thread(target=client, args=(c,)) for c in range(C)]
for t in th: t.start()
for t in th: t.join()
wall = time.perf_counter() - t0
lat.sort()
print(f"load: {len(lat)} requests, {C} clients, {len(errors)} errors, {wall:.1f} s, {len(lat) / wall:.1f} req/s, "
      f"latency p50 {lat[len(lat) // 2] * 1000:.0f} ms p99 {lat[int(len(lat) * 0.99)] * 1000:.0f} ms")
if errors: print("first errors:", errors[:3]); sys.exit(1)
PY
curl -s "$url/metrics" | grep -E "^dsv3_requests_total|^dsv3_batch_size_mean|^dsv3_requests_inflight" || true
stop
