#!/usr/bin/env bash
# The shipped demo model (models/demo, issue 11) loads as the FP8 release layout and has learned:
#  - a complete Hugging Face directory with 128x128 block-scaled FP8 weights, at most 60 MB;
#  - greedy chat answers to 300 held-out questions (tests/data/demo/chat_eval.jsonl: words whose
#    questions were never trained on) are made of real words: >= 85% of alphabetic words are in
#    /usr/share/dict/words, and some answers are right;
#  - bits per byte on held-out prose (KJV books and fortunes never trained on) <= 2.2;
#  - MTP drafts are accepted (>= 50%) and speculative greedy output equals plain greedy output.
#   tests/e2e/demo_model.sh path/to/dsv3
set -euo pipefail
BIN="$1"
ROOT="${DSV3_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}"
MODEL="$ROOT/models/demo"
DATA="$ROOT/tests/data/demo"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

for f in config.json model.safetensors.index.json tokenizer.json tokenizer_config.json train_log.jsonl loss.svg; do
  [ -f "$MODEL/$f" ] || { echo "FAIL: $MODEL/$f is missing" >&2; exit 1; }
done
size=$(du -cb "$MODEL"/*.safetensors | tail -1 | cut -f1)
[ "$size" -le $((60 * 1000 * 1000)) ] || { echo "FAIL: weights are $size bytes (> 60 MB)" >&2; exit 1; }
"$BIN" info --json "$MODEL" > "$tmp/info.json"
"$PY" - "$tmp/info.json" "$MODEL" <<'EOF'
import json, sys
info = json.load(open(sys.argv[1]))
cfg = json.load(open(sys.argv[2] + '/config.json'))
q = cfg.get('quantization_config', {})
assert q.get('quant_method') == 'fp8' and q.get('weight_block_size') == [128, 128], q
assert cfg.get('num_nextn_predict_layers', 0) >= 1, 'no MTP module'
assert cfg.get('n_routed_experts', 0) > 1 and cfg.get('n_shared_experts', 0) >= 1, 'not DeepSeekMoE'
print('demo_model: FP8 128x128, MTP, %d routed + %d shared experts' % (cfg['n_routed_experts'], cfg['n_shared_experts']))
EOF

# Chat answers and prose bits per byte, through the same script the README's numbers come from.
"$PY" "$ROOT/scripts/demo_eval.py" -m "$MODEL" --dsv3 "$BIN" --eval "$DATA/chat_eval.jsonl" \
  --prose "$DATA/heldout_prose.txt" -n 100 --jobs 2 -t 1 --quiet > "$tmp/eval.json"
"$PY" - "$tmp/eval.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
chat, prose = r['chat']['all'], r['prose']
print('demo_model: real words %.3f, bits/byte %.3f, right (lenient) %.3f of %d answers' % (
    chat['real_word_share'], prose['bits_per_byte'], chat['lenient'], chat['n']))
assert chat['real_word_share'] >= 0.85, 'real-word share %.3f < 0.85' % chat['real_word_share']
assert prose['bits_per_byte'] <= 2.2, 'bits per byte %.3f > 2.2' % prose['bits_per_byte']
assert chat['lenient'] > 0, 'no held-out question answered right'
EOF

# MTP: acceptance and exactness (the speed-up is a benchmark: bench/demo_mtp.py).
"$PY" "$ROOT/bench/demo_mtp.py" -m "$MODEL" --dsv3 "$BIN" --eval "$DATA/chat_eval.jsonl" \
  --prose "$DATA/heldout_prose.txt" -n 6 --rounds 1 > "$tmp/mtp.json"
"$PY" - "$tmp/mtp.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print('demo_model: MTP acceptance %.3f over %d drafts' % (r['acceptance'], r['drafted']))
assert r['acceptance'] >= 0.5, 'MTP acceptance %.3f < 0.5' % r['acceptance']
assert r['greedy_mismatches'] == 0
EOF
echo "demo_model: OK"
