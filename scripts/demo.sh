#!/usr/bin/env bash
# The main job on a fresh machine: set up, make the small demo model, and chat with it.
# The demo model's weights are RANDOM (made by `dsv3 init`): it exercises the whole engine
# (tokenizer, chat template, MLA, MoE, MTP, streaming) but its answers are gibberish. Point
# `dsv3 chat -m` at a real DeepSeek-V3-family checkpoint for real answers.
#   scripts/demo.sh [extra dsv3 chat args...]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
"$ROOT/scripts/setup.sh" "$ROOT/build" >&2
MODEL="$ROOT/.cache/demo-model"
if [ ! -f "$MODEL/model.safetensors.index.json" ]; then
  rm -rf "$MODEL"
  "$ROOT/build/bin/dsv3" init --config "$ROOT/configs/demo-tiny.json" --out "$MODEL" --seed 1 \
    --tokenizer "$ROOT/.cache/tokenizer" >&2
fi
echo "dsv3 demo: this model has random weights (no trained demo model ships yet); expect gibberish." >&2
exec "$ROOT/build/bin/dsv3" chat -m "$MODEL" "$@"
