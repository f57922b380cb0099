#!/bin/sh
# bench_train.sh: training throughput of `mvl train --synthetic` against the
# same model in PyTorch (scripts/bench_train_torch.py: batched, float32,
# AdamW, same threads), in the same run, for the tiny and small presets.
# tokens/s is all positions of all sequences of a step over the step's wall
# time, median over the steps after the warm-up; peak memory is the peak RSS
# of each process (mvl: /usr/bin/time -f %M; torch: getrusage in the timing
# subprocess); MFU is the median of what mvl's per-step log reports after the
# first step (model FLOPs x 3 against the sgemm peak mvl measures at start).
# The torch side first checks that its loss equals tests/parity/model.py's.
# Not a test: it prints figures and the goals with PASS/MISS, and exits 0
# unless something broke (a command failed, the torch model disagrees with
# the reference).  Goals: >= 2x torch's tokens/s on both presets, >= 55% MFU
# on small, peak memory below torch's.
#
# Usage: scripts/bench_train.sh [-m MVL] [-p "tiny small"] [-j THREADS]
#                               [-w WARMUP] [-n STEPS] [-t tuned|plain]
#   WARMUP / STEPS: warm-up and measured steps (default 1 and 5 for tiny,
#   1 and 3 for small); mvl runs WARMUP + STEPS steps (its figure is the
#   median after the first).  -t: torch's threading (bench_train_torch.py
#   --threading; plain by default: Debian's PyTorch as installed, the issue's
#   setup; tuned: PyTorch given OpenBLAS's OpenMP build and passive OpenMP
#   waiting, as mvl has them).  MVL: ./mvl, built with make.
# The machine's load average (uptime) is printed beside the figures: other
# jobs on the cores make both sides slower and noisier.
set -u
cd "$(dirname "$0")/.." || exit 1
PY=/usr/bin/python3
PRESETS="tiny small"
J=2
W=""
S=""
TH=plain
while [ $# -gt 0 ]; do
	case "$1" in
	-m) MVL=$2; shift 2 ;;
	-p) PRESETS=$2; shift 2 ;;
	-j) J=$2; shift 2 ;;
	-w) W=$2; shift 2 ;;
	-n) S=$2; shift 2 ;;
	-t) TH=$2; shift 2 ;;
	*) echo "bench_train.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done
if [ -z "${MVL:-}" ]; then
	make -s mvl >&2 || exit 1
	MVL=./mvl
fi
die() { echo "bench_train.sh: $*" >&2; exit 1; }
load() { awk '{ printf "%s %s %s", $1, $2, $3 }' /proc/loadavg; }
T=$(mktemp -d "${TMPDIR:-/tmp}/mvl-bench-train.XXXXXX")
trap 'rm -rf "$T"' EXIT

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "== mvl train bench: $(nproc) cores, ${cpu:-unknown CPU}; -j$J; torch threading $TH; load average at start $(load) =="

fail=0
for p in $PRESETS; do
	case "$p" in
	tiny) w=${W:-1}; s=${S:-5} ;;
	small) w=${W:-1}; s=${S:-3} ;;
	*) die "unknown preset $p (tiny, small)" ;;
	esac
	l0=$(load)
	# no -q: the per-step lines carry the MFU
	if ! /usr/bin/time -f %M -o "$T/mvl.$p.rss" "$MVL" train --preset "$p" --synthetic --steps $((w + s)) -j"$J" \
		>"$T/mvl.$p.out" 2>"$T/mvl.$p.err"; then
		tail -n 5 "$T/mvl.$p.err" >&2
		die "mvl train --preset $p failed"
	fi
	mtps=$(awk '/^tokens\/s:/ { print $2 }' "$T/mvl.$p.out")
	mrss=$(tail -n 1 "$T/mvl.$p.rss")
	peak=$(sed -n 's/.*sgemm peak \([0-9.]*\) GFLOP.*/\1/p' "$T/mvl.$p.err" | head -n 1)
	# median of the reported mfu after the first step (as mvl's tokens/s)
	mfu=$(awk '/^step / { for (i = 1; i < NF; i++) if ($i == "mfu") { v = $(i + 1); sub(/%/, "", v); print v } }' \
		"$T/mvl.$p.err" | awk 'NR == 1 { first = $1; next } { print } END { if (NR == 1) print first }' |
		sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int(NR / 2) + 1] }')
	if [ -z "$mtps" ] || [ -z "$mrss" ]; then die "no tokens/s or peak RSS from mvl ($p)"; fi
	l1=$(load)
	$PY scripts/bench_train_torch.py --preset "$p" -j "$J" --warmup "$w" --steps "$s" --threading "$TH" \
		>"$T/torch.$p.out" 2>"$T/torch.$p.err"
	rc=$?
	grep -v '^#' "$T/torch.$p.out" | sed 's/^/  /'
	if [ $rc != 0 ]; then
		tail -n 5 "$T/torch.$p.err" >&2
		echo "train $p: torch side failed (status $rc)"
		fail=1
		continue
	fi
	l2=$(load)
	ttps=$(awk -v p="$p" '$1 == "torch" && $2 == p && $3 == "threads" { print $5 }' "$T/torch.$p.out")
	trss=$(awk -v p="$p" '$1 == "torch" && $2 == p && $3 == "threads" { print $(NF - 1) }' "$T/torch.$p.out")
	if [ -z "$ttps" ] || [ -z "$trss" ]; then die "no tokens/s or peak RSS from the torch side ($p)"; fi
	awk -v p="$p" -v mt="$mtps" -v mr="$mrss" -v mfu="${mfu:-0}" -v tt="$ttps" -v tr="$trss" 'BEGIN {
		mg = mr / 1048576; r = mt / tt; mem = mg / tr
		line = sprintf("train %s: mvl %.0f tokens/s (MFU %.0f%%, peak %.2f GiB) vs torch %.0f tokens/s (peak %.2f GiB): %.2fx (goal 2x: %s); peak memory %.2fx torch'"'"'s (goal < 1x: %s)",
			p, mt, mfu, mg, tt, tr, r, (r >= 2 ? "PASS" : "MISS"), mem, (mem < 1 ? "PASS" : "MISS"))
		if (p == "small")
			line = line sprintf("; MFU %.1f%% (goal >= 55%%: %s)", mfu, (mfu >= 55 ? "PASS" : "MISS"))
		print line
	}'
	echo "  (load average 1/5/15 min: before mvl $l0, before torch $l1, after torch $l2; mvl sgemm peak ${peak:-?} GFLOP/s; $w warm-up + $s measured steps each)"
done
exit $fail
