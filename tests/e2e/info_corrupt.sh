#!/usr/bin/env bash
# Damaged checkpoints: `dsv3 info` must exit 1 (not a signal) with exactly one line on stderr
# that names the offending file and the problem. Each case copies the v3-fp8 fixture and damages
# it with python3 (header rewrites keep the data section, so only the intended fault is present).
set -euo pipefail
BIN="$1"
FIX="${DSV3_FIXTURES:?}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
S1=model-00001-of-00002.safetensors
S2=model-00002-of-00002.safetensors
fails=0

# damage.py DIR ACTION: the corruptions, by name.
cat > "$TMP/damage.py" <<'EOF'
import json, os, struct, sys
d, action = sys.argv[1], sys.argv[2]
S1, S2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
IDX = os.path.join(d, "model.safetensors.index.json")

def read(shard):
    p = os.path.join(d, shard)
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8:8 + n]), raw[8 + n:]

def write(shard, hdr, data):
    h = json.dumps(hdr).encode()
    h += b" " * (-(len(h) + 8) % 8)
    open(os.path.join(d, shard), "wb").write(struct.pack("<Q", len(h)) + h + data)

def edit_header(fn):
    idx = json.load(open(IDX))
    for shard in (S1, S2):
        hdr, data = read(shard)
        if fn(hdr, idx["weight_map"]):
            write(shard, hdr, data)
            json.dump(idx, open(IDX, "w"))
            print(shard)  # the message must name this shard
            return
    sys.exit("damage: nothing edited")

def edit_tensor(name, fn):
    def f(hdr, wm):
        if name not in hdr:
            return False
        fn(hdr, wm)
        return True
    edit_header(f)

def set_config(key, value):
    p = os.path.join(d, "config.json")
    c = json.load(open(p))
    c[key] = value
    json.dump(c, open(p, "w"))

A = "model.layers.1.mlp.experts.3.up_proj.weight"  # FP8 [96, 256], scale [1, 2]
N = "model.norm.weight"                               # BF16 [256]
if action == "truncate":
    p = os.path.join(d, S2)
    os.truncate(p, os.path.getsize(p) - 1000)
elif action == "hdrlen":
    p = os.path.join(d, S1)
    raw = bytearray(open(p, "rb").read())
    raw[:8] = struct.pack("<Q", len(raw))
    open(p, "wb").write(raw)
elif action == "garbage":
    p = os.path.join(d, S1)
    raw = bytearray(open(p, "rb").read())
    raw[8:40] = b"#" * 32
    open(p, "wb").write(raw)
elif action == "not_in_index":
    idx = json.load(open(IDX))
    del idx["weight_map"][N]
    json.dump(idx, open(IDX, "w"))
elif action == "index_extra":
    idx = json.load(open(IDX))
    idx["weight_map"]["model.layers.0.bogus.weight"] = S1
    json.dump(idx, open(IDX, "w"))
elif action == "missing_shard":
    os.remove(os.path.join(d, S2))
elif action == "config_groups":
    set_config("n_routed_experts", 18)
elif action == "config_malformed":
    open(os.path.join(d, "config.json"), "a").write("\n}}garbage")
elif action == "shape":  # same bytes, other shape
    edit_tensor(N, lambda h, wm: h[N].update(shape=[128, 2]))
elif action == "dtype":  # same bytes, not a float type
    edit_tensor(N, lambda h, wm: h[N].update(dtype="I16"))
elif action == "fp8_dtype_on_norm":  # FP8 where the official checkpoint keeps BF16
    edit_tensor(N, lambda h, wm: h[N].update(dtype="F8_E4M3", data_offsets=[h[N]["data_offsets"][0], h[N]["data_offsets"][0] + 256]))
elif action == "no_scale":
    def f(h, wm):
        del h[A + "_scale_inv"]
        del wm[A + "_scale_inv"]
    edit_tensor(A + "_scale_inv", f)
elif action == "scale_shape":
    edit_tensor(A + "_scale_inv", lambda h, wm: h[A + "_scale_inv"].update(shape=[2, 1]))
elif action == "scale_dtype":
    edit_tensor(A + "_scale_inv", lambda h, wm: h[A + "_scale_inv"].update(dtype="I32"))
elif action == "overlap":
    def f(h, wm):
        b, e = h[A]["data_offsets"]
        others = [k for k in h if k not in ("__metadata__", A) and h[k]["data_offsets"][0] >= e]
        o = min(others, key=lambda k: h[k]["data_offsets"][0])
        ob, oe = h[o]["data_offsets"]
        h[o]["data_offsets"] = [ob - 8, oe - 8]  # slides into A's range
    edit_tensor(A, f)
elif action == "size_mismatch":
    edit_tensor(N, lambda h, wm: h[N].update(shape=[255]))
elif action == "unknown_dtype":
    edit_tensor(A, lambda h, wm: h[A].update(dtype="F4_E2M1"))
elif action == "offsets_reversed":
    edit_tensor(N, lambda h, wm: h[N].update(data_offsets=h[N]["data_offsets"][::-1]))
elif action == "index_outside":
    idx = json.load(open(IDX))
    idx["weight_map"][N] = "../" + S1
    json.dump(idx, open(IDX, "w"))
elif action == "index_malformed":
    open(IDX, "w").write('{"weight_map": ')
else:
    sys.exit("unknown action " + action)
EOF

# expect ACTION FILE_NEEDLE PROBLEM_NEEDLE (header edits also require the edited shard's name)
expect() {
  local action="$1" file="$2" problem="$3" dir="$TMP/$1"
  cp -r "$FIX/v3-fp8" "$dir"
  chmod -R u+w "$dir"
  local shard
  shard=$(python3 "$TMP/damage.py" "$dir" "$action")
  local rc=0
  "$BIN" info --json "$dir" > "$TMP/out" 2> "$TMP/err" || rc=$?
  local lines
  lines=$(wc -l < "$TMP/err")
  local msg
  msg=$(cat "$TMP/err")
  if [ "$rc" -ne 1 ]; then
    echo "FAIL $action: exit code $rc (want 1): $msg"; fails=$((fails + 1))
  elif [ "$lines" -ne 1 ]; then
    echo "FAIL $action: $lines lines on stderr (want 1):"; cat "$TMP/err"; fails=$((fails + 1))
  elif [[ "$msg" != *"$file"* || "$msg" != *"$problem"* || "$msg" != *"$shard"* ]]; then
    echo "FAIL $action: message lacks '$file', '$problem' or '$shard': $msg"; fails=$((fails + 1))
  elif [ -s "$TMP/out" ]; then
    echo "FAIL $action: printed to stdout despite the error"; fails=$((fails + 1))
  else
    echo "ok $action: $msg"
  fi
  rm -rf "$dir"
}

expect truncate "$S2" "beyond the end of the file"
expect hdrlen "$S1" "header length"
expect garbage "$S1" "malformed safetensors header JSON"
expect not_in_index "model.safetensors.index.json" "model.norm.weight"
expect index_extra "model.safetensors.index.json" "model.layers.0.bogus.weight"
expect missing_shard "$S2" "does not exist"
expect config_groups "config.json" "n_routed_experts"
expect config_malformed "config.json" "malformed JSON"
expect shape "model.norm.weight" "shape [128, 2]"
expect dtype "model.norm.weight" "I16"
expect fp8_dtype_on_norm "model.norm.weight" "F8_E4M3"
expect no_scale "experts.3.up_proj.weight" "_scale_inv"
expect scale_shape "up_proj.weight_scale_inv" "shape [2, 1]"
expect scale_dtype "up_proj.weight_scale_inv" "F32"
expect overlap ".safetensors" "overlap"
expect size_mismatch "model.norm.weight" "needs 510 bytes"
expect unknown_dtype "experts.3.up_proj.weight" "unknown dtype 'F4_E2M1'"
expect offsets_reversed "model.norm.weight" "reversed"
expect index_outside "model.safetensors.index.json" "outside the directory"
expect index_malformed "model.safetensors.index.json" "malformed JSON"

if [ "$fails" -ne 0 ]; then echo "$fails case(s) failed"; exit 1; fi
echo "info_corrupt: all ok"
