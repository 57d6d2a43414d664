#!/usr/bin/env bash
# `dsv3 plot` on a training log: the SVG is well-formed XML (parsed by Python's minidom) with one
# polyline per series holding one point per logged value; a log with no usable line fails.
#   tests/e2e/plot_cli.sh path/to/dsv3
set -euo pipefail
BIN="$1"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

{
  echo "dsv3 train: a header line that is not JSON"
  for s in $(seq 1 50); do
    main=$(awk -v s="$s" 'BEGIN { printf "%.4f", 7.6 * exp(-s / 15) + 2.2 + 0.05 * sin(s) }')
    mtp=$(awk -v m="$main" 'BEGIN { printf "%.4f", m + 0.4 }')
    if [ $((s % 10)) -eq 0 ]; then
      vl=$(awk -v m="$main" 'BEGIN { printf "%.4f", m + 0.15 }')
      vm=$(awk -v m="$mtp" 'BEGIN { printf "%.4f", m + 0.2 }')
      echo "{\"step\":$s,\"loss\":$main,\"main_loss\":$main,\"mtp_loss\":$mtp,\"lr\":3e-4,\"val_loss\":$vl,\"val_mtp_loss\":$vm}"
    else
      echo "{\"step\":$s,\"loss\":$main,\"main_loss\":$main,\"mtp_loss\":$mtp,\"lr\":3e-4}"
    fi
  done
} > "$tmp/train.log"

"$BIN" plot "$tmp/train.log" 2> "$tmp/err"
grep -q "1 skipped" "$tmp/err" || { echo "FAIL: skipped header not reported: $(cat "$tmp/err")" >&2; exit 1; }
if ! command -v python3 > /dev/null; then
  echo "plot_cli: python3 not found, XML check skipped (counting polylines only)"
  [ "$(grep -c '<polyline' "$tmp/train.svg")" = 4 ] || { echo "FAIL: expected 4 polylines" >&2; exit 1; }
else
python3 - "$tmp/train.svg" <<'PY'
import sys, xml.dom.minidom
doc = xml.dom.minidom.parse(sys.argv[1])  # raises on malformed XML
assert doc.documentElement.tagName == "svg", doc.documentElement.tagName
want = {"main_loss": 50, "mtp_loss": 50, "val_loss": 5, "val_mtp_loss": 5}
got = {p.getAttribute("data-key"): len(p.getAttribute("points").split()) for p in doc.getElementsByTagName("polyline")}
assert got == want, got
texts = [t.firstChild.data for t in doc.getElementsByTagName("text") if t.firstChild]
for label in ("step", "loss (nats)"):
    assert label in texts, (label, texts)
assert any(t.startswith("Training loss") for t in texts), texts
PY
fi

"$BIN" plot "$tmp/train.log" --out "$tmp/custom.svg" --title "my run" 2>/dev/null
grep -q ">my run<" "$tmp/custom.svg"

echo "nothing here" > "$tmp/bad.log"
if "$BIN" plot "$tmp/bad.log" 2> "$tmp/err"; then echo "FAIL: unusable log accepted" >&2; exit 1; fi
grep -q "bad.log: no usable line" "$tmp/err" || { echo "FAIL: error text: $(cat "$tmp/err")" >&2; exit 1; }
[ ! -e "$tmp/bad.svg" ]
echo "plot_cli: ok"
