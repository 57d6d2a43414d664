#!/usr/bin/env bash
# The ISA kernel files (kernels_avx2.cc, kernels_avx512*.cc) are compiled with -mavx2 / -mavx512*.
# An inline function they emit with external linkage (a weak symbol: a core header's helper, a
# std::vector member) may be the one copy the linker keeps for the whole program, so baseline
# code would run AVX instructions and die of SIGILL on a CPU without them. This fails if a weak
# symbol defined by an ISA object holds a VEX/EVEX instruction (every AVX/AVX-512/FMA/F16C
# mnemonic starts with v or, for mask registers, k). It first shows that it would notice: a probe
# compiled with -mavx2 must be flagged.
#   isa_symbols.sh CXX OBJECT...     (the objects of dsv3_ops; non-ISA ones are skipped)
set -euo pipefail
cxx=$1
shift

# Weak (W, V) and unique (u) symbols of an object whose code uses VEX/EVEX instructions.
avx_weak_symbols() {
  nm --defined-only "$1" | awk '$2 ~ /^[WVu]$/ {print $3}' | while read -r sym; do
    if objdump -d --no-show-raw-insn --disassemble="$sym" "$1" | grep -qE '^ +[0-9a-f]+:[[:space:]]+[vk][a-z0-9]+'; then
      echo "$sym"
    fi
  done
}

probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
cat > "$probe_dir/probe.cc" <<'CC'
inline float probe_scale(float x) { return x * 3.0f; }
float (*probe_ptr)(float) = probe_scale;  // an out-of-line, weak copy of the inline function
CC
"$cxx" -O2 -mavx2 -c "$probe_dir/probe.cc" -o "$probe_dir/probe.o"
if [ -z "$(avx_weak_symbols "$probe_dir/probe.o")" ]; then
  echo "isa_symbols: the check missed the AVX2 probe's weak symbol; it would miss real ones" >&2
  exit 1
fi

checked=0
bad=0
for o in "$@"; do
  case "$(basename "$o")" in kernels_avx*) ;; *) continue ;; esac
  checked=$((checked + 1))
  while read -r sym; do
    [ -n "$sym" ] || continue
    echo "isa_symbols: $(basename "$o") defines weak $(echo "$sym" | c++filt) with AVX instructions;" \
         "keep it out of the ISA file (unnamed namespace, or no inline core helper there)" >&2
    bad=1
  done < <(avx_weak_symbols "$o")
done
[ "$checked" -gt 0 ] || { echo "isa_symbols: no kernels_avx* object among the arguments" >&2; exit 1; }
[ "$bad" -eq 0 ] || exit 1
echo "isa_symbols: $checked ISA objects, no weak symbol with AVX code"
