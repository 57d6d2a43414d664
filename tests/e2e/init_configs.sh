#!/usr/bin/env bash
# `dsv3 init` for config variants (fp8/bf16, no q LoRA, MTP layers, 2 shared experts): the
# checkpoint passes `dsv3 info` and its total_parameters equals a closed-form count computed here
# from the config fields alone. init refuses an existing directory and bad configs with exit 1 and
# one stderr line naming the file.
set -euo pipefail
BIN="$1"
FIX="${DSV3_FIXTURES:?}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
fails=0
# Tiny tensors: threads add only overhead here (info_stats.sh checks init is thread-count independent).
export OMP_NUM_THREADS=1

# variant NAME EDITS_JSON: the v3-fp8 fixture config with some fields replaced.
variant() {
  python3 - "$FIX/v3-fp8/config.json" "$2" > "$TMP/$1.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
c.update(json.loads(sys.argv[2]))
print(json.dumps(c))
EOF
}

# Parameters from the config fields (DeepseekV3/V2 modelling code), MTP layers included.
params_of() {
  python3 - "$1" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1]))
H, V, nh = c["hidden_size"], c["vocab_size"], c["num_attention_heads"]
nope, rope, vd, kvr = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"], c["kv_lora_rank"]
ql = c.get("q_lora_rank") or 0
L, M = c["num_hidden_layers"], c.get("num_nextn_predict_layers", 0)
E, I, S = c["n_routed_experts"], c["moe_intermediate_size"], c["n_shared_experts"]
q = ql * H + ql + nh * (nope + rope) * ql if ql else nh * (nope + rope) * H
attn = q + (kvr + rope) * H + kvr + nh * (nope + vd) * kvr + H * nh * vd
dense = 3 * c["intermediate_size"] * H
moe = E * H + (E if c["topk_method"] == "noaux_tc" else 0) + E * 3 * I * H + S * 3 * I * H
n = 2 * V * H + H
for i in range(L + M):
    n += 2 * H + attn + (moe if i >= c["first_k_dense_replace"] and i % c.get("moe_layer_freq", 1) == 0 else dense)
    if i >= L:
        n += 2 * V * H + 2 * H + 2 * H * H + H  # embed copy + head, enorm/hnorm, eh_proj, head norm
print(n)
EOF
}

check_init() {  # check_init NAME DTYPE
  local name="$1" dtype="$2" out="$TMP/out-$1-$2"
  "$BIN" -q init --config "$TMP/$name.json" --out "$out" --dtype "$dtype" --shard-size 0.003 --seed 5
  local got want
  got=$("$BIN" -q info --json "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total_parameters"])')
  want=$(params_of "$TMP/$name.json")
  if [ "$got" != "$want" ]; then
    echo "FAIL $name/$dtype: info total_parameters $got, config implies $want"; fails=$((fails + 1))
  else
    echo "ok $name/$dtype: $got parameters"
  fi
  # The written config.json records the quantisation the data has.
  python3 - "$out/config.json" "$dtype" <<'EOF' || fails=$((fails + 1))
import json, sys
c = json.load(open(sys.argv[1]))
fp8 = "quantization_config" in c
if fp8 != (sys.argv[2] == "fp8"):
    sys.exit(f"FAIL {sys.argv[1]}: quantization_config present={fp8} for --dtype {sys.argv[2]}")
EOF
}

variant base '{}'
variant no_qlora '{"q_lora_rank": null, "vocab_size": 512}'
variant mtp2_shared2 '{"num_nextn_predict_layers": 2, "n_shared_experts": 2, "vocab_size": 512}'
variant v2style '{"q_lora_rank": null, "n_shared_experts": 2, "topk_method": "greedy", "scoring_func": "softmax", "n_group": 1, "topk_group": 1, "num_nextn_predict_layers": 0, "rope_scaling": null, "hidden_size": 200, "vocab_size": 512}'
for v in base no_qlora mtp2_shared2; do
  check_init "$v" fp8
  check_init "$v" bf16
done
check_init v2style fp8
# The V2-Lite fixture config as it is.
cp "$FIX/v2lite-bf16/config.json" "$TMP/v2lite.json"
check_init v2lite bf16

# expect_fail NAME NEEDLE ARGS...: exit 1, one stderr line containing NEEDLE, no output directory.
expect_fail() {
  local name="$1" needle="$2"
  shift 2
  local rc=0
  "$BIN" init "$@" > /dev/null 2> "$TMP/err" || rc=$?
  local msg lines
  msg=$(cat "$TMP/err")
  lines=$(wc -l < "$TMP/err")
  if [ "$rc" -ne 1 ] || [ "$lines" -ne 1 ] || [[ "$msg" != *"$needle"* ]]; then
    echo "FAIL $name: rc=$rc lines=$lines (want 1, 1, '$needle'): $msg"; fails=$((fails + 1))
  else
    echo "ok $name: $msg"
  fi
}

mkdir "$TMP/exists"
touch "$TMP/exists/keep"
expect_fail existing_dir "$TMP/exists" --config "$TMP/base.json" --out "$TMP/exists"
[ -f "$TMP/exists/keep" ] && [ "$(ls "$TMP/exists")" = keep ] || { echo "FAIL existing_dir: directory touched"; fails=$((fails + 1)); }
variant groups '{"n_routed_experts": 18}'
expect_fail bad_groups "groups.json: n_routed_experts (18) must be divisible by n_group (4)" --config "$TMP/groups.json" --out "$TMP/o1"
[ ! -e "$TMP/o1" ] || { echo "FAIL bad_groups: created the output directory"; fails=$((fails + 1)); }
printf '{"model_type": "deepseek_v3", ' > "$TMP/trunc.json"
expect_fail malformed_config "trunc.json: malformed JSON" --config "$TMP/trunc.json" --out "$TMP/o2"
variant badtype '{"hidden_size": "big"}'
expect_fail config_field_type 'badtype.json: field "hidden_size"' --config "$TMP/badtype.json" --out "$TMP/o3"
expect_fail missing_config "nope.json" --config "$TMP/nope.json" --out "$TMP/o4"
expect_fail bad_dtype "--dtype" --config "$TMP/base.json" --out "$TMP/o5" --dtype fp4

if [ "$fails" -ne 0 ]; then echo "$fails case(s) failed"; exit 1; fi
echo "init_configs: all ok"
