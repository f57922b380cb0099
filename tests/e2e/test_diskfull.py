#!/usr/bin/python3
"""test_diskfull.py: writes that fail midway (a full disk, a file too large).

Each command runs under RLIMIT_FSIZE with SIGXFSZ ignored, so a write()
past the limit returns EFBIG: shards from ingest and filter, a stream to a
stdout that is a file, a pack, training checkpoints and metrics, tokenizer
files.  Each check first makes sure the limit is below the size the output
reaches without it (so the write does fail midway), then expects: exit
status 1, a message naming the file and the reason ("File too large"), and
no final-named file with partial content (wholefiles.py; temporaries are
removed or keep their temporary name).  Where a 1 MB tmpfs can be mounted
(root), the same for ENOSPC ("No space left on device"); elsewhere that
check reports itself skipped.
"""
import os
import resource
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mvltest import (MVL, Result, Suite, _sane, eq, expect, expect_rc, jpeg, mvl,  # noqa: E402
                     tar_bytes, write)
import wholefiles  # noqa: E402

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

S = Suite("diskfull")
check = S.check

SPECIALS = "<|endoftext|>,<|vision_start|>,<|image_pad|>,<|vision_end|>,<|im_start|>,<|im_end|>"
WORDS = "red green blue circle square star small large above below left right top bottom centre".split()


def limited(args, fsize, stdout=None, timeout=120):
    """mvl ARGS with every file it writes limited to fsize bytes: write()
    past it fails with EFBIG (SIGXFSZ ignored, as a full disk fails a
    write instead of killing the writer)."""
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    args = [str(a) for a in args]
    t0 = time.time()
    p = subprocess.run([MVL] + args, stdin=subprocess.DEVNULL, stdout=stdout or subprocess.PIPE,
                       stderr=subprocess.PIPE, preexec_fn=pre, timeout=timeout)
    return _sane(Result(args, p.returncode, p.stdout or b"", p.stderr, time.time() - t0))


def expect_failed_write(r, names, reason="File too large"):
    """Exit 1 and a message naming one of names and the reason."""
    expect_rc(r, 1)
    err = r.errtext
    lines = [l for l in err.splitlines() if reason in l]
    expect(lines, "no message with %r: %s" % (reason, err[-400:]))
    expect(any(n in l for l in lines for n in names),
           "the message %r does not name %s" % (lines[0][:300], " or ".join(names)))


def expect_no_partial(root, what):
    bad = wholefiles.problems(root)
    expect(not bad, "%s: final-named files with partial content: %s" % (what, bad[:4]))


def shard_fixture(n=60):
    """n caption samples with JPEGs of noise (which does not compress),
    each image larger than the one before (so are shards in order)."""
    import numpy as np
    from PIL import Image
    import io
    rng = np.random.default_rng(5)
    members = []
    for i in range(n):
        side = 120 + 2 * i
        a = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        b = io.BytesIO()
        Image.fromarray(a, "RGB").save(b, "JPEG", quality=85)
        cap = " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(6 + i % 5))
        members += [("s%04d.jpg" % i, b.getvalue()), ("s%04d.txt" % i, cap.encode())]
    return tar_bytes(members)


D = S.dir("fixture")
IN = write(os.path.join(D, "in.tar"), shard_fixture())
IN_SIZE = os.path.getsize(IN)
LIMIT = IN_SIZE // 3  # far below any one-shard output of IN


def one_shard_size(cmd_args):
    """Without a limit: the size of the single shard cmd_args writes."""
    d = S.dir("nolimit")
    r = mvl(*(cmd_args + ["-o", os.path.join(d, "%06d.tar"), IN]))
    expect_rc(r, 0)
    files = os.listdir(d)
    eq(len(files), 1, "shards written without a limit")
    return os.path.getsize(os.path.join(d, files[0]))


def shard_check(cmd_args):
    expect(one_shard_size(cmd_args) > 2 * LIMIT, "the output is not larger than the limit")
    d = S.dir("limited")
    r = limited(cmd_args + ["-o", os.path.join(d, "%06d.tar"), IN], LIMIT)
    expect_failed_write(r, ["000000.tar"])
    expect_no_partial(d, cmd_args[0])
    final = [f for f in os.listdir(d) if not wholefiles.temporary(f)]
    eq(final, [], "final-named shards after the failed write")


@check("efbig_ingest_shard_fails_named_and_leaves_no_whole_looking_shard")
def _():
    shard_check(["ingest", "-q"])


@check("efbig_filter_shard_fails_named_and_leaves_no_whole_looking_shard")
def _():
    shard_check(["filter", "clean,dedup", "-q"])


@check("efbig_later_shard_fails_and_the_complete_ones_stay_whole")
def _():
    # shards of 10 samples, each larger than the one before; a limit
    # between the second's size and the third's: shards 0 and 1 complete
    # (byte for byte those of the unlimited run), the third fails midway,
    # and nothing after it is written
    d0 = S.dir("nolimit-many")
    expect_rc(mvl("cat", "--maxcount", "10", "-o", os.path.join(d0, "%06d.tar"), IN), 0)
    names = sorted(os.listdir(d0))
    sizes = [os.path.getsize(os.path.join(d0, f)) for f in names]
    expect(len(sizes) >= 4 and sizes == sorted(sizes) and sizes[1] < sizes[2], "shard sizes %s" % sizes)
    d = S.dir("limited-many")
    r = limited(["cat", "--maxcount", "10", "-o", os.path.join(d, "%06d.tar"), IN], (sizes[1] + sizes[2]) // 2)
    expect_failed_write(r, [names[2]])
    expect_no_partial(d, "cat --maxcount")
    final = sorted(f for f in os.listdir(d) if not wholefiles.temporary(f))
    eq(final, names[:2], "complete shards left by the run that failed in the third")
    for f in final:
        expect(open(os.path.join(d, f), "rb").read() == open(os.path.join(d0, f), "rb").read(),
               "%s differs from the unlimited run's" % f)


@check("efbig_stdout_file_fails_with_a_message")
def _():
    d = S.dir("stdout")
    out = os.path.join(d, "all.tar")
    with open(out, "wb") as f:
        r = limited(["cat", IN], LIMIT, stdout=f)
    expect_failed_write(r, ["standard output"])


@check("efbig_pack_fails_named_and_leaves_no_pack")
def _():
    d = S.dir("pack")
    r = mvl("tok", "train", "--stream", "--vocab", "300", "--encoding", "cl100k_base", "--special", SPECIALS,
            "-o", os.path.join(d, "tok"), IN)
    expect_rc(r, 0)
    args = ["pack", "-q", "--tokenizer", os.path.join(d, "tok.tiktoken"), "--seq-len", "512", "--max-pixels", "50176"]
    full = os.path.join(d, "full.pack")
    expect_rc(mvl(*(args + ["-o", full, IN])), 0)
    size = os.path.getsize(full)
    out = os.path.join(d, "out", "data.pack")
    os.makedirs(os.path.dirname(out))
    r = limited(args + ["-o", out, IN], size // 2)
    expect_failed_write(r, ["data.pack"])
    expect(not os.path.exists(out), "data.pack exists after the failed write")
    expect_no_partial(os.path.dirname(out), "pack")


def train(out, steps=2):
    return ["train", "--preset", "micro", "--synthetic", "-q", "-j2", "--steps", steps, "--peak-gflops", "100",
            "-o", out]


@check("efbig_train_checkpoint_fails_named_and_leaves_no_checkpoint")
def _():
    d = S.dir("train")
    full = os.path.join(d, "full")
    expect_rc(mvl(*train(full), timeout=120), 0)
    msize = os.path.getsize(os.path.join(full, "step-00000002", "model.safetensors"))
    out = os.path.join(d, "limited")
    r = limited(train(out), msize // 2)
    expect_failed_write(r, ["model.safetensors"])
    left = os.listdir(out)
    expect(not [n for n in left if wholefiles.STEP_RE.match(n)], "final-named checkpoint after the failure: %s" % left)
    expect("latest" not in left, "'latest' written after a failed checkpoint: %s" % left)
    expect_no_partial(out, "train")


@check("efbig_train_metrics_fails_named")
def _():
    # metrics.jsonl grows by a line a step: a limit below two lines fails
    # at the second step's, and the run must say so rather than go on
    d = S.dir("train-metrics")
    r = limited(train(os.path.join(d, "out"), steps=4), 150)
    expect_failed_write(r, ["metrics.jsonl"])


@check("efbig_tok_train_fails_named_and_leaves_no_partial_tokenizer")
def _():
    d = S.dir("tok")
    args = ["tok", "train", "--stream", "--vocab", "300", "--encoding", "cl100k_base", "--special", SPECIALS]
    expect_rc(mvl(*(args + ["-o", os.path.join(d, "full"), IN])), 0)
    size = os.path.getsize(os.path.join(d, "full.tiktoken"))
    out = os.path.join(d, "out")
    os.makedirs(out)
    r = limited(args + ["-o", os.path.join(out, "tok"), IN], size // 2)
    expect_failed_write(r, ["tok.tiktoken"])
    expect(not os.path.exists(os.path.join(out, "tok.tiktoken")), "tok.tiktoken exists after the failure")
    expect_no_partial(out, "tok train")


@check("efbig_dedup_index_fails_named_and_leaves_no_index")
def _():
    # the index, the clusters and the stats are each written whole or not
    # at all; a limit below the index's size fails it
    d = S.dir("dedup")
    args = ["dedup", "-q", "--exact-caption", "1", "--near-caption", "1"]
    full = os.path.join(d, "full.idx")
    expect_rc(mvl(*(args + ["--build-index", full, IN])), 0)
    size = os.path.getsize(full)
    expect(size > 256, "index of %d bytes" % size)
    out = S.dir("dedup-out")
    r = limited(args + ["--build-index", os.path.join(out, "dedup.idx"), "--clusters",
                        os.path.join(out, "clusters.jsonl"), IN], size // 2)
    expect_failed_write(r, ["dedup.idx"])
    expect(not os.path.exists(os.path.join(out, "dedup.idx")), "dedup.idx exists after the failed write")
    expect_no_partial(out, "dedup --build-index")


@check("efbig_average_fails_named_and_leaves_no_model")
def _():
    d = S.dir("average")
    run = os.path.join(d, "run")
    expect_rc(mvl("train", "--preset", "micro", "--synthetic", "-q", "-j2", "--steps", 4, "--save-every", 2,
                  "--peak-gflops", "100", "-o", run, timeout=120), 0)
    ckpts = [os.path.join(run, "step-%08d" % s) for s in (2, 4)]
    full = os.path.join(d, "full.safetensors")
    expect_rc(mvl("average", "-o", full, *ckpts), 0)
    out = S.dir("average-out")
    r = limited(["average", "-o", os.path.join(out, "avg.safetensors"), "--report", os.path.join(out, "avg.json")] +
                ckpts, os.path.getsize(full) // 2)
    expect_failed_write(r, ["avg.safetensors"])
    eq([f for f in os.listdir(out) if not wholefiles.temporary(f)], [], "files left by the failed average")
    expect_no_partial(out, "average")


ENOSPC = "enospc_tmpfs_cat_fails_named_and_leaves_no_whole_looking_shard"
TMPFS = S.dir("tmpfs")
try:
    MOUNT = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", TMPFS], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=30)
    MOUNTED, WHY = MOUNT.returncode == 0, MOUNT.stdout.decode("utf-8", "replace").strip()
except OSError as e:
    MOUNTED, WHY = False, str(e)
if not MOUNTED:
    S.npass += 1
    print("ok %s # skipped: cannot mount a tmpfs: %s" % (ENOSPC, " ".join(WHY.split())[:160]), flush=True)
else:
    @check(ENOSPC)
    def _():
        try:
            # the fixture's noise JPEGs do not compress: one shard passes 1 MB
            expect(IN_SIZE > (3 << 20) // 2, "fixture of %d bytes: too small to fill 1 MB" % IN_SIZE)
            r = mvl("cat", "-q", "-o", os.path.join(TMPFS, "%06d.tar"), IN)
            expect_failed_write(r, ["000000.tar"], "No space left on device")
            expect_no_partial(TMPFS, "cat on a full tmpfs")
            final = [f for f in os.listdir(TMPFS) if not wholefiles.temporary(f)]
            eq(final, [], "final-named shards on the full tmpfs")
        finally:
            subprocess.run(["umount", TMPFS])

S.finish()
