#!/usr/bin/env bash
# dsv3's tokenizer vs Hugging Face `tokenizers` (Rust, official Node binding), single-threaded
# encode throughput on one corpus file, both cutting it into the same ~2 KB chunks,
# add_special_tokens=false. Runs alternate (dsv3, HF, dsv3, HF, ...) because the machine is
# shared; the best pass of each side counts. Then checks that HF's ids equal dsv3's ids on
# every chunk (tests/js/parity.mjs --ref hf).
#   bench/tokenizer_vs_hf.sh [BUILD_DIR] [RUNS]      (default: build, 3)
# Env: DSV3_TOKENIZER_DIR, DSV3_NODE_DIR (where tokenizers is installed, default .cache/node).
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="$(cd "${1:-$SRC/build}" && pwd)"
RUNS="${2:-3}"
TOK="${DSV3_TOKENIZER_DIR:-$SRC/.cache/tokenizer}"
export DSV3_NODE_DIR="${DSV3_NODE_DIR:-$SRC/.cache/node}"
HF_VERSION=0.23.2  # same pin as scripts/test.sh

if [ ! -x "$BUILD/bin/dsv3" ] || [ ! -x "$BUILD/bin/bench_tokenizer" ]; then
  cmake --build "$BUILD" --target dsv3 bench_tokenizer -j2
fi
if [ ! -d "$DSV3_NODE_DIR/node_modules/tokenizers" ]; then
  mkdir -p "$DSV3_NODE_DIR"
  (cd "$DSV3_NODE_DIR" && { [ -f package.json ] || npm init -y >/dev/null; } &&
   npm install --silent --no-audit --no-fund "tokenizers@$HF_VERSION" >/dev/null)
fi

# One thread on the HF side: rayon (only used for batches, pinned anyway) and the libuv pool that
# runs each async encode call.
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false UV_THREADPOOL_SIZE=1

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
CORPUS="$TMP/corpus.txt"
node "$SRC/tests/js/corpus.mjs" "$CORPUS" 6.4

# "encode pass P (...): MB MB in CPU s cpu (WALL s wall) ..." -> "P MB CPU WALL"
passes() { sed -nE 's/^encode pass ([0-9]+) .*: ([0-9.]+) MB in ([0-9.]+) s cpu \(([0-9.]+) s wall\).*/\1 \2 \3 \4/p' "$@"; }

loads=()
for i in $(seq 1 "$RUNS"); do
  loads+=("$(cut -d' ' -f1-3 /proc/loadavg)")
  "$BUILD/bin/bench_tokenizer" "$TOK" "$CORPUS" >"$TMP/dsv3.$i"
  node "$SRC/bench/bench_tokenizer_hf.mjs" "$TOK" "$CORPUS" >"$TMP/hf.$i"
  echo "run $i/$RUNS (load ${loads[-1]}):" \
    "dsv3 $(passes "$TMP/dsv3.$i" | awk '{printf " %.1f", $2/$3}') MB/s cpu," \
    "hf $(passes "$TMP/hf.$i" | awk '{printf " %.1f", $2/$3}') MB/s cpu (passes 0..2)"
done
loads+=("$(cut -d' ' -f1-3 /proc/loadavg)")

echo
grep -h "^load tokenizer.json" "$TMP/dsv3.1" | sed 's/^/dsv3: /'
grep -h "^load tokenizer.json\|^tokenizers\|^binding" "$TMP/hf.1" | sed 's/^/hf:   /'
grep -h "tokens, .* bytes/token" "$TMP/dsv3.1" | sed 's/^/dsv3: /'
grep -h "tokens, .* bytes/token" "$TMP/hf.1" | sed 's/^/hf:   /'
# Best over all runs: warm passes (1..) and the empty-cache pass 0, by CPU time and by wall time.
best() { passes "$@" | awk -v sel="$SEL" '(sel == "cold") == ($1 == 0) {
  c = $2 / $3; w = $2 / $4; if (c > bc) bc = c; if (w > bw) bw = w } END { printf "%.2f %.2f", bc, bw }'; }
for SEL in warm cold; do
  read -r dc dw <<<"$(SEL=$SEL best "$TMP"/dsv3.*)"
  read -r hc hw <<<"$(SEL=$SEL best "$TMP"/hf.*)"
  printf '%s cache, best of %s runs: dsv3 %6.2f MB/s cpu %6.2f MB/s wall | HF %5.2f MB/s cpu %5.2f MB/s wall | ratio %.2fx cpu %.2fx wall\n' \
    "$SEL" "$RUNS" "$dc" "$dw" "$hc" "$hw" "$(awk "BEGIN{print $dc/$hc}")" "$(awk "BEGIN{print $dw/$hw}")"
  [ "$SEL" = warm ] && ratio_cpu="$(awk "BEGIN{print $dc/$hc}")" && ratio_wall="$(awk "BEGIN{print $dw/$hw}")"
done
echo "load average (1/5/15 min) at each run start and at the end: ${loads[*]/%/;} on $(nproc) cores"
awk -v c="$ratio_cpu" -v w="$ratio_wall" 'BEGIN { printf "target dsv3 >= 1.5x HF single-threaded (warm): %s by cpu, %s by wall\n",
  (c >= 1.5) ? "met" : "NOT met", (w >= 1.5) ? "met" : "NOT met" }'

echo
node "$SRC/tests/js/parity.mjs" --ref hf --corpus "$CORPUS" "$BUILD/bin/dsv3" "$TOK"
