#!/bin/sh
# bench_mpi.sh: data-parallel training on one machine, `mpirun -np 2 mvl
# train` (2 ranks x 1 thread) against one process of 2 threads, on
# --preset tiny --synthetic with the same global batch (the process
# accumulates 2 micro-batches, each rank takes 1), in the same run.
# Prints tokens/s of each (median over the steps after the first, as mvl
# train reports it), the communication share of the 2-rank step (seconds
# inside MPI calls over step time, after the first step: rank 0's count,
# which includes waiting for the slower rank), the largest relative
# difference of their per-step losses, and the AdamW state bytes per rank
# with --zero 1 on 1 and 2 ranks.  Not a test: figures only; exits non-zero
# when a run fails.  The machine's load average is printed beside them.
#
# Usage: scripts/bench_mpi.sh [-m MVL] [-n STEPS] [-p PRESET]
set -u
cd "$(dirname "$0")/.." || exit 1
STEPS=6
PRESET=tiny
while [ $# -gt 0 ]; do
	case "$1" in
	-m) MVL=$2; shift 2 ;;
	-n) STEPS=$2; shift 2 ;;
	-p) PRESET=$2; shift 2 ;;
	*) echo "bench_mpi.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
if [ -z "${MVL:-}" ]; then
	make -s mvl >&2 || exit 1
	MVL=./mvl
fi
command -v mpirun >/dev/null || { echo "bench_mpi.sh: no mpirun" >&2; exit 1; }
MPI="mpirun --oversubscribe -np 2"
[ "$(id -u)" = 0 ] && MPI="mpirun --allow-run-as-root --oversubscribe -np 2"
export OMP_WAIT_POLICY=PASSIVE
T=$(mktemp -d "${TMPDIR:-/tmp}/mvl-bench-mpi.XXXXXX")
trap 'rm -rf "$T"' EXIT
die() { echo "bench_mpi.sh: $*" >&2; exit 1; }
load() { awk '{ printf "%s %s %s", $1, $2, $3 }' /proc/loadavg; }
field() { sed -n "s|^$1 *\([0-9.]*\).*|\1|p" "$2" | head -n 1; }

echo "== mpi bench: $(nproc) cores, --preset $PRESET --synthetic, $STEPS steps, load average $(load) =="
"$MVL" train --preset "$PRESET" --synthetic --steps "$STEPS" --grad-accum 2 -j2 -o "$T/one" \
	>"$T/one.out" 2>"$T/one.err" || die "1 rank failed: $(tail -n 3 "$T/one.err")"
$MPI "$MVL" train --preset "$PRESET" --synthetic --steps "$STEPS" -j1 -o "$T/two" \
	>"$T/two.out" 2>"$T/two.err" || die "2 ranks failed: $(tail -n 3 "$T/two.err")"
$MPI "$MVL" train --preset "$PRESET" --synthetic --steps "$STEPS" -j1 --zero 1 -o "$T/zero" \
	>"$T/zero.out" 2>"$T/zero.err" || die "2 ranks ZeRO-1 failed: $(tail -n 3 "$T/zero.err")"
"$MVL" train --preset "$PRESET" --synthetic --steps 1 --zero 1 -j2 >"$T/zero1.out" 2>"$T/zero1.err" ||
	die "1 rank ZeRO-1 failed: $(tail -n 3 "$T/zero1.err")"

t1=$(field "tokens/s:" "$T/one.out")
t2=$(field "tokens/s:" "$T/two.out")
tz=$(field "tokens/s:" "$T/zero.out")
c2=$(field "communication:" "$T/two.out")
cz=$(field "communication:" "$T/zero.out")
b1=$(field "optimizer state:" "$T/zero1.out")
b2=$(field "optimizer state:" "$T/zero.out")
br=$(field "optimizer state:" "$T/two.out")
dl=$(/usr/bin/python3 - "$T/one/metrics.jsonl" "$T/two/metrics.jsonl" "$T/zero/metrics.jsonl" <<'EOF'
import json, sys
runs = [[json.loads(l)["loss"] for l in open(p) if '"loss"' in l] for p in sys.argv[1:]]
print("%.2g" % max(abs(a - b) / abs(b) for r in runs[1:] for a, b in zip(r, runs[0])))
EOF
)
printf '%-34s %12s %14s\n' "run" "tokens/s" "comm share"
printf '%-34s %12s %14s\n' "1 rank x 2 threads (accum 2)" "$t1" "-"
printf '%-34s %12s %13s%%\n' "2 ranks x 1 thread (allreduce)" "$t2" "$c2"
printf '%-34s %12s %13s%%\n' "2 ranks x 1 thread (ZeRO-1)" "$tz" "$cz"
echo "2 ranks / 1 rank tokens/s: $(awk -v a="$t2" -v b="$t1" 'BEGIN { printf "%.2f", a / b }')"
echo "largest relative loss difference, 2 ranks vs 1 rank: $dl"
echo "AdamW state per rank: $b1 bytes (1 rank, ZeRO-1), $b2 bytes (2 ranks, ZeRO-1), $br bytes (2 ranks, replicated)"
echo "load average at end: $(load)"
