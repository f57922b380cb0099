#!/bin/sh
# test_parity.sh: the C model against the PyTorch reference of the same
# math (tests/parity/model.py, written from trainer/model.h, sharing no
# code): build/tests/test_model writes weights, a packed batch with two
# images, its loss, every parameter's gradient and 10 AdamW losses;
# model.py recomputes them all in PyTorch and prints one ok / not ok line
# per quantity (loss 1e-4, gradients 1e-3, AdamW losses 1e-4 relative).
# Twice: the dense micro model, then with a MoE layer (PARITY_MOE: balance
# term, capacity drops, and the selection biases after the AdamW steps).
set -u
cd "$(dirname "$0")/../.."
: "${B:=build}"
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
fail=0
for kind in dense moe; do
	if [ "$kind" = moe ]; then export PARITY_MOE=1; fi
	PARITY_DIR="$d/$kind" "$B/tests/test_model" > "$d/c.out" || { cat "$d/c.out"; echo "not ok parity $kind: the C side failed"; fail=1; continue; }
	grep -q '^ok parity: results written' "$d/c.out" || { echo "not ok parity $kind: no dump written"; fail=1; continue; }
	/usr/bin/python3 tests/parity/model.py compare "$d/$kind" > "$d/py.out" || fail=1
	sed "s/^\(ok\|not ok\) parity/\1 parity $kind/" "$d/py.out"
done
exit $fail
