#!/usr/bin/env bash
# bench_mpi_dedup.sh: `mvl filter clean,dedup` on one process against
# `mpirun -np N` (issue 9): wall time of each, and a check that the outputs
# agree (kept samples in order, rejects, stats).  Not a test: it prints
# figures and exits 0 unless something broke.
#
# Data: scripts/synth.py captions shards (dirty: exact and near duplicate
# images, bad captions), BENCH_SCALE of its default size in shards of
# BENCH_SHARD samples.  Each configuration runs BENCH_REPS times; the best
# wall time is reported.  On a 2-core machine -np 2 competes with the
# plain run's own two threads: the figure says what the split costs or
# gains there, not what N machines give.
#
# Environment: BENCH_SCALE (0.5), BENCH_SHARD (250), BENCH_NP ("2"),
# BENCH_REPS (2), BENCH_CHAIN (clean,dedup:exact_caption=1:near_caption=1),
# MVL (build/mvl), TMPDIR, BENCH_KEEP=1 (keep the data).
set -euo pipefail
cd "$(dirname "$0")/.."
MVL=${MVL:-$PWD/build/mvl}
SCALE=${BENCH_SCALE:-0.5}
SHARD=${BENCH_SHARD:-250}
NPS=${BENCH_NP:-2}
REPS=${BENCH_REPS:-2}
CHAIN=${BENCH_CHAIN:-clean,dedup:exact_caption=1:near_caption=1}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mvl-bench-mpi.XXXXXX")
[ "${BENCH_KEEP:-0}" = 1 ] || trap 'rm -rf "$tmp"' EXIT
MPI=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && MPI+=(--allow-run-as-root)

/usr/bin/python3 scripts/synth.py --out "$tmp/data" --seed 7 --scale "$SCALE" --shard-size "$SHARD" >/dev/null
inputs=("$tmp"/data/raw/captions/*.tar)
n=$("$MVL" ls -q "${inputs[@]}" | wc -l)
echo "bench_mpi_dedup: $n samples in ${#inputs[@]} shards, chain '$CHAIN', $(nproc) cores"

# run LABEL OUTDIR [launcher...]: best wall time of REPS runs
run() {
	local label=$1 out=$2 best=
	shift 2
	for _ in $(seq "$REPS"); do
		rm -rf "$out" && mkdir -p "$out"
		local t0 t1
		t0=$(date +%s.%N)
		"$@" "$MVL" filter "$CHAIN" -q -o "$out/o/%06d.tar" --rejects "$out/rejects.tsv" \
			--stats "$out/stats.json" "${inputs[@]}" 2>"$out/stderr" || {
			echo "bench_mpi_dedup: $label failed:"; tail -5 "$out/stderr"; exit 1; }
		t1=$(date +%s.%N)
		best=$(echo "$t0 $t1 $best" | awk '{d = $2 - $1; if ($3 == "" || d < $3) print d; else print $3}')
	done
	printf '  %-8s %7.2f s  %6.0f samples/s\n' "$label" "$best" "$(echo "$n $best" | awk '{print $1 / $2}')"
}

# the kept sample stream, whatever the shard boundaries
stream() { "$MVL" cat "$1"/o/*.tar | sha256sum | cut -c1-16; }

run "-np 0" "$tmp/np0"
ref=$(stream "$tmp/np0")
for np in $NPS; do
	run "-np $np" "$tmp/np$np" "${MPI[@]}" -np "$np"
	got=$(stream "$tmp/np$np")
	same=yes
	[ "$got" = "$ref" ] || same=NO
	cmp -s "$tmp/np0/rejects.tsv" "$tmp/np$np/rejects.tsv" || same=NO
	cmp -s "$tmp/np0/stats.json" "$tmp/np$np/stats.json" || same=NO
	echo "  -np $np output identical to one process: $same"
	[ "$same" = yes ] || exit 1
done
