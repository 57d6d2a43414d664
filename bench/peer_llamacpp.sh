#!/usr/bin/env bash
# Side-by-side speed of dsv3 and llama.cpp (node-llama-cpp's prebuilt CPU build) on the same
# V3-shaped random model at about the same bits (dsv3: FP8 E4M3 + 128x128 scales, llama.cpp: Q8_0),
# in one run, with the machine's measured memory bandwidth. Not a test: prints a table per round.
#   [ROUNDS=2] [DSV3_BENCH_ARGS="--prefill bf16"] bench/peer_llamacpp.sh [CONFIG.json] [PREFILL] [DECODE]
# Needs: build/bin/dsv3, node + npm (installs node-llama-cpp into /tmp/peers/llamacpp once),
# ../shared/peers/{hf_to_gguf.py,llamacpp_run.mjs}.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEERS="${DSV3_PEERS:-$ROOT/../shared/peers}"
CONFIG="${1:-$ROOT/configs/bench-5gb.json}"
P="${2:-128}"
N="${3:-32}"
WORK="${DSV3_BENCH_DIR:-/tmp/dsv3-peer}"
THREADS="$(nproc)"
mkdir -p "$WORK"
name="$(basename "$CONFIG" .json)"
if [ ! -d /tmp/peers/llamacpp/node_modules/node-llama-cpp ]; then
  mkdir -p /tmp/peers/llamacpp && (cd /tmp/peers/llamacpp && npm init -y >/dev/null &&
    NODE_LLAMA_CPP_SKIP_DOWNLOAD=true NODE_LLAMA_CPP_GPU=false \
    npm install --silent --omit=optional node-llama-cpp@3.22.1 @node-llama-cpp/linux-x64@3.22.1)
fi
[ -d "$WORK/$name-fp8" ] || "$ROOT/build/bin/dsv3" init --config "$CONFIG" --out "$WORK/$name-fp8" --seed 1
[ -f "$WORK/$name-q8_0.gguf" ] || python3 "$PEERS/hf_to_gguf.py" --random "$CONFIG" "$WORK/$name-q8_0.gguf" --outtype q8_0 --seed 1
# Warm the page cache for both, so neither pays disk reads. dsv3 warms through its own mapping,
# as a first run does: pages first read through it come as 2 MiB folios (MADV_HUGEPAGE).
"$ROOT/build/bin/dsv3" bench -m "$WORK/$name-fp8" -p 2 -n 2 --reps 1 --no-bandwidth > /dev/null
cat "$WORK/$name-q8_0.gguf" > /dev/null
# DSV3_BENCH_ARGS: extra dsv3 flags, e.g. "--prefill bf16". ROUNDS (default 2): the engines take
# turns, so that on a shared host a slow minute hits both rather than one.
rounds=()
for r in $(seq "${ROUNDS:-2}"); do
  ours=$("$ROOT/build/bin/dsv3" bench -m "$WORK/$name-fp8" -p "$P" -n "$N" --reps 3 --json -t "$THREADS" ${DSV3_BENCH_ARGS:-})
  peer=$(cd /tmp/peers/llamacpp && node "$PEERS/llamacpp_run.mjs" bench --model "$WORK/$name-q8_0.gguf" \
    --threads "$THREADS" --prefill "$P" --decode "$N" --reps 3 --quiet)
  rounds+=("$ours" "$peer")
done
python3 - "${rounds[@]}" <<'PY'
import json, sys
runs = [json.loads(a) for a in sys.argv[1:]]
for r in range(0, len(runs), 2):
    o, p = runs[r], runs[r + 1]
    print(f"round {r // 2 + 1}")
    print(f"{'':22}{'dsv3 (FP8)':>14}{'llama.cpp (Q8_0)':>18}{'ratio':>8}")
    for k in ("prefill_tok_s", "decode_tok_s"):
        print(f"{k:22}{o[k]:14.2f}{p[k]:18.2f}{o[k] / p[k]:8.2f}")
    print(f"memory read bandwidth {o['memory_read_gb_s']:.1f} GB/s; dsv3 decode reads {o['decode_weight_gb_s']:.1f} GB/s "
          f"({100 * o['bandwidth_fraction']:.0f}% of it), {o['decode_bytes_per_token'] / 1e6:.0f} MB per token")
PY
