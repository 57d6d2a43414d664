#!/usr/bin/env bash
# The whole test suite on a fresh machine: setup, the release build's tests, then the same
# suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
#   scripts/test.sh            (what .ci/run calls)
#   DSV3_SKIP_SANITIZE=1 scripts/test.sh   (release build only, for a quick local run)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/setup.sh" "$ROOT/build"

# Independent reference tokenizer (JS) for the parity tests.
NODE_DIR="$ROOT/.cache/node"
if [ ! -d "$NODE_DIR/node_modules/@lenml/tokenizers" ]; then
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && { [ -f package.json ] || npm init -y >/dev/null; } &&
   npm install --silent --no-audit --no-fund @lenml/tokenizers@3.7.2 >/dev/null)
fi

cd "$ROOT/build"
ctest --output-on-failure -j2 --timeout 1800

if [ "${DSV3_SKIP_SANITIZE:-0}" != 1 ]; then
  "$ROOT/scripts/setup.sh" "$ROOT/build-asan" -DDSV3_SANITIZE=ON -DDSV3_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
  cd "$ROOT/build-asan"
  ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure -j2 --timeout 1800 -LE slow
fi
