#!/usr/bin/env bash
# INT4 weights (issue 14): compressed-tensors pack-quantized checkpoints written by an independent
# writer (tests/ref/int4_pack.py, numpy, from the format's documentation) load and score within
# 1e-5 of their dequantised float32 form; `dsv3 convert --to int4` writes the very same tensors;
# `dsv3 compare` reports KL / top-1 against FP8; bad checkpoints fail naming the problem.
set -euo pipefail
BIN="$1"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
PY=/usr/bin/python3
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
FIX="$DSV3_FIXTURES/v3-fp8"

"$PY" "$ROOT/tests/ref/int4_pack.py" "$FIX" "$TMP/all32" --group 32
"$PY" "$ROOT/tests/ref/int4_pack.py" "$FIX" "$TMP/exp128" --group 128 --experts-only
"$BIN" -q convert --to int4 --int4-all --group 32 "$FIX" "$TMP/ours32"
"$BIN" -q convert --to int4 "$FIX" "$TMP/ours128"

"$PY" - "$BIN" "$TMP" "$DSV3_TEST_DATA" <<'PY'
import json, struct, subprocess, sys
bin_, tmp, data = sys.argv[1:4]
ref = json.load(open(f"{data}/ref.json"))
prompts = [p["prompt"] for p in ref["v3-fp8"] if len(p["prompt"]) > 1]

def score(model, ids):
    out = subprocess.check_output([bin_, "score", "-m", model, "--prompt-ids", ",".join(map(str, ids)), "--json"])
    return json.loads(out)["token_logprobs"][1:]

# 1. The independent checkpoints score like their dequantised float32 form (exact weights).
for kind in ("all32", "exp128"):
    worst = worst_bf16 = 0.0
    for ids in prompts:
        a, b, c = (score(f"{tmp}/{kind}/{d}", ids) for d in ("int4", "deq-f32", "deq-bf16"))
        worst = max(worst, max(abs(x - y) for x, y in zip(a, b)))
        worst_bf16 = max(worst_bf16, max(abs(x - y) for x, y in zip(a, c)))
    print(f"{kind}: max |logprob int4 - dequantised f32| = {worst:.2e} (tolerance 1e-5); "
          f"vs its BF16-rounded form {worst_bf16:.2e}")
    if not worst <= 1e-5:
        sys.exit(f"FAIL: {kind}: int4 scores {worst} away from its dequantised form")

# 2. dsv3 convert --to int4 writes the same tensors as the independent writer.
def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
        blob = f.read()
    return {k: (v["dtype"], v["shape"], blob[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in hdr.items() if k != "__metadata__"}
import glob
for ours, theirs in (("ours32", "all32"), ("ours128", "exp128")):
    mine = {}
    for f in glob.glob(f"{tmp}/{ours}/*.safetensors"):
        mine.update(tensors(f))
    ind = tensors(f"{tmp}/{theirs}/int4/model.safetensors")
    names = [k for k in ind if k.endswith(("_packed", "_scale"))]
    assert names, "no int4 tensors written"
    for k in names:
        if k not in mine:
            sys.exit(f"FAIL: {ours} lacks {k}")
        if mine[k] != ind[k]:
            sys.exit(f"FAIL: {ours}: {k} differs from the independent writer's")
    extra = [k for k in mine if k.endswith(("_packed", "_scale"))]
    if len(extra) != len(names):
        sys.exit(f"FAIL: {ours} has {len(extra)} int4 tensors, the independent writer {len(names)}")
    cfg = json.load(open(f"{tmp}/{ours}/config.json"))["quantization_config"]
    assert cfg["quant_method"] == "compressed-tensors" and cfg["format"] == "pack-quantized", cfg
    print(f"{ours}: {len(names)} packed/scale tensors identical to the independent writer's")
PY

# 3. KL / top-1 of the demo model's int4 form against its FP8 release on held-out prose (the README
#    reports the full text; here 600 positions). The routed experts in int4 keep top-1 >= 90%.
"$BIN" -q convert --to int4 "$ROOT/models/demo" "$TMP/demo-int4"
"$BIN" compare -m "$TMP/demo-int4" --base "$ROOT/models/demo" "$DSV3_TEST_DATA/demo/heldout_prose.txt" \
  --max-tokens 600 --json | tee "$TMP/cmp.json"
"$PY" - "$TMP/cmp.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["positions"] == 600 and 0 <= r["mean_kl"] < 0.05 and r["top1_agreement"] >= 0.9, r
PY

# 4. Bad checkpoints fail with an error naming the problem.
expect_fail() {  # dir, message fragment
  if out="$("$BIN" info "$1" 2>&1)"; then echo "FAIL: $1 loaded"; exit 1; fi
  grep -q "$2" <<<"$out" || { echo "FAIL: expected '$2' in: $out"; exit 1; }
}
cp -r "$TMP/all32/int4" "$TMP/asym"
"$PY" - "$TMP/asym/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["quantization_config"]["config_groups"]["group_0"]["weights"]["symmetric"] = False
json.dump(c, open(sys.argv[1], "w"))
PY
expect_fail "$TMP/asym" "asymmetric weights"
cp -r "$TMP/all32/int4" "$TMP/noq"
"$PY" - "$TMP/noq/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); del c["quantization_config"]; json.dump(c, open(sys.argv[1], "w"))
PY
expect_fail "$TMP/noq" "no compressed-tensors quantization_config"
cp -r "$TMP/all32/int4" "$TMP/g64"
"$PY" - "$TMP/g64/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1])); c["quantization_config"]["config_groups"]["group_0"]["weights"]["group_size"] = 64
json.dump(c, open(sys.argv[1], "w"))
PY
expect_fail "$TMP/g64" "in groups of 64 needs"
if out="$("$BIN" convert --to int4 --group 48 "$FIX" "$TMP/bad" 2>&1)"; then echo "FAIL: group 48 accepted"; exit 1; fi
grep -q "group must be 32, 64 or 128" <<<"$out"
if out="$("$BIN" convert --to int4 "$TMP/ours128" "$TMP/bad2" 2>&1)"; then echo "FAIL: int4 reconverted"; exit 1; fi
grep -q "holds int4" <<<"$out"
echo "int4: ok"
