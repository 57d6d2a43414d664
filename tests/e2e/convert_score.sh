#!/usr/bin/env bash
# Converted checkpoints score like transformers: FP8 -> BF16 within 0.02 of transformers' BF16-rounded
# model, and BF16 -> FP8 within 0.05 of its re-quantised model (tests/data/v3-fp8_{bf16,rq}_logits_1.f32).
set -euo pipefail
BIN="$1"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$BIN" -q convert --to bf16 "$DSV3_FIXTURES/v3-fp8" "$TMP/bf16"
"$BIN" -q convert --to fp8 "$TMP/bf16" "$TMP/fp8"
python3 - "$BIN" "$TMP" "$DSV3_TEST_DATA" <<'PY'
import array, json, math, subprocess, sys
bin_, tmp, data = sys.argv[1:4]
ref = json.load(open(f"{data}/ref.json"))
ids = ref["v3-fp8"][1]["prompt"]
V = 2048
def logits(path):
    a = array.array("f"); a.frombytes(open(path, "rb").read())
    return [a[i * V:(i + 1) * V] for i in range(len(a) // V)]
def lsm(row):
    m = max(row); l = m + math.log(sum(math.exp(x - m) for x in row)); return [x - l for x in row]
for model, ref_file, tol in (("bf16", "v3-fp8_bf16_logits_1.f32", 0.02), ("fp8", "v3-fp8_rq_logits_1.f32", 0.05)):
    out = json.loads(subprocess.check_output([bin_, "score", "-m", f"{tmp}/{model}", "--prompt-ids",
                                              ",".join(map(str, ids)), "--json"]))
    rows = logits(f"{data}/{ref_file}")
    worst = max(abs(lsm(rows[i - 1])[ids[i]] - out["token_logprobs"][i]) for i in range(1, len(ids)))
    print(f"{model}: max |logprob - transformers| = {worst:.2e} (tolerance {tol})")
    if not worst <= tol:
        sys.exit(f"FAIL: {model} differs from transformers by {worst}")
PY
echo "convert_score: ok"
