#!/usr/bin/env bash
# FP8 mixed-precision training (issue 12), the short CI version of the 2,000-step benchmark in
# the README: the same model, data and seed trained with --precision bf16 and --precision fp8
# (exact E4M3 emulation of the V3 recipe) must end within 1% relative in validation loss, both
# having learned; `dsv3 plot` draws both runs in one picture; and the FP8 export
# (--save-dtype fp8, the official layout) scores within 0.02 nats per token of the BF16
# checkpoint of the same float32 master weights.
set -euo pipefail
BIN="$1"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python3 "$(dirname "$0")/lib/markov.py" "$TMP" --vocab 256 --docs 320 --len 1024 --seed 11
"$BIN" -q data --ids "$TMP/docs.jsonl" --out "$TMP/data" --vocab-size 256 --val-fraction 0.05
for p in bf16 fp8; do
  "$BIN" -q train --config "$DSV3_TEST_DATA/train/fp8-small.json" --data "$TMP/data" --out "$TMP/run-$p" \
    --precision $p --steps 300 --batch 8 --seq-len 128 --lr 3e-3 --warmup 30 --decay-start 30 \
    --val-every 100 --val-seqs 64 --save-dtype fp8 --json -t 1 > "$TMP/$p.jsonl"
done
"$BIN" -q plot "$TMP/fp8.jsonl" "$TMP/bf16.jsonl" --series main_loss,val_loss --out "$TMP/gap.svg"
[ "$(grep -c '<polyline' "$TMP/gap.svg")" = 4 ] || { echo "plot: expected 4 curves" >&2; exit 1; }

# The BF16 checkpoint of the FP8 run's master weights: the float32 masters as a checkpoint,
# converted to BF16.
mkdir "$TMP/master"
cp "$TMP/run-fp8/trainer_state/master.safetensors" "$TMP/master/model.safetensors"
python3 - "$TMP" <<'PY'
import json, sys
tmp = sys.argv[1]
cfg = json.load(open(f"{tmp}/run-fp8/config.json"))
assert cfg["quantization_config"]["weight_block_size"] == [128, 128], cfg.get("quantization_config")
cfg.pop("quantization_config")
json.dump(cfg, open(f"{tmp}/master/config.json", "w"))
PY
"$BIN" -q convert "$TMP/master" "$TMP/bf16ck" --to bf16
IDS="$(python3 -c "import json,sys; d=[json.loads(l) for l in open(sys.argv[1])]; print(','.join(map(str, d[-1][:300])))" "$TMP/docs.jsonl")"
"$BIN" -q score -m "$TMP/run-fp8" --prompt-ids "$IDS" --json -t 1 > "$TMP/score-fp8.json"
"$BIN" -q score -m "$TMP/bf16ck" --prompt-ids "$IDS" --json -t 1 > "$TMP/score-bf16.json"

python3 - "$TMP" <<'PY'
import json, math, sys
tmp = sys.argv[1]
H = json.load(open(f"{tmp}/H.json"))["H"]
last = {p: [json.loads(l) for l in open(f"{tmp}/{p}.jsonl")][-1] for p in ("bf16", "fp8")}
vb, vf = last["bf16"]["val_loss"], last["fp8"]["val_loss"]
gap = (vf - vb) / vb
print(f"val loss bf16 {vb:.4f}, fp8 {vf:.4f}: relative gap {100 * gap:+.3f}% (H = {H:.4f}, ln V = {math.log(256):.4f})")
assert abs(gap) <= 0.01, f"FP8 vs BF16 relative gap {100 * gap:.3f}% exceeds 1%"
for p, v in (("bf16", vb), ("fp8", vf)):
    assert v < math.log(256) - 0.5, f"{p} did not learn: val loss {v:.3f}"
lp = {}
for k in ("fp8", "bf16"):
    s = json.load(open(f"{tmp}/score-{k}.json"))
    v = [x for x in s["token_logprobs"] if x is not None]
    lp[k] = sum(v) / len(v)
d = abs(lp["fp8"] - lp["bf16"])
print(f"mean logprob: FP8 export {lp['fp8']:.4f}, BF16 of the same masters {lp['bf16']:.4f} (|diff| {d:.4f})")
assert d <= 0.02, f"FP8 export differs by {d:.4f} nats per token"
PY
echo "train_fp8_gap: ok"
