#!/usr/bin/env bash
# dsv3 convert through the CLI: both directions pass `dsv3 info`, a conversion killed with
# SIGKILL leaves no complete-looking bad shard and a rerun finishes it identically, and a full
# disk (small tmpfs; skipped when mounting is not permitted) fails cleanly with no partial shard.
set -euo pipefail
BIN="$1"
FIX="${DSV3_FIXTURES:?}/v3-fp8"
T="$(mktemp -d /tmp/dsv3_e2e_convert.XXXXXX)"
cleanup() { umount "$T/small" 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT

"$BIN" -q convert --to bf16 "$FIX" "$T/bf16"
"$BIN" info "$T/bf16" | grep -q "quantization      none"
"$BIN" -q convert --to fp8 "$T/bf16" "$T/fp8"
"$BIN" info "$T/fp8" | grep -q "quantization      fp8-e4m3-block128"
# Requantising the BF16 rounding of FP8 weights whose scale was amax/448 gives the same set of tensors.
[ "$("$BIN" info --json "$T/fp8" | grep -o '"tensors":[0-9]*')" = "$("$BIN" info --json "$FIX" | grep -o '"tensors":[0-9]*')" ]

# Refusals: existing output without --force, IN == OUT, and the dtype the input already has.
if "$BIN" -q convert --to bf16 "$FIX" "$T/bf16" 2>/dev/null; then echo "overwrote without --force"; exit 1; fi
if "$BIN" -q convert --to bf16 "$T/bf16" "$T/bf16/../bf16" --force 2>/dev/null; then echo "IN == OUT accepted"; exit 1; fi
if "$BIN" -q convert --to fp8 "$T/fp8" "$T/again" 2>/dev/null; then echo "fp8 -> fp8 accepted"; exit 1; fi
[ ! -e "$T/again" ]

# Kill a real run mid-way, then rerun: the result equals an uninterrupted conversion.
# A bigger random checkpoint (init) makes the run long enough to be killed inside a shard.
"$BIN" -q init --config "${DSV3_SOURCE_DIR:?}/configs/demo-tiny.json" --out "$T/big" --shard-size 0.02
"$BIN" -q convert --to bf16 "$T/big" "$T/big_ref"
"$BIN" -q convert --to bf16 -t 1 "$T/big" "$T/big_out" 2>/dev/null &
pid=$!
for _ in $(seq 1 400); do
  ls "$T/big_out"/*.safetensors >/dev/null 2>&1 && break
  sleep 0.05
done
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
[ ! -e "$T/big_out/config.json" ] || echo "note: the run finished before it could be killed"
# Every shard under its final name is complete (header and data parse); partial ones are *.partial.
for f in "$T/big_out"/*.safetensors; do
  [ -e "$f" ] || continue
  cmp -s "$f" "$T/big_ref/$(basename "$f")" || { echo "complete-looking shard differs: $f"; exit 1; }
done
"$BIN" convert --to bf16 "$T/big" "$T/big_out" 2>"$T/resume.log"
grep -q "already complete, skipped" "$T/resume.log" || echo "note: nothing to skip (killed before the first shard)"
for f in "$T/big_ref"/*; do cmp "$f" "$T/big_out/$(basename "$f")"; done
[ -z "$(ls "$T/big_out" | grep -e partial -e dsv3-convert || true)" ]
"$BIN" info "$T/big_out" >/dev/null

# Disk full: a 1 MB tmpfs cannot hold the 8 MB BF16 shards.
mkdir -p "$T/small"
if mount -t tmpfs -o size=1M tmpfs "$T/small" 2>/dev/null; then
  if "$BIN" -q convert --to bf16 "$FIX" "$T/small/out" 2>"$T/enospc.log"; then echo "disk full not detected"; exit 1; fi
  grep -qi "disk space\|no space\|disk full" "$T/enospc.log" || { cat "$T/enospc.log"; exit 1; }
  [ -z "$(find "$T/small" -name '*.safetensors*')" ] || { echo "partial shard left behind"; exit 1; }
  umount "$T/small"
else
  echo "skip: cannot mount a tmpfs here (not permitted); disk-full check not run"
fi
echo "convert e2e: ok"
