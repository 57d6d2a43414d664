#!/usr/bin/env bash
# Build the demo model's training corpus (issue 11) from freely licensed text in Debian packages:
# WordNet 3.0 (dictionary prose + chat questions), the King James Bible, English fortunes and a
# small share of fortunes-zh. Deterministic (fixed seeds); about 20 s on the 2-core machine.
#   scripts/demo_corpus.sh [OUTDIR] [demo_corpus.py build options...]   (OUTDIR: .cache/demo-corpus)
# OUTDIR gets pretrain.jsonl, chat_train.jsonl, chat_eval.jsonl, heldout_prose.txt,
# tokenizer_train.txt, SOURCES.md (packages, versions, licences) and stats.json.
# Then (see the report of issue 11):
#   dsv3 tokenizer train --vocab 8192 --out TOK OUTDIR/tokenizer_train.txt
#   scripts/demo_corpus.py ids --tokenizer TOK OUTDIR     # chat markers as special-token ids
#   dsv3 data --ids OUTDIR/pretrain_ids.jsonl --vocab-size 8192 --out DATA
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT="${1:-$ROOT/.cache/demo-corpus}"
shift || true

PKGS=(wordnet-base bible-kjv bible-kjv-text fortunes fortunes-min fortunes-zh wamerican python3)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "demo_corpus: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cd "$ROOT"
exec /usr/bin/python3 "$ROOT/scripts/demo_corpus.py" build "$OUT" \
  --dsv3 "$ROOT/build/bin/dsv3" --template-dir "$ROOT/.cache/tokenizer" "$@"
