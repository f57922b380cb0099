#!/bin/sh
# exactness.sh: `mvl tok encode` against tiktoken itself (npm `tiktoken`, the
# Rust core compiled to WASM, under node) on a generated multilingual corpus.
# For each encoding: every corpus line encoded on its own (--lines), and the
# documents corpus (\n, \r\n, lone \r, blank-line runs) encoded as one text.
#
# Usage: scripts/tok/exactness.sh [-m MVL] [-e "gpt2 cl100k_base o200k_base"]
#                                 [-d WORKDIR] [-- MAKE_CORPUS_ARGS...]
#   MAKE_CORPUS_ARGS go to scripts/tok/make_corpus.py (default: --size 2M).
# Prints "ok NAME" or "not ok NAME: ..." (with the first mismatches explained)
# per check; exit status 0 when all are identical.  Needs node and
# tests/node/node_modules (scripts/deps.sh).
set -u
cd "$(dirname "$0")/../.."
MVL=${MVL:-./mvl}
ENCS="gpt2 cl100k_base o200k_base"
WORK=""
while [ $# -gt 0 ]; do
	case "$1" in
	-m) MVL=$2; shift 2 ;;
	-e) ENCS=$2; shift 2 ;;
	-d) WORK=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "exactness.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ $# -gt 0 ] || set -- --size 2M
if [ -z "$WORK" ]; then
	WORK=$(mktemp -d)
	trap 'rm -rf "$WORK"' EXIT
fi
mkdir -p "$WORK/ranks"
PY=/usr/bin/python3
# the option that makes special-token text ordinary text in a whole-text encode
SPECIAL="--special-mode ordinary"
"$MVL" tok --help 2>&1 | grep -q -- '--special-mode' || SPECIAL="--special ordinary"

fail=0
node scripts/tok/export_ranks.js "$WORK/ranks" --encodings "$(echo $ENCS | tr ' ' ,)" --quiet || exit 1
$PY scripts/tok/make_corpus.py "$@" --mode lines -o "$WORK/lines.txt" || exit 1
$PY scripts/tok/make_corpus.py "$@" --mode docs -o "$WORK/docs.txt" || exit 1
for e in $ENCS; do
	R="$WORK/ranks/$e.tiktoken"
	node scripts/tok/ref_encode.js --encoding "$e" --lines -o "$WORK/ref.$e.lines" "$WORK/lines.txt" || exit 1
	if "$MVL" tok encode --tiktoken "$R" --encoding "$e" --lines "$WORK/lines.txt" > "$WORK/mvl.$e.lines"; then
		$PY scripts/tok/compare_ids.py "$WORK/ref.$e.lines" "$WORK/mvl.$e.lines" --input "$WORK/lines.txt" \
			--ranks "$R" --show 5 --name "exact-lines-$e" || fail=1
	else
		echo "not ok exact-lines-$e: mvl tok encode failed"; fail=1
	fi
	node scripts/tok/ref_encode.js --encoding "$e" --whole -o "$WORK/ref.$e.docs" "$WORK/docs.txt" || exit 1
	# shellcheck disable=SC2086
	if "$MVL" tok encode --tiktoken "$R" --encoding "$e" $SPECIAL "$WORK/docs.txt" > "$WORK/mvl.$e.docs"; then
		$PY scripts/tok/compare_ids.py "$WORK/ref.$e.docs" "$WORK/mvl.$e.docs" \
			--ranks "$R" --show 1 --name "exact-docs-$e" || fail=1
	else
		echo "not ok exact-docs-$e: mvl tok encode failed"; fail=1
	fi
done
exit $fail
