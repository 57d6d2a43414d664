#!/usr/bin/env bash
# The trainer learns (issue 10, AC2): sequences from a random first-order Markov source over 64
# tokens with known entropy rate H; a tiny V3-shaped model (MLA, 1 dense + 1 MoE layer with
# group-limited sigmoid routing, an MTP module) trained from scratch on ~600K tokens must reach
# validation main loss within 0.2 nats of H and MTP loss within 0.25 (the optimum of both is H:
# each token depends on the previous one only). `dsv3 plot` draws the run's curves.
set -euo pipefail
BIN="$1"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
python3 "$(dirname "$0")/lib/markov.py" "$TMP"
"$BIN" -q data --ids "$TMP/docs.jsonl" --out "$TMP/data" --vocab-size 64 --val-fraction 0.03
"$BIN" -q train --config "$DSV3_TEST_DATA/train/markov-tiny.json" --data "$TMP/data" --out "$TMP/run" \
  --steps 600 --batch 16 --seq-len 64 --lr 3e-3 --warmup 30 --val-every 200 --val-seqs 64 --json -t 1 > "$TMP/log.jsonl"
"$BIN" -q plot "$TMP/log.jsonl" --out "$TMP/loss.svg"
grep -q "<polyline" "$TMP/loss.svg"
python3 - "$TMP" <<'PY'
import json, sys
tmp = sys.argv[1]
H = json.load(open(f"{tmp}/H.json"))["H"]
log = [json.loads(l) for l in open(f"{tmp}/log.jsonl")]
last = log[-1]
assert last["step"] == 600 and last["tokens"] == 600 * 16 * 64
assert all("max_vio" in j and len(j["max_vio_layers"]) == 2 for j in log)  # MoE layer + MTP's MoE
gap, mgap = last["val_loss"] - H, last["val_mtp_loss"] - H
print(f"val main loss {last['val_loss']:.4f} (H + {gap:.3f}), val MTP loss {last['val_mtp_loss']:.4f} (H + {mgap:.3f}), "
      f"MaxVio {last['max_vio']:.2f}")
assert gap <= 0.2, f"main loss is {gap:.3f} nats above the entropy rate"
assert mgap <= 0.25, f"MTP loss is {mgap:.3f} nats above the entropy rate"
PY
echo "train_learns_markov: ok"
