#!/bin/sh
# valgrind.sh: a small end to end under valgrind's memcheck (`make
# valgrind`): `mvl filter clean,dedup` on a few samples (HTML and URL
# captions, a duplicate image, a corrupt one), `mvl ls` of its output,
# `mvl train --preset micro --synthetic --steps 2` with a checkpoint, and
# ingest, tok train, pack and score (that checkpoint) on the same samples.  Any
# invalid read or write, use of uninitialised memory, bad free, or leak
# (definite or possible) fails the check.  ASan (make asan) sees most of
# these faster; memcheck also sees uninitialised reads, and checks the
# binary as built, without instrumentation.
# Usage: tests/valgrind.sh [MVL]   (default build/mvl); prints ok / not ok
# lines and ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
MVL=${1:-$(pwd)/build/mvl}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# tests/valgrind.supp: what the runtime libraries keep on purpose (thread
# pools alive at exit), nothing of mvl's own
VG="valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,possible
    --track-origins=yes --suppressions=tests/valgrind.supp"
pass=0 fail=0

check() {
	name=$1
	shift
	"$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
	rc=$?
	if [ "$rc" -eq 0 ]; then
		echo "ok $name"
		pass=$((pass + 1))
	else
		if [ "$rc" -eq 99 ]; then why="valgrind found errors"; else why="exit $rc"; fi
		echo "not ok $name: $why"
		head -n 60 "$tmp/$name.err" | sed 's/^/    /'
		fail=$((fail + 1))
	fi
}

/usr/bin/python3 - "$tmp/in.tar" <<'EOF'
import io, sys, tarfile
from PIL import Image

def jpeg(w, h, seed):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 7 + seed * 40) % 256, (y * 5 + seed * 70) % 256, (x + y + seed * 90) % 256)
                for y in range(h) for x in range(w)])
    b = io.BytesIO()
    im.save(b, "JPEG", quality=90)
    return b.getvalue()

members = [
    ("a.jpg", jpeg(96, 64, 1)), ("a.txt", b"a red circle above a <b>blue</b> square"),
    ("b.jpg", jpeg(80, 80, 2)), ("b.txt", b"two green stars http://example.com/x.jpg"),
    ("c.jpg", jpeg(96, 64, 1)), ("c.txt", b"the same image again"),
    ("d.jpg", jpeg(64, 96, 3)[:300]), ("d.txt", b"a truncated image"),
    ("e.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40), ("e.txt", b"a broken png"),
    ("f.jpg", jpeg(120, 90, 4)), ("f.txt", "caf\u00e9 au lait \u00e0 gauche".encode()),
]
with tarfile.open(sys.argv[1], "w", format=tarfile.PAX_FORMAT) as t:
    for name, data in members:
        ti = tarfile.TarInfo(name)
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
EOF

check valgrind_filter_clean_dedup $VG "$MVL" filter clean,imgfilter:min_side=32,dedup -q --rejects "$tmp/rejects.tsv" \
	-o "$tmp/out/%06d.tar" "$tmp/in.tar"
check valgrind_ls_filtered $VG "$MVL" ls "$tmp/out/000000.tar"
# one thread and a given peak: the sgemm peak measurement (68 GFLOP) would
# take minutes under valgrind; OMP_WAIT_POLICY set: no re-exec of mvl,
# which valgrind would not follow
check valgrind_train_micro env OMP_WAIT_POLICY=PASSIVE $VG "$MVL" train --preset micro --synthetic --steps 2 \
	-j1 -q --peak-gflops 100 -o "$tmp/train"
# image decoding and resizing, tokenizer training and packing, and a
# checkpoint read back to score pairs
check valgrind_ingest $VG "$MVL" ingest -j1 -q --resize smart --rejects "$tmp/ingest.tsv" -o "$tmp/ing/%06d.tar" \
	"$tmp/in.tar"
check valgrind_tok_train $VG "$MVL" tok train --stream --vocab 300 --encoding cl100k_base \
	--special '<|endoftext|>,<|vision_start|>,<|image_pad|>,<|vision_end|>,<|im_start|>,<|im_end|>' \
	-o "$tmp/tok" "$tmp/ing/000000.tar"
check valgrind_pack $VG "$MVL" pack -j1 -q --tokenizer "$tmp/tok.tiktoken" --seq-len 256 --max-pixels 12544 \
	-o "$tmp/data.pack" "$tmp/ing/000000.tar"
check valgrind_score env OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1 $VG "$MVL" score -q --ckpt "$tmp/train" \
	--tokenizer "$tmp/tok.tiktoken" -o "$tmp/scored/%06d.tar" "$tmp/ing/000000.tar"
# the scored samples carry their scores
check score_wrote_scores grep -q pairscore "$tmp/scored/000000.tar"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
