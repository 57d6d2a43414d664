#!/usr/bin/env bash
# dsv3 serve as a process: OpenAI-style requests from a python3 (stdlib) client, greedy output
# against transformers' reference, then SIGTERM while a stream is in flight: the stream must
# finish with all its tokens and [DONE], and the process must exit 0.
#   tests/e2e/server_api.sh path/to/dsv3
set -euo pipefail
BIN="$1"
FIX="${DSV3_FIXTURES:?}"
DATA="${DSV3_TEST_DATA:?}"
tmp="$(mktemp -d)"
pid=""
source "$(dirname "$0")/lib/server.bash"
trap 'rc=$?; [ $rc = 0 ] || { echo "--- server stderr:"; cat "$tmp/err"; }; kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT

start_server -m "$FIX/v3-fp8" --max-batch 4 --api-key sk-e2e

python3 - "$url" "$DATA/ref.json" "$pid" <<'PY'
import json, os, signal, sys, threading, time, urllib.request, urllib.error
url, ref_path, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
ref = json.load(open(ref_path))
KEY = {"Authorization": "Bearer sk-e2e", "Content-Type": "application/json"}

def req(path, body=None, headers=KEY):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(url + path, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(r, timeout=300) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

st, body = req("/health", headers={})
assert st == 200, (st, body)
st, body = req("/v1/models")
assert st == 200 and json.loads(body)["data"][0]["object"] == "model"
st, body = req("/v1/models", headers={})
assert st == 401, st

for case in ref["v3-fp8"]:
    st, body = req("/v1/completions", {"model": "v3-fp8", "prompt": case["prompt"], "max_tokens": 32,
                                       "temperature": 0, "ignore_eos": True})
    assert st == 200, body
    got = json.loads(body)["choices"][0]["token_ids"]
    assert got == case["greedy"], (got, case["greedy"])
print("greedy: ok")

st, body = req("/v1/completions", {"prompt": [1, 2], "max_tokens": -1})
assert st == 400 and "error" in json.loads(body)

st, body = req("/metrics", headers={})
assert st == 200 and b"dsv3_requests_total" in body and b"dsv3_time_to_first_token_seconds_bucket" in body

# SIGTERM with a stream in flight.
result = {}
def stream():
    # Long enough (~1 s even on an idle machine) that the 503 check below lands while it drains.
    body = {"prompt": ref["v3-fp8"][1]["prompt"], "max_tokens": 480, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}
    r = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(), headers=KEY)
    ids, done, usage = [], False, None
    with urllib.request.urlopen(r, timeout=300) as resp:
        for line in resp:
            line = line.decode().strip()
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            ev = json.loads(line[6:])
            for ch in ev["choices"]:
                ids += ch.get("token_ids", [])
                if not result.get("started"):
                    result["started"] = True
            if ev.get("usage"):
                usage = ev["usage"]
    result.update(ids=ids, done=done, usage=usage)
t = threading.Thread(target=stream)
t.start()
while not result.get("started"):
    time.sleep(0.01)
os.kill(pid, signal.SIGTERM)
time.sleep(0.05)
st, _ = req("/v1/completions", {"prompt": [1, 2], "max_tokens": 2})
assert st == 503, st  # draining: no new work
t.join()
assert result["done"], result
assert len(result["ids"]) == 480 and result["usage"]["completion_tokens"] == 480, result
assert result["ids"][:32] == ref["v3-fp8"][1]["greedy"]
print("drain: ok")
PY

for _ in $(seq 1 300); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
if kill -0 $pid 2>/dev/null; then echo "server did not exit after SIGTERM"; exit 1; fi
wait $pid
echo "server_api: ok"
