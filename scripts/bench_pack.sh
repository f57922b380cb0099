#!/usr/bin/env bash
# bench_pack.sh: `mvl pack` throughput (samples/s, tokens/s: whole command,
# wall clock, tar in, pack file out) and padding, for the best-fit-decreasing
# window packer and for --greedy side by side, at -j1 and -j2, best of
# BENCH_REPS runs each.  Not a test: it prints figures and the padding goal
# (< 2% for the window packer) with PASS/MISS, and exits 0 unless something
# broke (a command failed, or a synthetic sample was rejected).
#
# Inputs:
#   (1) synthetic, made deterministically (python3 + PIL) in build/packbench/
#       and kept between runs: caption-like samples (a 56..84 px JPEG and
#       15..90 words: ~30-120 tokens) mixed with LLaVA-style SFT
#       conversations (two rounds, ~300-1500 tokens, half with a 112..224 px
#       image), 1 SFT sample in BENCH_PACK_SFT_EVERY; at seq_len 2048 and 4096.
#   (2) the demo data (demo-run/filtered or demo-run/shards, from `make demo`)
#       when present, at 2048; skipped otherwise.
# Tokenizer: cl100k_base, exported from the npm tiktoken package
# (scripts/tok/export_ranks.js) into build/packbench/ranks.
# Pack files go to tmpfs when it has room (else build/packbench) and are
# removed after each run.
#
# Environment: BENCH_PACK_SAMPLES (20000), BENCH_PACK_SFT_EVERY (10),
# BENCH_PACK_SEQ ("2048 4096"), BENCH_REPS (3), MVL (./mvl, built with make).
set -u

cd "$(dirname "$0")/.."
REPS=${BENCH_REPS:-3}
N=${BENCH_PACK_SAMPLES:-20000}
EVERY=${BENCH_PACK_SFT_EVERY:-10}
SEQS=${BENCH_PACK_SEQ:-2048 4096}
PY=/usr/bin/python3
W=build/packbench
mkdir -p "$W/ranks"

if [ -z "${MVL:-}" ]; then
	make -s mvl >&2 || exit 1
	MVL=./mvl
fi
die() { echo "bench_pack.sh: $*" >&2; exit 1; }
now_ns() { date +%s%N; }

TOK=$W/ranks/cl100k_base.tiktoken
if [ ! -s "$TOK" ]; then
	node scripts/tok/export_ranks.js "$W/ranks" --encodings cl100k_base --quiet ||
		die "cannot export the cl100k_base ranks (node and tests/node: scripts/deps.sh)"
fi

# where the pack files go (four at a time): tmpfs when it has 4 GB free
if [ -d /dev/shm ] && [ "$(df -Pk /dev/shm | awk 'NR == 2 { print $4 }')" -gt 4194304 ]; then
	OUTD=$(mktemp -d /dev/shm/mvl-bench-pack.XXXXXX)
	WHERE=tmpfs
else
	OUTD=$(mktemp -d "$W/out.XXXXXX")
	WHERE="disk ($OUTD)"
fi
trap 'rm -rf "$OUTD"' EXIT

# ---------------------------------------------------------------- input
MIX=$W/mix-n$N-e$EVERY-v1.tar
if [ ! -s "$MIX" ]; then
	echo "generating $MIX ..."
	$PY - "$MIX" "$N" "$EVERY" <<'PYEOF' || die "generating the synthetic input failed"
import io, json, os, random, sys, tarfile
from PIL import Image
import numpy as np

out, n, every = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1)
WORDS = ("the a of and to in is on with for at by from red green blue yellow cat dog house tree "
         "river mountain city street car light dark small large old new morning evening people child "
         "woman man boat sky cloud water field road window door table chair book picture photo view "
         "close wide top bottom left right front back bright quiet busy market bridge garden flower "
         "stone wall roof train station beach sand wave forest path hill snow winter summer").split()

def words(k):
    t = " ".join(rng.choice(WORDS) for _ in range(k))
    return t[:1].upper() + t[1:] + "."

def jpeg(w, h, seed):
    y, x = np.mgrid[0:h, 0:w]
    r = np.random.RandomState(seed)
    a = np.stack([(x * 255 // max(w - 1, 1) + seed * 40) % 256, (y * 255 // max(h - 1, 1) + seed * 70) % 256,
                  ((x + y) * 3 + seed * 90) % 256], axis=-1) + r.randint(0, 24, (h, w, 3))
    b = io.BytesIO()
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "RGB").save(b, "JPEG", quality=90)
    return b.getvalue()

# a pool of distinct images: decoding each is real work, generating each is not needed
small = [jpeg(rng.choice((56, 70, 84)), rng.choice((56, 70, 84)), s) for s in range(64)]
large = [jpeg(rng.choice((112, 168, 224)), rng.choice((112, 168, 224)), 100 + s) for s in range(32)]

def add(tf, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = 1700000000
    tf.addfile(ti, io.BytesIO(data))

with tarfile.open(out + ".tmp", "w", format=tarfile.USTAR_FORMAT) as tf:
    for i in range(n):
        key = "%08d" % i
        if rng.randrange(every) == 0:
            total = rng.randint(280, 1450)
            a = rng.randint(20, total - 200)
            img = rng.random() < 0.5
            turns = [{"from": "human", "value": ("<image>\n" if img else "") + words(20)},
                     {"from": "gpt", "value": words(a)},
                     {"from": "human", "value": words(10)},
                     {"from": "gpt", "value": words(total - a - 30)}]
            if img:
                add(tf, key + ".jpg", rng.choice(large))
            add(tf, key + ".json", json.dumps({"conversations": turns}).encode())
        else:
            add(tf, key + ".jpg", rng.choice(small))
            add(tf, key + ".txt", words(rng.randint(15, 90)).encode())
os.rename(out + ".tmp", out)
PYEOF
fi
MB=$(awk -v b="$(stat -c %s "$MIX")" 'BEGIN { printf "%.0f", b / 1e6 }')
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
echo "== mvl pack bench: $(nproc) cores, ${cpu:-unknown CPU}; best of $REPS runs; pack files on $WHERE =="
echo "synthetic: $MIX ($N samples, 1 in $EVERY SFT, $MB MB)"

# stat KEY FILE: a number from the --stats JSON (one key per line)
stat_of() { awk -v k="\"$1\"" -F: '$1 ~ k { v = $2; gsub(/[ ,]/, "", v); print v; exit }' "$2"; }

# run_best NAME INPUT SEQ J EXTRA...: REPS runs of mvl pack; prints the best
# seconds; leaves $OUTD/NAME.pack and its --stats JSON $OUTD/NAME.json
run_best() {
	local name=$1 in=$2 seq=$3 j=$4 best="" t0 t1 d i
	shift 4
	for ((i = 0; i < REPS; i++)); do
		rm -f "$OUTD/$name.pack"
		t0=$(now_ns)
		"$MVL" pack -q --tokenizer "$TOK" --encoding cl100k_base --seq-len "$seq" -j "$j" \
			--stats "$OUTD/$name.json" --rejects "$OUTD/$name.rejects" -o "$OUTD/$name.pack" "$@" "$in" \
			2>"$OUTD/$name.log" || { cat "$OUTD/$name.log" >&2; return 1; }
		t1=$(now_ns)
		d=$((t1 - t0))
		if [ -z "$best" ] || [ "$d" -lt "$best" ]; then best=$d; fi
	done
	awk -v d="$best" 'BEGIN { printf "%.4f\n", d / 1e9 }'
}

# bench LABEL INPUT SEQ STRICT: both packers, -j1 and -j2, and the report
# lines; STRICT=1: no sample may be rejected
bench() {
	local label=$1 in=$2 seq=$3 strict=$4 j p s pw pg name rej same show=""
	[ "$label" = mix ] || show="$label "
	for j in 1 2; do
		for p in window greedy; do
			name="$label-$seq-$p-j$j"
			if [ "$p" = greedy ]; then
				s=$(run_best "$name" "$in" "$seq" "$j" --greedy) || die "mvl pack failed ($name)"
			else
				s=$(run_best "$name" "$in" "$seq" "$j") || die "mvl pack failed ($name)"
			fi
			echo "$s" >"$OUTD/$name.s"
			rej=$(stat_of rejected "$OUTD/$name.json")
			if [ "$strict" = 1 ] && [ "${rej:-1}" != 0 ]; then
				head -n 5 "$OUTD/$name.rejects" >&2
				die "$name: ${rej:-?} samples rejected"
			fi
		done
		pw=$(stat_of padding "$OUTD/$label-$seq-window-j$j.json")
		pg=$(stat_of padding "$OUTD/$label-$seq-greedy-j$j.json")
		for p in window greedy; do
			name="$label-$seq-$p-j$j"
			awk -v p="$p" -v l="$show" -v q="$seq" -v j="$j" -v s="$(cat "$OUTD/$name.s")" \
				-v n="$(stat_of samples "$OUTD/$name.json")" -v t="$(stat_of tokens "$OUTD/$name.json")" \
				-v pw="$pw" -v pg="$pg" 'BEGIN {
				# the goal is < 2%, or the least padding any packer could
				# reach when the data cannot fill whole sequences
				m = int((t + q - 1) / q); least = 1 - t / (m * q)
				verdict = pw < 0.02 ? "PASS" : (pw <= least + 1e-9 ? "PASS (the least possible)" : "MISS")
				if (p == "window")
					printf "pack bfd-window %sseq %d -j%d: %.0f samples/s, %.0f tokens/s, padding %.2f%% (greedy: %.2f%%) (goal < 2%%: %s)\n",
						l, q, j, n / s, t / s, 100 * pw, 100 * pg, verdict
				else
					printf "pack greedy     %sseq %d -j%d: %.0f samples/s, %.0f tokens/s, padding %.2f%%\n",
						l, q, j, n / s, t / s, 100 * pg
			}'
		done
	done
	name="$label-$seq-window-j1"
	same=yes
	for p in window greedy; do
		cmp -s "$OUTD/$label-$seq-$p-j1.pack" "$OUTD/$label-$seq-$p-j2.pack" || same=NO
		rm -f "$OUTD/$label-$seq-$p-j1.pack" "$OUTD/$label-$seq-$p-j2.pack"
	done
	awk -v a="$(cat "$OUTD/$name.s")" -v b="$(cat "$OUTD/$label-$seq-window-j2.s")" -v l="$show" -v q="$seq" \
		-v n="$(stat_of samples "$OUTD/$name.json")" -v t="$(stat_of tokens "$OUTD/$name.json")" \
		-v sq="$(stat_of sequences "$OUTD/$name.json")" -v sps="$(stat_of samples_per_sequence "$OUTD/$name.json")" \
		-v same="$same" 'BEGIN {
		m = int((t + q - 1) / q)
		printf "  (%sseq %d: %.0f samples, %.0f tokens -> %.0f sequences, %.1f samples each; least padding possible %.2f%% (%d sequences); bfd-window -j2/-j1 %.2fx; -j1 and -j2 packs identical: %s)\n",
			l, q, n, t, sq, sps, 100 * (1 - t / (m * q)), m, a / b, same
	}'
}

for seq in $SEQS; do
	bench mix "$MIX" "$seq" 1
done

# ---------------------------------------------------------------- demo data
DEMO=""
for d in demo-run/filtered demo-run/shards; do
	if ls "$d"/*.tar* >/dev/null 2>&1; then
		DEMO=$d
		break
	fi
done
if [ -z "$DEMO" ]; then
	echo "demo data: not present (make demo makes it), skipped"
else
	echo "demo data: $DEMO ($(ls "$DEMO"/*.tar* | wc -l) shards)"
	bench demo "$DEMO" 2048 0
	echo "  (demo: $(stat_of rejected "$OUTD/demo-2048-window-j1.json") samples rejected by mvl pack)"
fi
exit 0
