#!/usr/bin/env bash
# bench_minhash.sh: MinHash captions/s per core of mvl's minhash_sketch()
# (filters/minhash.c) against a numpy implementation of the same algorithm
# as datasketch computes it (scripts/bench/minhash_ref.py), in one run on
# the same captions, and an LSH index build + query over all captions
# (issue 4, Benchmark).  Not a test: it prints figures, ratios and the
# issue's goal with PASS/MISS, and exits 0 unless something broke.
#
# Input: BENCH_CAPTIONS WebDataset captions from scripts/bench/make_captions.py
# (web alt-texts, product titles, news, long descriptions, 8 other languages,
# web dirt), on tmpfs when there is room.
# mvl: scripts/minhash_bench.c, built here from filters/minhash.c,
# filters/text.c and pipeline/util.c with the project's flags (-O2);
# `sketch` loads all captions into memory, then times minhash_sketch() over
# them on one thread (best of BENCH_REPS): BENCH_PERM permutations,
# BENCH_NGRAM-word shingles.  Also shown: other permutation kernels
# (MVL_MINHASH_KERNEL) and ICU word segmentation for ASCII too
# (MVL_MINHASH_ICU=1), and 256 permutations.
# Python: minhash_ref.py on the first BENCH_PY_CAPTIONS captions, one core,
# the sketch loop only (captions in memory), datasketch's update (one
# shingle at a time) and update_batch (all shingles of a caption at once).
# LSH: `minhash_bench lsh`, one streaming pass, one thread: sketch, look the
# band keys up (bands x rows from lsh_params(BENCH_THRESHOLD, PERM)), verify
# the first candidate per band by the sketches' Jaccard estimate, union-find,
# add the keys; wall time and peak RSS (getrusage) per caption.
#
# Environment: BENCH_CAPTIONS (1000000), BENCH_PY_CAPTIONS (50000),
# BENCH_REPS (3), BENCH_PERM (128), BENCH_NGRAM (5), BENCH_THRESHOLD (0.8),
# BENCH_SEED (1), TMPDIR, BENCH_KEEP=1 keeps the temporary directory.
set -euo pipefail

cd "$(dirname "$0")/.."
N=${BENCH_CAPTIONS:-1000000}
NPY=${BENCH_PY_CAPTIONS:-50000}
REPS=${BENCH_REPS:-3}
PERM=${BENCH_PERM:-128}
NGRAM=${BENCH_NGRAM:-5}
TH=${BENCH_THRESHOLD:-0.8}
SEED=${BENCH_SEED:-1}
PY=/usr/bin/python3
[ "$NPY" -le "$N" ] || NPY=$N

die() { echo "bench_minhash.sh: $*" >&2; exit 1; }
now_ns() { date +%s%N; }

# the tar is about 1.04 kB per caption
need_kb=$((N * 1100 / 1024 + 65536))
if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')" -gt "$need_kb" ]; then
	W=$(mktemp -d /dev/shm/mvl-bench-minhash.XXXXXX)
	WHERE="tmpfs"
else
	W=$(mktemp -d "${TMPDIR:-/tmp}/mvl-bench-minhash.XXXXXX")
	WHERE="disk ($W)"
fi
cleanup() {
	if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "kept $W" >&2; else rm -rf "$W"; fi
}
trap cleanup EXIT

# ---------------------------------------------------------------- build
make -s build/deps.mk >&2 || die "make build/deps.mk failed"
DEP_CFLAGS=$(sed -n 's/^DEP_CFLAGS := //p' build/deps.mk)
DEP_LIBS=$(sed -n 's/^DEP_LIBS := //p' build/deps.mk)
# shellcheck disable=SC2086
gcc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -Wno-unused-parameter -Ipipeline -Ifilters \
	$DEP_CFLAGS scripts/minhash_bench.c filters/minhash.c filters/text.c pipeline/util.c \
	-o "$W/minhash_bench" $DEP_LIBS || die "cannot build scripts/minhash_bench.c"
B=$W/minhash_bench

T00=$(now_ns)
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
isa=$(grep -o -w -E 'avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')
echo "== mvl MinHash bench: $(nproc) cores, ${cpu:-unknown CPU} (${isa:-no avx2}); Python $($PY -c 'import platform, numpy; print(platform.python_version(), "numpy", numpy.__version__)') =="
echo "$PERM permutations, $NGRAM-word shingles; best of $REPS runs; files on $WHERE"

# ---------------------------------------------------------------- input
t0=$(now_ns)
$PY scripts/bench/make_captions.py "$N" "$W/in.tar" --seed "$SEED" 2>"$W/gen.log" ||
	{ cat "$W/gen.log" >&2; die "make_captions.py failed"; }
echo "input: $N captions ($(awk -v b="$(stat -c %s "$W/in.tar")" 'BEGIN { printf "%.0f", b / 1e6 }') MB tar, built in $(awk -v d=$(($(now_ns) - t0)) 'BEGIN { printf "%.1f", d / 1e9 }') s)"

get() { awk -v k="$1" '$1 == k { v = $2 } END { print v }' "$2"; }
fmt() { [ -n "$1" ] && printf "%'d" "$1" 2>/dev/null || echo "${1:-}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "n/a" }'; }

# ---------------------------------------------------------------- mvl
echo "mvl sketch ..."
"$B" sketch "$W/in.tar" "$PERM" "$NGRAM" "$REPS" >"$W/mvl.txt" || die "minhash_bench sketch failed"
MVL_MINHASH_KERNEL=avx2 "$B" sketch "$W/in.tar" "$PERM" "$NGRAM" "$REPS" >"$W/avx2.txt" || die "avx2 run failed"
MVL_MINHASH_KERNEL=scalar "$B" sketch "$W/in.tar" "$PERM" "$NGRAM" "$REPS" >"$W/scalar.txt" || die "scalar run failed"
MVL_MINHASH_ICU=1 "$B" sketch "$W/in.tar" "$PERM" "$NGRAM" "$REPS" >"$W/icu.txt" || die "ICU run failed"
"$B" sketch "$W/in.tar" 256 "$NGRAM" "$REPS" >"$W/p256.txt" || die "256-permutation run failed"
# every variant computes the same sketches
for f in avx2 scalar icu; do
	[ "$(get check "$W/$f.txt")" = "$(get check "$W/mvl.txt")" ] || die "$f sketches differ from the default's"
done

# ---------------------------------------------------------------- python
echo "python reference ($NPY captions) ..."
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	$PY scripts/bench/minhash_ref.py "$W/in.tar" --limit "$NPY" --perm "$PERM" --ngram "$NGRAM" \
	--reps "$REPS" >"$W/py.txt" 2>"$W/py.log" || { cat "$W/py.log" >&2; die "minhash_ref.py failed"; }

# ---------------------------------------------------------------- lsh
echo "LSH index build + query ($N captions) ..."
"$B" lsh "$W/in.tar" "$PERM" "$NGRAM" "$TH" >"$W/lsh.txt" || die "minhash_bench lsh failed"

# ---------------------------------------------------------------- report
M=$(get rate "$W/mvl.txt")
PB=$(get rate_batch "$W/py.txt")
PU=$(get rate_update "$W/py.txt")
row() { printf "  %-58s %12s\n" "$1" "$2"; }
echo
echo "== MinHash sketch, captions/s on one core =="
echo "  captions: $(get words "$W/mvl.txt") words, $(get bytes "$W/mvl.txt") bytes, $(get shingles "$W/mvl.txt") shingles on average (ICU words); python: $(get shingles "$W/py.txt") shingles (str.split)"
row "mvl minhash_sketch ($N, default kernel)" "$(fmt "$M")"
row "mvl, AVX2 kernel" "$(fmt "$(get rate "$W/avx2.txt")")"
row "mvl, scalar kernel (__int128)" "$(fmt "$(get rate "$W/scalar.txt")")"
row "mvl, ICU word break for ASCII too (no ASCII fast path)" "$(fmt "$(get rate "$W/icu.txt")")"
row "mvl, 256 permutations" "$(fmt "$(get rate "$W/p256.txt")")"
row "python numpy, datasketch update_batch ($NPY)" "$(fmt "$PB")"
row "python numpy, datasketch update per shingle ($NPY)" "$(fmt "$PU")"
echo "  (mvl: $(get seconds "$W/mvl.txt") s for $N captions; every mvl variant gave the same sketches)"
echo
echo "== LSH index: build + query over $(get captions "$W/lsh.txt") captions, one thread =="
b=$(get bands "$W/lsh.txt"); r=$(get rows "$W/lsh.txt")
echo "  lsh_params($TH, $PERM): $b bands x $r rows; S-curve P(s) = 1 - (1 - s^$r)^$b:"
printf "   "
for s in 0.3 0.5 0.6 0.7 0.8 0.85 0.9 0.95; do
	awk -v s="$s" -v b="$b" -v r="$r" 'BEGIN { printf " P(%s)=%.3g", s, 1 - (1 - s ^ r) ^ b }'
done
echo
row "wall time (read tar + sketch + index + verify), s" "$(get wall_seconds "$W/lsh.txt")"
row "  of which sketching, s" "$(get sketch_seconds "$W/lsh.txt")"
row "  of which band keys, table, verification, s" "$(get index_seconds "$W/lsh.txt")"
row "  of which reading the tar, s" "$(get read_seconds "$W/lsh.txt")"
row "captions/s, whole pass" "$(fmt "$(awk -v n="$(get captions "$W/lsh.txt")" -v s="$(get wall_seconds "$W/lsh.txt")" 'BEGIN { printf "%.0f", n / s }')")"
row "candidate pairs / verified (Jaccard est. >= $TH)" "$(get candidates "$W/lsh.txt") / $(get verified "$W/lsh.txt")"
row "duplicate clusters / captions in them beyond the first" "$(get clusters "$W/lsh.txt") / $(get dropped "$W/lsh.txt")"
row "captions without words (not indexed)" "$(get empty "$W/lsh.txt")"
row "peak RSS, MB" "$(awk -v k="$(get peak_rss_kb "$W/lsh.txt")" 'BEGIN { printf "%.0f", k / 1024 }')"
row "peak RSS per caption (above the start), bytes" "$(get rss_bytes_per_caption "$W/lsh.txt")"
row "  sketches kept for verification, bytes per caption" "$(get sketch_bytes_per_caption "$W/lsh.txt")"
row "  band table ($(get table_used "$W/lsh.txt") keys in $(get table_slots "$W/lsh.txt") slots), bytes per caption" "$(get table_bytes_per_caption "$W/lsh.txt")"
echo
echo "== goals (issue 4; informational) =="
printf "  %-46s %12s   goal >= %-9s %s\n" "1 core: mvl MinHash captions/s" "$M" 200000 \
	"$(awk -v r="$M" 'BEGIN { print (r + 0 >= 200000) ? "PASS" : "MISS" }')"
printf "  %-46s %12s\n" "1 core: mvl / python update_batch" "$(ratio "$M" "$PB")x"
printf "  %-46s %12s\n" "1 core: mvl / python update per shingle" "$(ratio "$M" "$PU")x"
echo "total time: $(awk -v d=$(($(now_ns) - T00)) 'BEGIN { printf "%.0f", d / 1e9 }') s"
