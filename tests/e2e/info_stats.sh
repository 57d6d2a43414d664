#!/usr/bin/env bash
# `dsv3 info --json` against numbers computed here independently: python3 reads the raw
# safetensors headers (8-byte length + JSON) and config.json. Runs on the fixture checkpoints
# written by transformers and on checkpoints made by `dsv3 init` (fp8 and bf16, several shards).
set -euo pipefail
BIN="$1"
FIX="${DSV3_FIXTURES:?}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

check() {  # check DIR
  local dir="$1"
  "$BIN" -q info --json "$dir" > "$TMP/info.json"
  python3 - "$dir" "$TMP/info.json" <<'EOF'
import glob, json, math, os, struct, sys
d, info_path = sys.argv[1], sys.argv[2]
info = json.load(open(info_path))
files = sorted(glob.glob(os.path.join(d, "*.safetensors")))
assert files, d
total = count = nbytes = 0
dtypes = {}
for f in files:
    with open(f, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        hdr = json.loads(fh.read(n))
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        count += 1
        dtypes[t["dtype"]] = dtypes.get(t["dtype"], 0) + 1
        b, e = t["data_offsets"]
        nbytes += e - b
        if not name.endswith("_scale_inv"):
            total += math.prod(t["shape"])
cfg = json.load(open(os.path.join(d, "config.json")))
want = {
    "total_parameters": total,
    "tensors": count,
    "dtypes": dtypes,
    "bytes": nbytes,
    "num_hidden_layers": cfg["num_hidden_layers"],
    "num_nextn_predict_layers": cfg.get("num_nextn_predict_layers", 0),
}
bad = {k: (info.get(k), v) for k, v in want.items() if info.get(k) != v}
if bad:
    sys.exit(f"{d}: info --json disagrees (got, want): {bad}")
idx = os.path.join(d, "model.safetensors.index.json")
if os.path.exists(idx):  # the index's total_size is the data bytes as well
    ts = json.load(open(idx))["metadata"]["total_size"]
    if ts != nbytes:
        sys.exit(f"{idx}: total_size {ts} != {nbytes}")
print(f"ok {os.path.basename(d)}: {total} parameters, {count} tensors, {dtypes}, {nbytes} bytes")
EOF
}

check "$FIX/v3-fp8"
check "$FIX/v2lite-bf16"
check "$FIX/e2e-bf16"

# Random checkpoints from init: the fixture config in both dtypes, split into several shards.
"$BIN" -q init --config "$FIX/v3-fp8/config.json" --out "$TMP/fp8" --shard-size 0.002 --seed 1
OMP_NUM_THREADS=1 "$BIN" -q init --config "$FIX/v3-fp8/config.json" --out "$TMP/bf16" --dtype bf16 --shard-size 0.002
# init promises the same bytes for a seed whatever the thread count.
OMP_NUM_THREADS=1 "$BIN" -q init --config "$FIX/v3-fp8/config.json" --out "$TMP/fp8-1t" --shard-size 0.002 --seed 1
for f in "$TMP/fp8"/*; do
  cmp -s "$f" "$TMP/fp8-1t/$(basename "$f")" || { echo "init output differs with 1 thread: $(basename "$f")"; exit 1; }
done
n=$(ls "$TMP/fp8"/*.safetensors | wc -l)
[ "$n" -gt 2 ] || { echo "expected several shards, got $n"; exit 1; }
check "$TMP/fp8"
check "$TMP/bf16"
# The dtypes themselves: FP8 init writes E4M3 weights + F32 scales, BF16 init none.
"$BIN" -q info --json "$TMP/fp8" | grep -q '"F8_E4M3"' || { echo "fp8 init wrote no F8_E4M3"; exit 1; }
if "$BIN" -q info --json "$TMP/bf16" | grep -q '"F8_E4M3"'; then echo "bf16 init wrote F8_E4M3"; exit 1; fi
echo "info_stats: all ok"
