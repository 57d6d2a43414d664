#!/usr/bin/env bash
# Throughput and peak memory of `dsv3 convert` on a ~5 GB FP8 checkpoint:
#   bench/bench_convert.sh [DSV3_BIN] [CHECKPOINT_DIR] [THREADS]
# Makes the checkpoint with `dsv3 init --config configs/bench-5gb.json` when it is absent (about
# a minute), converts it FP8 -> BF16 and the result back BF16 -> FP8 under /usr/bin/time -v, and
# prints MB/s of input, wall time and peak RSS against the limit (largest shard + 256 MB).
# Output goes next to the checkpoint (same disk) and is removed afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/build/bin/dsv3}"
CK="${2:-/tmp/b5}"
THREADS="${3:-0}"
[ -x "$BIN" ] || { echo "no dsv3 binary at $BIN (build it first)"; exit 1; }
if [ ! -f "$CK/config.json" ]; then
  echo "making $CK with dsv3 init (configs/bench-5gb.json) ..."
  "$BIN" -q init --config "$ROOT/configs/bench-5gb.json" --out "$CK"
fi
WORK="$(mktemp -d "$(dirname "$CK")/bench_convert.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
TARGS=()
[ "$THREADS" -gt 0 ] && TARGS=(-t "$THREADS")

run() {  # run NAME IN OUT TO
  local name="$1" in="$2" out="$3" to="$4"
  local in_bytes largest log="$WORK/$name.time"
  in_bytes=$(cat "$in"/*.safetensors | wc -c)
  largest=$(stat -c %s "$in"/*.safetensors | sort -n | tail -1)
  /usr/bin/time -v "$BIN" -q convert --to "$to" "${TARGS[@]}" "$in" "$out" 2>"$log"
  local out_largest wall rss_kb
  out_largest=$(stat -c %s "$out"/*.safetensors | sort -n | tail -1)
  [ "$out_largest" -gt "$largest" ] && largest=$out_largest
  wall=$(grep 'Elapsed (wall clock)' "$log" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
  rss_kb=$(grep 'Maximum resident set size' "$log" | awk '{print $NF}')
  awk -v n="$name" -v b="$in_bytes" -v w="$wall" -v r="$rss_kb" -v l="$largest" 'BEGIN {
    verdict = "OVER"; if (r * 1024 < l + 268435456) verdict = "ok"
    printf("%-10s input %.2f GB in %.1f s: %.0f MB/s of input; peak RSS %.0f MB (limit: largest shard %.0f MB + 256 MB = %.0f MB) %s\n",
      n, b/1e9, w, b/1e6/w, r*1024/1e6, l/1e6, l/1e6+256*1.048576, verdict) }'
}

echo "dsv3 convert benchmark on $CK ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
run fp8-bf16 "$CK" "$WORK/bf16" bf16
run bf16-fp8 "$WORK/bf16" "$WORK/fp8" fp8
