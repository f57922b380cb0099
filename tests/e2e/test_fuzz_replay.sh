#!/bin/sh
# test_fuzz_replay.sh: every fuzz harness over its seed corpus and every
# input a fuzzer ever crashed on (tests/fuzz/regress/NAME), without
# libFuzzer or clang: $B/tests-fuzz/fuzz_NAME is the harness linked with
# tests/fuzz/replay.c by the normal build (sanitized under `make asan`).
# One "ok NAME: N inputs" or "not ok NAME: ..." line per harness.
cd "$(dirname "$0")/../.." || exit 1
: "${B:=$(pwd)/build}"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for src in tests/fuzz/fuzz_*.c; do
	name=$(basename "$src" .c)
	name=${name#fuzz_}
	bin=$B/tests-fuzz/fuzz_$name
	if [ ! -x "$bin" ]; then
		echo "not ok $name: $bin not built"
		continue
	fi
	TMPDIR=$tmp "$bin" "$name" "tests/fuzz/corpus/$name" "tests/fuzz/regress/$name" \
		>"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" -eq 0 ] && grep -q "^ok $name: " "$tmp/out"; then
		cat "$tmp/out"
	else
		last=$(sed -n 's/^replay: //p' "$tmp/err" | tail -n 1)
		echo "not ok $name: exit $rc on '$last'"
		grep -v '^replay: ' "$tmp/err" | tail -n 15 >&2
	fi
done
