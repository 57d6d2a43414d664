#!/usr/bin/env bash
# The whole test suite on a fresh machine: setup, the release build's tests, then the same
# suite again under AddressSanitizer + UndefinedBehaviorSanitizer (less the tests labelled
# "slow", whose instrumented part is already covered by the unit tests).
#   scripts/test.sh            (what .ci/run calls)
#   DSV3_SKIP_SANITIZE=1 scripts/test.sh   (release build only, for a quick local run)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
export DSV3_TEST_DEPS=1
"$ROOT/scripts/setup.sh" "$ROOT/build"

# Node packages for the tests: the independent reference tokenizers for the parity tests
# (@lenml/tokenizers; tokenizers = Hugging Face's Rust library) and playwright-core.
NODE_DIR="$ROOT/.cache/node"
NODE_PKGS=(@lenml/tokenizers@3.7.2 tokenizers@0.23.2 playwright-core@1.65.1)
for pkg in "${NODE_PKGS[@]}"; do
  if [ ! -d "$NODE_DIR/node_modules/${pkg%@*}" ]; then
    mkdir -p "$NODE_DIR"
    (cd "$NODE_DIR" && { [ -f package.json ] || npm init -y >/dev/null; } &&
     npm install --silent --no-audit --no-fund "${NODE_PKGS[@]}" >/dev/null)
    break
  fi
done

cd "$ROOT/build"
ctest --output-on-failure -j2 --timeout 1800

if [ "${DSV3_SKIP_SANITIZE:-0}" != 1 ]; then
  # -O1 -g1 (line tables, so reports still name file and line) instead of -O2 -g: one file side by
  # side 63 -> 39 s; the whole build 42 -> 20 compile CPU-minutes here (the -O2 build ran beside
  # other work, so that ratio flatters); its tests 2m40 -> 3m20.
  "$ROOT/scripts/setup.sh" "$ROOT/build-asan" -DDSV3_SANITIZE=ON -DDSV3_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG"
  cd "$ROOT/build-asan"
  ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure -j2 --timeout 1800 -LE slow
fi
