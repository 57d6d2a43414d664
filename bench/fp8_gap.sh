#!/usr/bin/env bash
# FP8 against BF16 (and FP32) training, issue 12's benchmark: the demo model's config on the demo
# data (made by scripts/train_demo.sh), the same seed and data order, 2,000 steps of 4 x 256 tokens,
# lr 2e-3 with 100 warmup steps and a cosine to 2e-4, validation on 128 held-out sequences every
# 100 steps. Runs the precisions side by side (one thread each) and prints the final validation
# losses with their relative gaps, then draws the curves.
#   bench/fp8_gap.sh [WORKDIR]      (default .cache/fp8-gap; env STEPS, PRECISIONS, DATA)
# About 1 h for fp8 and 55 min for bf16 on this 2-vCPU machine when they run together.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$ROOT/.cache/fp8-gap}"
STEPS="${STEPS:-2000}"
PRECISIONS="${PRECISIONS:-fp8 bf16}"
DATA="${DATA:-$ROOT/.cache/train-demo/data}"
DSV3="$ROOT/build/bin/dsv3"
[ -f "$DATA/meta.json" ] || { echo "fp8_gap: no token data in $DATA (run scripts/train_demo.sh first, or set DATA)" >&2; exit 1; }
mkdir -p "$WORK"
for p in $PRECISIONS; do
  "$DSV3" train --config "$ROOT/configs/demo.json" --data "$DATA" --out "$WORK/run-$p" --force --seed 0 -t 1 \
    --steps "$STEPS" --batch 4 --seq-len 256 --lr 2e-3 --min-lr 2e-4 --warmup 100 --decay-start 100 \
    --val-every 100 --val-seqs 128 --save-every 500 --save-dtype fp8 --precision "$p" --json > "$WORK/$p.jsonl" &
done
wait
python3 - "$WORK" $PRECISIONS <<'PY'
import json, sys
work, precs = sys.argv[1], sys.argv[2:]
val = {p: [j["val_loss"] for j in map(json.loads, open(f"{work}/{p}.jsonl")) if "val_loss" in j][-1] for p in precs}
base = val.get("bf16", val[precs[-1]])
for p in precs:
    print(f"{p}: final val loss {val[p]:.4f}  relative to bf16 {100 * (val[p] - base) / base:+.3f}%")
PY
"$DSV3" plot $(for p in $PRECISIONS; do echo "$WORK/$p.jsonl"; done) --labels "$(echo $PRECISIONS | tr ' ' ,)" \
  --series main_loss,val_loss --smooth 50 --out "$WORK/fp8_gap.svg" --title "FP8 vs BF16 training: demo config, $STEPS steps"
