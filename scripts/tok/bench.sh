#!/bin/sh
# bench.sh: encode throughput in MB/s (10^6 bytes of UTF-8 input per second,
# one thread) of `mvl tok encode` against tiktoken (npm, the Rust core in
# WASM) and js-tiktoken in the same run, on a multilingual corpus of 20 MB
# (scripts/tok/make_corpus.py --profile bench), for cl100k_base and gpt2;
# checks that mvl's ids on it are tiktoken's; then the worst case, one 1 MB
# piece with no pre-token boundary ('a' * 10^6, U+1F600 repeated).
#
# Usage: scripts/tok/bench.sh [-m MVL] [-s SIZE] [-e "cl100k_base gpt2"]
#                             [-c CAP_SECONDS] [-d WORKDIR] [--no-worst]
#   The corpus is kept in WORKDIR (default build/tokbench) between runs.
#   CAP (default 60): the reference encoders' worst-case runs are killed after
#   CAP seconds and reported as lower bounds, with a quadratic extrapolation.
set -u
cd "$(dirname "$0")/../.."
MVL=${MVL:-./mvl}
SIZE=20M
ENCS="cl100k_base gpt2"
CAP=60
WORK=build/tokbench
WORST=1
while [ $# -gt 0 ]; do
	case "$1" in
	-m) MVL=$2; shift 2 ;;
	-s) SIZE=$2; shift 2 ;;
	-e) ENCS=$2; shift 2 ;;
	-c) CAP=$2; shift 2 ;;
	-d) WORK=$2; shift 2 ;;
	--no-worst) WORST=0; shift ;;
	*) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
PY=/usr/bin/python3
mkdir -p "$WORK/ranks"
SPECIAL="--special-mode ordinary"
"$MVL" tok --help 2>&1 | grep -q -- '--special-mode' || SPECIAL="--special ordinary"
node scripts/tok/export_ranks.js "$WORK/ranks" --encodings "$(echo $ENCS | tr ' ' ,)" --quiet || exit 1
C="$WORK/corpus-$SIZE.txt"
[ -s "$C" ] || $PY scripts/tok/make_corpus.py --mode docs --profile bench --size "$SIZE" --stats -o "$C" || exit 1
BYTES=$(wc -c < "$C")
echo "corpus: $C, $BYTES bytes ($(nproc) cores; one thread each below)"

# best of 3 wall-clock seconds of a command, its stdout to $2
best3() {
	out=$1; shift
	best=""
	for _ in 1 2 3; do
		t0=$(date +%s.%N)
		"$@" > "$out" || return 1
		t1=$(date +%s.%N)
		best=$(echo "$t0 $t1 $best" | awk '{d=$2-$1; if ($3=="" || d<$3) print d; else print $3}')
	done
	echo "$best"
}

fail=0
for e in $ENCS; do
	R="$WORK/ranks/$e.tiktoken"
	# shellcheck disable=SC2086
	s=$(best3 "$WORK/mvl.$e.ids" "$MVL" tok encode --tiktoken "$R" --encoding "$e" $SPECIAL "$C") || { echo "mvl failed"; exit 1; }
	echo "mvl $e: $(echo "$BYTES $s" | awk '{printf "%.2f MB/s (%.3f s)", $1/1e6/$2, $2}')"
	node scripts/tok/ref_encode.js --bench "$C" --encoding "$e" || exit 1
	node scripts/tok/ref_encode.js --encoding "$e" --whole -o "$WORK/ref.$e.ids" "$C" || exit 1
	$PY scripts/tok/compare_ids.py "$WORK/ref.$e.ids" "$WORK/mvl.$e.ids" --show 1 --name "bench-corpus-ids-$e" || fail=1
done

if [ "$WORST" = 1 ]; then
	echo "worst case: one 1 MB piece"
	node -e "process.stdout.write('a'.repeat(1000000))" > "$WORK/worst-letters.txt"
	node -e "process.stdout.write('\u{1F600}'.repeat(250000))" > "$WORK/worst-emoji.txt"
	for e in $ENCS; do
		for k in letters emoji; do
			# shellcheck disable=SC2086
			s=$(best3 /dev/null "$MVL" tok encode --tiktoken "$WORK/ranks/$e.tiktoken" --encoding "$e" $SPECIAL "$WORK/worst-$k.txt")
			echo "mvl $e $k 1000000 B: ${s} s"
		done
	done
	node scripts/tok/ref_encode.js --worst --encoding "$(echo $ENCS | tr ' ' ,)" --kinds letters,emoji --cap "$CAP"
fi
exit $fail
