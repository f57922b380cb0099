#!/bin/sh
# bench.sh: encode throughput in MB/s (10^6 bytes of UTF-8 input per second,
# one thread) of `mvl tok encode` against tiktoken (npm, the Rust core in
# WASM) and js-tiktoken in the same run, on a multilingual corpus of 20 MB
# (scripts/tok/make_corpus.py --profile bench), for cl100k_base and gpt2;
# checks that mvl's ids on it are tiktoken's; then the worst case, one 1 MB
# piece with no pre-token boundary ('a' * 10^6, U+1F600 repeated); and the
# scaling of `mvl tok count` from 1 to 2 threads on the corpus cut into
# ~2 kB documents (a sample stream).  Ratios are printed against the goals
# (5x tiktoken's single-thread MB/s; >= 1.7x on 2 threads).
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
	mine=$(echo "$BYTES $s" | awk '{printf "%.2f", $1/1e6/$2}')
	echo "mvl $e: $mine MB/s ($s s)"
	node scripts/tok/ref_encode.js --bench "$C" --encoding "$e" > "$WORK/ref.bench" || exit 1
	cat "$WORK/ref.bench"
	theirs=$(awk '/^tiktoken@/ {print $3; exit}' "$WORK/ref.bench")
	echo "$mine $theirs $e" | awk '{r=$1/$2; printf "ratio mvl/tiktoken %s: %.2fx (goal 5x: %s)\n", $3, r, (r >= 5 ? "PASS" : "MISS")}'
	node scripts/tok/ref_encode.js --encoding "$e" --whole -o "$WORK/ref.$e.ids" "$C" || exit 1
	$PY scripts/tok/compare_ids.py "$WORK/ref.$e.ids" "$WORK/mvl.$e.ids" --show 1 --name "bench-corpus-ids-$e" || fail=1
done

# two threads on a stream of documents
D="$WORK/docs.tar"
[ -s "$D" ] || $PY - "$C" "$D" <<'PYEOF' || exit 1
import io, sys, tarfile
data = open(sys.argv[1], "rb").read()
with tarfile.open(sys.argv[2] + ".tmp", "w", format=tarfile.USTAR_FORMAT) as out:
    i = k = 0
    while i < len(data):
        j = data.find(b"\n", i + 2000)
        j = len(data) if j < 0 else j + 1
        ti = tarfile.TarInfo("%08d.txt" % k)
        ti.size = j - i
        out.addfile(ti, io.BytesIO(data[i:j]))
        i, k = j, k + 1
import os
os.rename(sys.argv[2] + ".tmp", sys.argv[2])
PYEOF
e=$(echo $ENCS | cut -d' ' -f1)
# shellcheck disable=SC2086
t1=$(best3 /dev/null "$MVL" tok count -j1 --tiktoken "$WORK/ranks/$e.tiktoken" --encoding "$e" $SPECIAL "$D" 2>/dev/null)
# shellcheck disable=SC2086
t2=$(best3 /dev/null "$MVL" tok count -j2 --tiktoken "$WORK/ranks/$e.tiktoken" --encoding "$e" $SPECIAL "$D" 2>/dev/null)
echo "$t1 $t2 $e $BYTES" | awk '{r=$1/$2; printf "tok count %s, %d MB stream of ~2 kB documents: -j1 %.3f s (%.1f MB/s), -j2 %.3f s (%.1f MB/s): scaling %.2fx (goal 1.7x: %s)\n", $3, $4/1e6, $1, $4/1e6/$1, $2, $4/1e6/$2, r, (r >= 1.7 ? "PASS" : "MISS")}'

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
