#!/usr/bin/env bash
# Expert-parallel inference under mpirun (issue 13): the routed experts of every MoE layer are
# split over the ranks and rows travel by MPI all-to-all. Checks: score (with the MTP head) at
# -np 2 and 4 within 1e-5 of one process on both fixtures; greedy generation (plain and MTP
# speculative) identical to one process and to transformers; the server under mpirun answers
# the same and drains on SIGUSR2 (which mpirun forwards) with exit 0; each rank's resident
# weights are its share; failures (too many ranks, a rank that cannot map its shard, a command
# that does not run under mpirun, a rank killed mid-serve) end the job with a message, no hang.
set -euo pipefail
BIN="$1"
FIX="${DSV3_FIXTURES:?}"
tmp="$(mktemp -d)"
pid=""
source "$(dirname "$0")/lib/server.bash"
trap 'rc=$?; [ $rc = 0 ] || { echo "--- stderr:"; cat "$tmp/err" 2>/dev/null; }; kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
command -v mpirun >/dev/null || { echo "infer_mpi: mpirun missing (Debian: openmpi-bin)" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
MPI=(mpirun --oversubscribe --bind-to none)
ids() { python3 -c "import json,sys; print(','.join(map(str, json.load(open('$FIX/ref.json'))['$1'][$2]['prompt'])))"; }

# 1. score: logprobs (and MTP logprobs) at K ranks vs one process.
for m in "v3-fp8 0 --mtp" "v3-fp8 1 --mtp" "v3-fp8 2 --mtp" "v2lite-bf16 0"; do
  set -- $m ""
  p="$(ids "$1" "$2")"
  "$BIN" score -m "$FIX/$1" --prompt-ids "$p" $3 -t 1 > "$tmp/$1-$2.k1.json"
  for k in 2 4; do
    timeout 300 "${MPI[@]}" -np $k "$BIN" score -m "$FIX/$1" --prompt-ids "$p" $3 -t 1 > "$tmp/$1-$2.k$k.json"
  done
done
python3 - "$tmp" <<'PY'
import glob, json, sys
tmp = sys.argv[1]
for f1 in sorted(glob.glob(f"{tmp}/*.k1.json")):
    one = json.load(open(f1))
    for k in (2, 4):
        many = json.load(open(f1.replace(".k1.", f".k{k}.")))
        worst = 0.0
        for key in ("token_logprobs", "mtp_token_logprobs"):
            a, b = one.get(key, []), many.get(key, [])
            assert len(a) == len(b), (key, len(a), len(b))
            worst = max([worst] + [abs(x - y) for x, y in zip(a, b) if x is not None])
        assert one.get("mtp_argmax") == many.get("mtp_argmax")
        assert worst <= 1e-5, (f1, k, worst)
        print(f"score {f1.split('/')[-1][:-8]} -np {k}: worst |logprob diff| {worst:.1e}")
PY

# 2. greedy generation, plain and MTP speculative, vs one process and transformers' greedy.
for i in 0 1 2; do
  p="$(ids v3-fp8 $i)"
  for spec in "" "--speculative mtp"; do
    "$BIN" generate -m "$FIX/v3-fp8" --prompt-ids "$p" -n 32 --temperature 0 --ignore-eos --json -t 1 $spec > "$tmp/g$i.k1.json"
    for k in 2 4; do
      timeout 300 "${MPI[@]}" -np $k "$BIN" generate -m "$FIX/v3-fp8" --prompt-ids "$p" -n 32 --temperature 0 --ignore-eos \
        --json -t 1 $spec > "$tmp/g$i.k$k.json"
      python3 - "$tmp/g$i.k1.json" "$tmp/g$i.k$k.json" "$FIX/ref.json" $i <<'PY'
import json, sys
one, many, ref = (json.load(open(f)) for f in sys.argv[1:4])
assert one["tokens"] == many["tokens"], (one["tokens"], many["tokens"])
assert many["tokens"] == ref["v3-fp8"][int(sys.argv[4])]["greedy"]
PY
    done
  done
done
echo "greedy: identical at -np 1, 2, 4 (plain and MTP speculative) and equal to transformers"

# 3. the server under mpirun: same completions; SIGUSR2 to mpirun drains like SIGTERM does.
LAUNCH=("${MPI[@]}" -np 2)
start_server -m "$FIX/v3-fp8" -t 1
python3 - "$url" "$FIX/ref.json" "$pid" <<'PY'
import json, os, signal, sys, threading, time, urllib.request, urllib.error
url, ref, pid = sys.argv[1], json.load(open(sys.argv[2])), int(sys.argv[3])
H = {"Content-Type": "application/json"}
def req(body):
    r = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(), headers=H)
    try:
        with urllib.request.urlopen(r, timeout=300) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
for case in ref["v3-fp8"]:
    st, body = req({"prompt": case["prompt"], "max_tokens": 32, "temperature": 0, "ignore_eos": True})
    assert st == 200, body
    assert json.loads(body)["choices"][0]["token_ids"] == case["greedy"]
result = {}
def stream():
    body = {"prompt": ref["v3-fp8"][1]["prompt"], "max_tokens": 400, "temperature": 0, "ignore_eos": True, "stream": True}
    r = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(), headers=H)
    ids, done = [], False
    with urllib.request.urlopen(r, timeout=300) as resp:
        for line in resp:
            line = line.decode().strip()
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                for ch in json.loads(line[6:])["choices"]:
                    ids += ch.get("token_ids", [])
                    result["started"] = True
    result.update(ids=ids, done=done)
t = threading.Thread(target=stream)
t.start()
while not result.get("started"):
    time.sleep(0.01)
os.kill(pid, signal.SIGUSR2)
time.sleep(0.05)
st, _ = req({"prompt": [1, 2], "max_tokens": 2})
assert st == 503, st
t.join()
assert result["done"] and len(result["ids"]) == 400, result
assert result["ids"][:32] == ref["v3-fp8"][1]["greedy"]
print("server under mpirun: greedy ok, drained on SIGUSR2")
PY
rc=0; timeout 120 tail --pid=$pid -f /dev/null || rc=$?
[ $rc = 0 ] || { echo "mpirun did not exit after the drain"; exit 1; }
wait $pid || { echo "mpirun exited $? after the drain"; exit 1; }

# 4. memory per rank: a model whose experts are large next to a page (1 MB each).
python3 - "$FIX/v3-fp8/config.json" "$tmp/big.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(hidden_size=1024, moe_intermediate_size=1024, intermediate_size=1024, num_hidden_layers=2, first_k_dense_replace=1)
json.dump(c, open(sys.argv[2], "w"))
PY
"$BIN" -q init --config "$tmp/big.json" --out "$tmp/big"
timeout 300 "${MPI[@]}" -np 4 "$BIN" bench -m "$tmp/big" -t 1 -p 32 -n 16 --reps 1 --no-bandwidth --json > "$tmp/bench.json"
python3 - "$tmp/bench.json" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 1, f"{len(lines)} lines on stdout: only rank 0 prints"
j = json.loads(lines[0])
ranks = j["ranks"]
assert len(ranks) == 4
for r in ranks:
    res, plan = r["resident_weight_bytes"], r["planned_weight_bytes"]
    print(f"rank {r['rank']}: resident {res/1e6:.1f} MB, planned {plan/1e6:.1f} MB")
    assert res <= plan * 1.05 + 1e6, r  # never the other ranks' experts
    assert res >= 0.3 * plan, r          # and it did read its own
workers = sum(r["resident_weight_bytes"] for r in ranks[1:])
assert workers < 0.8 * j["weights_bytes"], (workers, j["weights_bytes"])
c, ideal = j["comm_bytes_per_decode_token"], j["comm_bytes_per_decode_token_ideal"]
print(f"all-to-all per decode token {c/1e3:.1f} KB, ideal {ideal/1e3:.1f} KB")
assert 0 < c < 3 * ideal, (c, ideal)
PY

# 5. failures end the job with a message naming the rank and the reason.
python3 - "$FIX/v3-fp8/config.json" "$tmp/two.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(n_routed_experts=2, n_group=1, topk_group=1, num_experts_per_tok=1)
json.dump(c, open(sys.argv[2], "w"))
PY
"$BIN" -q init --config "$tmp/two.json" --out "$tmp/two"
expect_fail() {  # expect_fail PATTERN CMD...: fails within 120 s with PATTERN on stderr
  local pat="$1"; shift
  if timeout 120 "$@" > /dev/null 2> "$tmp/err"; then echo "expected failure: $*"; exit 1; fi
  [ $? != 124 ] || { echo "hang: $*"; exit 1; }
  grep -q "$pat" "$tmp/err" || { echo "no '$pat' in:"; cat "$tmp/err"; exit 1; }
}
expect_fail "only 2 routed experts" "${MPI[@]}" -np 3 "$BIN" score -m "$tmp/two" --prompt-ids 0,1,2
expect_fail "rank 1 of 2: .*missing" "${MPI[@]}" -np 1 "$BIN" score -m "$FIX/v3-fp8" --prompt-ids 0,1,2 : \
  -np 1 "$BIN" score -m "$tmp/missing" --prompt-ids 0,1,2
expect_fail "'info' does not run under mpirun" "${MPI[@]}" -np 2 "$BIN" info "$FIX/v3-fp8"
rank_pid() {  # the process of rank $1 of the running job
  for p in $(pgrep -f "dsv3 serve" || true); do
    if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then echo $p; return; fi
  done
  echo "rank $1 not found" >&2; exit 1
}
# SIGTERM to rank 0's own process stops the server as without mpirun: every rank exits 0.
start_server -m "$FIX/v3-fp8" -t 1
kill -TERM "$(rank_pid 0)"
rc=0; timeout 60 tail --pid=$pid -f /dev/null || rc=$?
[ $rc = 0 ] || { echo "mpirun still running 60 s after SIGTERM to rank 0"; exit 1; }
wait $pid || { echo "mpirun exited $? after SIGTERM to rank 0"; exit 1; }
# A rank killed while serving ends the job (no hang), and mpirun names it.
start_server -m "$FIX/v3-fp8" -t 1
kill -9 "$(rank_pid 1)"
rc=0; timeout 60 tail --pid=$pid -f /dev/null || rc=$?
[ $rc = 0 ] || { echo "mpirun still running 60 s after rank 1 was killed"; exit 1; }
grep -q "rank 1" "$tmp/err" || { echo "mpirun did not name rank 1:"; cat "$tmp/err"; exit 1; }
echo "infer_mpi: ok"
