#!/usr/bin/env bash
# Cost of JSON-constrained decoding (response_format) per decoded token, through `dsv3 serve` on
# the e2e-bf16 fixture (real 129,280-token vocabulary) with the real tokenizer. Not a test; prints
# numbers. Same prompts and seeds with and without the constraint, alternating, sampled
# (temperature 1); decode ms/token is timed from the first streamed token to the last.
#   bench/bench_constrained.sh path/to/dsv3 [ROUNDS]
set -euo pipefail
BIN="$1"
ROUNDS="${2:-12}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FIX="${DSV3_FIXTURES:-$ROOT/../shared/fixtures}"
TOK="${DSV3_TOKENIZER_DIR:-$ROOT/.cache/tokenizer}"
tmp="$(mktemp -d)"
pid=""
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir "$tmp/model"
cp "$FIX"/e2e-bf16/* "$tmp/model/"
cp "$TOK/tokenizer.json" "$tmp/model/"
chmod -R u+w "$tmp/model"

source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/e2e/lib/server.bash"
SERVER_WAIT_S=300
start_server -m "$tmp/model" --max-batch 1 --ctx 1024

python3 - "$url" "$ROUNDS" <<'PY'
import json, statistics, sys, time, urllib.request
url, rounds = sys.argv[1], int(sys.argv[2])
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name", "tags", "n", "ok"],
          "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}},
                         "n": {"type": "integer"}, "ok": {"type": "boolean"}}}
FORMATS = {"json_object": {"type": "json_object"},
           "json_schema": {"type": "json_schema", "json_schema": {"name": "rec", "schema": SCHEMA}}}

def run(seed, rf):
    body = {"prompt": "Record %d as JSON:" % seed, "max_tokens": 64, "temperature": 1.0, "seed": seed,
            "stream": True, "return_token_ids": True}
    if rf: body["response_format"] = rf
    else: body["ignore_eos"] = True
    r = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                               headers={"Content-Type": "application/json"})
    times = []
    with urllib.request.urlopen(r, timeout=600) as resp:
        for line in resp:
            line = line.decode().strip()
            if line.startswith("data: {"):
                for ch in json.loads(line[6:])["choices"]:
                    times += [time.perf_counter()] * len(ch.get("token_ids") or [])
    return (times[-1] - times[0]) * 1000 / (len(times) - 1), len(times)

for s in range(2): run(100 + s, None), run(100 + s, FORMATS["json_object"])  # warm-up
res = {"none": [], "json_object": [], "json_schema": []}
ntok = {k: 0 for k in res}
for seed in range(rounds):
    for name in ("none", "json_object", "none", "json_schema"):
        ms, n = run(seed, FORMATS.get(name))
        res[name].append(ms)
        ntok[name] += n
base = statistics.median(res["none"])
print("decode ms/token (median over %d requests each; tokens decoded):" % rounds)
print("  unconstrained   %.3f ms  (%d)" % (base, ntok["none"]))
for k in ("json_object", "json_schema"):
    m = statistics.median(res[k])
    print("  %-15s %.3f ms  (%d)  ratio %.3f" % (k, m, ntok[k], m / base))
PY
kill -TERM $pid; wait $pid || true; pid=""
