#!/usr/bin/env bash
# Trainer checkpoints (issue 10, AC3/AC4 and determinism):
#  - N steps then --resume for N more gives byte-identical files to 2N steps straight (AdamW with
#    float32 moments and bf16 weights; bf16 moments with fp8 weights);
#  - a run killed with SIGKILL at a random moment leaves a complete checkpoint (or none) and
#    resumes to the same bytes as the straight run;
#  - the saved checkpoint loads in score/generate/serve, and `dsv3 score` on the validation sequence
#    agrees with the trainer's val_loss / val_mtp_loss within 1e-5;
#  - the same seed and threads give the same bits; 1 and 2 threads agree within 1e-5.
set -euo pipefail
BIN="$1"
PY=/usr/bin/python3
FX="$DSV3_FIXTURES/v3-fp8"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PY" - "$TMP/docs.jsonl" <<'PYEOF'
import json, random, sys
random.seed(11)
open(sys.argv[1], "w").write("".join(json.dumps([random.randrange(2048) for _ in range(random.randrange(40, 200))]) + "\n"
                                     for _ in range(60)))
PYEOF
"$BIN" -q data --ids "$TMP/docs.jsonl" --out "$TMP/data" --vocab-size 2048 --val-fraction 0.1 --seed 3

COMMON=(--init "$FX" --data "$TMP/data" --batch 2 --seq-len 24 --lr 1e-3 --warmup 2 --decay-start 4 --seed 5
        --val-seqs 1)
same() {  # same DIR_A DIR_B: every file byte-identical
  diff -r "$1" "$2" >/dev/null || { echo "FAIL: $1 and $2 differ:"; diff -rq "$1" "$2" || true; exit 1; }
}

# 1. resume == straight (f32 moments, bf16 weights + float32 masters)
"$BIN" -q train "${COMMON[@]}" -t 1 --steps 6 --out "$TMP/straight" --json > "$TMP/straight.log"
"$BIN" -q train "${COMMON[@]}" -t 1 --steps 3 --out "$TMP/split" --json > /dev/null
"$BIN" -q train "${COMMON[@]}" -t 1 --steps 6 --out "$TMP/split" --resume --json > /dev/null
same "$TMP/straight" "$TMP/split"
# ... and bf16 moments with fp8 weights
"$BIN" -q train "${COMMON[@]}" --moments bf16 --save-dtype fp8 --steps 4 --out "$TMP/s8" > /dev/null
"$BIN" -q train "${COMMON[@]}" --moments bf16 --save-dtype fp8 --steps 2 --out "$TMP/p8" > /dev/null
"$BIN" -q train "${COMMON[@]}" --moments bf16 --save-dtype fp8 --steps 4 --out "$TMP/p8" --resume > /dev/null
same "$TMP/s8" "$TMP/p8"
# Without --resume an existing checkpoint is refused, with a message naming it.
if "$BIN" -q train "${COMMON[@]}" -t 1 --steps 6 --out "$TMP/split" 2> "$TMP/err"; then echo "FAIL: overwrote a checkpoint"; exit 1; fi
grep -q "resume" "$TMP/err"

# Shared MTP embedding and head (the default): the checkpoint holds exact copies of the main
# tensors; an --untie-mtp run's differ after training; resuming either the other way is refused;
# starting from a checkpoint whose copies differ says so.
"$BIN" -q train "${COMMON[@]}" --steps 2 --untie-mtp --out "$TMP/untied" > /dev/null
"$PY" - "$DSV3_SOURCE_DIR/tests/ref" "$TMP/straight" "$TMP/untied" <<'PYEOF'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from dsv3_torch import load_config, load_dir, shared_mtp_names
for d, want in ((sys.argv[2], True), (sys.argv[3], False)):
    W, pairs = load_dir(d), shared_mtp_names(load_config(d))
    assert pairs
    for n, m in pairs.items():
        same = np.array_equal(W[n].view(np.uint32), W[m].view(np.uint32))
        assert same == want, (d, n, m, same)
PYEOF
if "$BIN" -q train "${COMMON[@]}" --steps 3 --out "$TMP/untied" --resume 2> "$TMP/err"; then
  echo "FAIL: resumed an --untie-mtp run without it"; exit 1
fi
grep -q -- "--untie-mtp" "$TMP/err"
if "$BIN" -q train "${COMMON[@]}" -t 1 --steps 7 --untie-mtp --out "$TMP/split" --resume 2> "$TMP/err"; then
  echo "FAIL: resumed a shared-MTP run with --untie-mtp"; exit 1
fi
grep -q -- "--untie-mtp" "$TMP/err"
"$BIN" train --init "$TMP/untied" --data "$TMP/data" --batch 2 --seq-len 24 --steps 1 --out "$TMP/from_untied" \
  2> "$TMP/err" > /dev/null
grep -q "embed_tokens.weight' differs from 'model.embed_tokens.weight'" "$TMP/err"

# 2. SIGKILL at a random moment, then resume to the same bytes.
"$BIN" -q train "${COMMON[@]}" -t 1 --steps 10 --out "$TMP/k_straight" --save-every 1 > /dev/null
for attempt in 1 2; do
  rm -rf "$TMP/killed" "$TMP/killed.partial"
  "$BIN" -q train "${COMMON[@]}" -t 1 --steps 10 --out "$TMP/killed" --save-every 1 > /dev/null &
  pid=$!
  sleep "$("$PY" -c "import random; print(round(random.uniform(0.3, 2.5), 2))")"
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -d "$TMP/killed" ]; then
    "$BIN" -q info "$TMP/killed" > /dev/null  # whatever is in OUT is a whole, valid checkpoint
    test -f "$TMP/killed/trainer_state/state.json"
  fi
  "$BIN" -q train "${COMMON[@]}" -t 1 --steps 10 --out "$TMP/killed" --save-every 1 --resume > /dev/null
  test ! -e "$TMP/killed.partial"
  same "$TMP/k_straight" "$TMP/killed"
done

# 3. The checkpoint loads; score agrees with the trainer's validation losses (f32 weights).
"$BIN" -q train "${COMMON[@]}" -t 2 --steps 3 --save-dtype f32 --out "$TMP/f32" --json > "$TMP/f32.log"
"$BIN" -q generate -m "$TMP/straight" --prompt-ids 1,2,3 -n 4 --temperature 0 > /dev/null
"$BIN" -q generate -m "$TMP/s8" --prompt-ids 1,2,3 -n 4 --temperature 0 > /dev/null
# ... and serves: a scoring request on the FP8 checkpoint.
tmp="$TMP"
source "$(dirname "$0")/lib/server.bash"
start_server -m "$TMP/s8"
python3 - "$url" <<'PYEOF'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/completions", headers={"Content-Type": "application/json"},
                             data=json.dumps({"prompt": [1, 2, 3, 4], "max_tokens": 2, "temperature": 0}).encode())
assert len(json.load(urllib.request.urlopen(req, timeout=60))["choices"]) == 1
PYEOF
kill "$pid"; wait "$pid" 2>/dev/null || true
"$PY" - "$BIN" "$TMP" <<'PYEOF'
import json, struct, subprocess, sys
bin_, tmp = sys.argv[1:3]
last = [json.loads(l) for l in open(f"{tmp}/f32.log")][-1]
raw = open(f"{tmp}/data/val.bin", "rb").read()
n = struct.unpack_from("<Q", raw, 8)[0]
toks = list(struct.unpack_from(f"<{n}I", raw, 32))[:24]  # --val-seqs 1: the first sequence
out = json.loads(subprocess.check_output([bin_, "-q", "score", "-m", f"{tmp}/f32", "--mtp", "--json",
                                          "--prompt-ids", ",".join(map(str, toks))]))
main = -sum(out["token_logprobs"][1:]) / (len(toks) - 1)
mtp = [x for x in out["mtp_token_logprobs"] if x is not None]
mtp = -sum(mtp) / len(mtp)
print(f"val_loss {last['val_loss']:.8f} score {main:.8f}; val_mtp_loss {last['val_mtp_loss']:.8f} score {mtp:.8f}")
assert abs(last["val_loss"] - main) <= 1e-5, "val_loss differs from dsv3 score"
assert abs(last["val_mtp_loss"] - mtp) <= 1e-5, "val_mtp_loss differs from dsv3 score --mtp"
PYEOF

# 4. Determinism: same seed + threads -> same bits; 1 vs 2 threads within 1e-5.
"$BIN" -q train "${COMMON[@]}" -t 2 --steps 3 --save-dtype f32 --out "$TMP/f32b" --json > /dev/null
same "$TMP/f32" "$TMP/f32b"
"$BIN" -q train "${COMMON[@]}" -t 1 --steps 3 --save-dtype f32 --out "$TMP/t1" --json > "$TMP/t1.log"
"$PY" - "$TMP" <<'PYEOF'
import json, sys
tmp = sys.argv[1]
a = [json.loads(l) for l in open(f"{tmp}/f32.log")]
b = [json.loads(l) for l in open(f"{tmp}/t1.log")]
worst = max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in ("loss", "grad_norm"))
worst = max(worst, abs(a[-1]["val_loss"] - b[-1]["val_loss"]))
print(f"1 vs 2 threads: max difference {worst:.2e}")
assert worst <= 1e-5
PYEOF
echo "train_resume: ok"
