#!/usr/bin/env bash
# Training gradients are exact (issue 10, AC1): one SGD step through the black-box interface
#   dsv3 train --init DIR --data DATA --optimizer sgd --lr 1 --steps 1 --weight-decay 0 --clip 0
#              --bias-update 0 --balance-alpha A --mtp-weight L --save-dtype f32 --out OUT
# must give W0 - lr * dL/dW, with dL/dW from PyTorch autograd over our own torch transcription
# of the spec (tests/ref/dsv3_torch.py, whose forward is checked against the transformers
# fixtures first). Also: `dsv3 data --ids` makes one sequence of a one-document file, a wrong
# lambda is caught (the check can fail), and one step with lr 0 moves each router bias by
# exactly gamma * sign(mean load - load).
set -euo pipefail
BIN="$1"
PY=/usr/bin/python3  # Debian's python3 with python3-torch
REF="$DSV3_SOURCE_DIR/tests/ref/dsv3_torch.py"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PY" "$REF" check-forward "$DSV3_FIXTURES"

# make_case NAME FIXTURE T B SEED: random token sequences -> $TMP/NAME/{ids.jsonl,seqs.json,data}
make_case() {
  local d="$TMP/$1" fx="$DSV3_FIXTURES/$2"
  mkdir -p "$d"
  "$PY" - "$fx/config.json" "$3" "$4" "$5" "$d" <<'PYEOF'
import json, random, sys
cfg, T, B, seed, d = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
V = json.load(open(cfg))["vocab_size"]
random.seed(seed)
seqs = [[random.randrange(V) for _ in range(T)] for _ in range(B)]
open(f"{d}/ids.jsonl", "w").write("".join(json.dumps(s) + "\n" for s in seqs))
json.dump(seqs, open(f"{d}/seqs.json", "w"))
open(f"{d}/V", "w").write(str(V))
PYEOF
  "$BIN" -q data --ids "$d/ids.jsonl" --out "$d/data" --vocab-size "$(cat "$d/V")" --val-fraction 0
}

# sgd_case NAME FIXTURE T B ALPHA LAMBDA [--untie-mtp]: by default both sides share the MTP
# modules' embedding and head with the main model (the fixtures' own MTP copies differ from the
# main tensors, so a trainer that used them would fail).
sgd_case() {
  local name="$1" fx="$DSV3_FIXTURES/$2" T="$3" B="$4" A="$5" L="$6" untie=("${@:7}")
  make_case "$name" "$2" "$T" "$B" "$((T * 31 + B))"
  local d="$TMP/$name"
  "$BIN" -q train --init "$fx" --data "$d/data" --optimizer sgd --lr 1 --steps 1 --weight-decay 0 --clip 0 \
    --bias-update 0 --balance-alpha "$A" --mtp-weight "$L" --save-dtype f32 --out "$d/out" \
    --seq-len "$T" --batch "$B" --no-shuffle --dump-grads "$d/grads.safetensors" "${untie[@]}"
  echo "== $name: $2 T=$T B=$B alpha=$A lambda=$L ${untie[*]}"
  "$PY" "$REF" sgd-check --init "$fx" --seqs "$d/seqs.json" --lr 1 --mtp-weight "$L" --balance-alpha "$A" \
    --trained "$d/out" --grads "$d/grads.safetensors" "${untie[@]}"
}

# One document of length T with --seq-len T is exactly one training sequence (the black-box form).
sgd_case one_doc v3-fp8 16 1 0 0.3
sgd_case batch v3-fp8 12 2 0.01 0.3
sgd_case balance_only v3-fp8 3 1 1 0
sgd_case shortest v3-fp8 2 2 0.01 0.3
sgd_case v2lite v2lite-bf16 10 2 0.01 0.3
sgd_case untied v3-fp8 12 2 0.01 0.3 --untie-mtp

# The check can fail: tied gradients against an untied reference (the MTP embedding and head).
if "$PY" "$REF" sgd-check --init "$DSV3_FIXTURES/v3-fp8" --seqs "$TMP/batch/seqs.json" --lr 1 --mtp-weight 0.3 \
     --balance-alpha 0.01 --trained "$TMP/batch/out" --untie-mtp >/dev/null 2>&1; then
  echo "FAIL: sgd-check accepted shared-MTP gradients as untied ones"; exit 1
fi

# The check can fail: the same trained weights against a different lambda.
if "$PY" "$REF" sgd-check --init "$DSV3_FIXTURES/v3-fp8" --seqs "$TMP/batch/seqs.json" --lr 1 --mtp-weight 0.31 \
     --balance-alpha 0.01 --trained "$TMP/batch/out" >/dev/null 2>&1; then
  echo "FAIL: sgd-check accepted gradients of lambda 0.3 as lambda 0.31"; exit 1
fi

# Bias updates: one step with lr 0 and gamma 0.01.
make_case bias v3-fp8 24 3 7
"$BIN" -q train --init "$DSV3_FIXTURES/v3-fp8" --data "$TMP/bias/data" --optimizer sgd --lr 0 --steps 1 \
  --bias-update 0.01 --save-dtype f32 --out "$TMP/bias/out" --seq-len 24 --batch 3 --no-shuffle
"$PY" "$REF" bias-check --init "$DSV3_FIXTURES/v3-fp8" --seqs "$TMP/bias/seqs.json" --gamma 0.01 --trained "$TMP/bias/out"
echo "train_grad_parity: ok"
