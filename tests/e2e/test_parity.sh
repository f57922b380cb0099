#!/bin/sh
# test_parity.sh: the C model against the PyTorch reference of the same
# math (tests/parity/model.py, written from trainer/model.h, sharing no
# code): build/tests/test_model writes weights, a packed batch with two
# images, its loss, every parameter's gradient and 10 AdamW losses;
# model.py recomputes them all in PyTorch and prints one ok / not ok line
# per quantity (loss 1e-4, gradients 1e-3, AdamW losses 1e-4 relative).
set -u
cd "$(dirname "$0")/../.."
: "${B:=build}"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
PARITY_DIR="$d/dump" "$B/tests/test_model" > "$d/c.out" || { cat "$d/c.out"; echo "not ok parity: the C side failed"; exit 1; }
grep -q '^ok parity: results written' "$d/c.out" || { echo "not ok parity: no dump written"; exit 1; }
/usr/bin/python3 tests/parity/model.py compare "$d/dump"
