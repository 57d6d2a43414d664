#!/usr/bin/env bash
# The main job on a fresh machine: set up, build, and chat with the bundled demo model
# (models/demo: a 13.5M-parameter DeepSeek-V3-architecture model trained by dsv3 itself on
# WordNet, the King James Bible and fortunes; FP8 weights; see the README's "Demo model").
# It answers "What does WORD mean?", "Use WORD in a sentence." and "What is another word for
# WORD?" in the style of its dictionary, and continues Bible-like or fortune-like prose.
# Drafts from its MTP module are on (--speculative mtp): each answer reports tok/s and the share
# of drafts accepted.
#   scripts/demo.sh [extra dsv3 chat args...]       e.g. scripts/demo.sh -m /path/to/DeepSeek-V3
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DSV3_BUILD_TARGET=dsv3 "$ROOT/scripts/setup.sh" "$ROOT/build" >&2
MODEL="$ROOT/models/demo"
[ -f "$MODEL/model.safetensors.index.json" ] || { echo "demo: $MODEL is missing (see scripts/train_demo.sh)" >&2; exit 1; }
echo "dsv3 demo: a small model trained on a dictionary, the KJV Bible and fortunes. Try: What does harbor mean?" >&2
exec "$ROOT/build/bin/dsv3" chat -m "$MODEL" --speculative mtp "$@"
