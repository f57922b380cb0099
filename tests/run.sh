#!/bin/sh
# run.sh: runs every unit test binary and end-to-end test script, counts
# their "ok" / "not ok" lines, and ends with "N passed, N failed".
# Environment: MVL (the binary under test), B (build directory).
# A test program that exits non-zero without reporting a failure, or prints
# nothing, counts as one failure: a crash is never a pass.
set -u
cd "$(dirname "$0")/.."
: "${MVL:=$(pwd)/build/mvl}" "${B:=$(pwd)/build}"
export MVL B
PY=/usr/bin/python3
pass=0 fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run_one() {
	name=$1; shift
	out="$tmp/out"
	"$@" >"$out" 2>"$tmp/err"
	rc=$?
	p=$(grep -c '^ok ' "$out")
	f=$(grep -c '^not ok ' "$out")
	grep '^not ok ' "$out" | sed "s|^|  $name: |"
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "  $name: exited $rc without reporting a failure"
		tail -n 20 "$tmp/err" | sed 's/^/    /'
		f=1
	fi
	if [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
		echo "  $name: reported no checks"
		f=1
	fi
	[ "$f" -ne 0 ] && tail -n 20 "$tmp/err" | sed 's/^/    /'
	echo "$name: $p passed, $f failed"
	pass=$((pass + p)); fail=$((fail + f))
}

for t in "$B"/tests/*; do
	[ -x "$t" ] || continue
	run_one "unit/$(basename "$t")" "$t"
done
for t in tests/e2e/test_*.py; do
	[ -f "$t" ] || continue
	run_one "e2e/$(basename "$t" .py)" "$PY" "$t"
done
for t in tests/e2e/test_*.sh; do
	[ -f "$t" ] || continue
	run_one "e2e/$(basename "$t" .sh)" sh "$t"
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
