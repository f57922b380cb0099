"""End-to-end tests of filter chains and dedup split across the ranks of an
mpirun job (issue 9, pipeline/filter_split.c, filters/dedup_dist.h).

The promise: `mpirun -np N mvl filter|dedup ... -o OUT/%06d.tar INPUTS`
gives what one process gives: the same kept samples in the same order
(shards read in number order), byte for byte; the same rejects TSV (keys,
sources, reasons and details, in input order); the same --stats JSON and
summary line; the same exit status.  Each check compares a plain run with
-np 2 and -np 3 runs over shards where duplicates cross the ranks' blocks
in both directions of the input list, and where a chain of near duplicates
(A~B, B~C, A not ~C) spans three ranks: one process keeps A and C (B,
dropped for A, is not in the index when C comes), which a rule decided by
one key's owner alone would not reproduce."""
import sys
sys.dont_write_bytecode = True

import glob
import io
import json
import os
import random
import shutil
import subprocess
import time

from mvltest import (
    Fail, MVL, Suite, eq, expect, read_rejects, summary, tar_bytes, wds_samples, write,
    TIMEOUT,
)

S = Suite("mpi_filter")
check = S.check

MPIRUN = shutil.which("mpirun")
MPI = [MPIRUN, "--allow-run-as-root", "--oversubscribe", "--mca", "btl", "self,vader",
       "--mca", "btl_vader_single_copy_mechanism", "none"]


def photo(seed, w=160, h=120):
    import numpy as np
    from PIL import Image, ImageDraw
    rs = np.random.RandomState(seed)
    grid = rs.randint(0, 256, (5, 6, 3)).astype(np.uint8)
    im = Image.fromarray(grid, "RGB").resize((w, h), Image.BICUBIC)
    d = ImageDraw.Draw(im)
    for _ in range(3):
        x0, y0 = int(rs.randint(0, w - 40)), int(rs.randint(0, h - 40))
        x1, y1 = x0 + int(rs.randint(20, w // 2)), y0 + int(rs.randint(20, h // 2))
        col = tuple(int(c) for c in rs.randint(0, 256, 3))
        (d.ellipse if rs.randint(2) else d.rectangle)((x0, y0, x1, y1), fill=col)
    return im


def jpg(im, q=90):
    b = io.BytesIO()
    im.save(b, "JPEG", quality=q)
    return b.getvalue()


WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
         "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee "
         "zulu amber basil cedar dune ember fern grove heath iris jade kelp lotus moss nectar "
         "olive pine quartz reed sage thyme umber vale willow yarrow zinnia").split()


def chain_captions():
    """A~B and B~C by word-set Jaccard (about 0.78), A and C apart (0.6)."""
    a = WORDS[:40]
    b = a[5:] + WORDS[40:45]
    c = a[10:] + WORDS[40:50]
    return [" ".join(x) for x in (a, b, c)]


def dataset(d, nshards=6, per=10, seed=1):
    """nshards shards; exact and near duplicates of images and captions
    whose first copy sits in one shard and later copies in shards before
    and after the ranks' block boundaries; a caption chain across shards
    0, 3, 5; a few samples clean rejects.  Returns the shard paths."""
    rng = random.Random(seed)
    shards = [[] for _ in range(nshards)]
    uid = [0]

    def add(s, img, cap):
        uid[0] += 1
        key = "s%02d-%04d" % (s, uid[0])
        ms = [("json", json.dumps({"n": uid[0]}).encode())]
        if img is not None:
            ms.append(("jpg", img))
        if cap is not None:
            ms.append(("txt", cap.encode()))
        shards[s].append((key, ms))

    vocab = ["v%03dx" % i for i in range(400)]

    def words(n=10):
        return " ".join(rng.sample(vocab, n))

    base = 1000 * seed
    for s in range(nshards):
        for i in range(per):
            add(s, jpg(photo(base + 100 * s + i)), words())
    # exact image copies, forwards across every pair of shards
    for src in range(nshards):
        for dst in range(nshards):
            if src != dst and rng.random() < 0.5:
                add(dst, jpg(photo(base + 100 * src + rng.randrange(per))), words())
    # near copies (re-encoded) and exact captions across shards
    for k in range(12):
        src, dst = rng.randrange(nshards), rng.randrange(nshards)
        seedimg = base + 100 * src + rng.randrange(per)
        add(dst, jpg(photo(seedimg), q=rng.choice((55, 70, 80))), words())
        add(rng.randrange(nshards), jpg(photo(base + 5000 + k)), "a shared caption %d" % (k % 3))
    # the chain: A in shard 0, B in shard 3, C in shard 5 (ranks 0, 1, 2 of 3)
    a, b, c = chain_captions()
    add(0, jpg(photo(base + 7001)), a)
    add(3, jpg(photo(base + 7002)), b)
    add(5, jpg(photo(base + 7003)), c)
    # an exact-key chain: X has caption P; Y has P and image I (dropped as
    # exact caption of X); Z has image I (kept: Y never entered the index)
    img = jpg(photo(base + 7100))
    add(1, jpg(photo(base + 7101)), "the p caption of the key chain")
    add(2, img, "the p caption of the key chain")
    add(4, img, "a different caption for z")
    # clean's rejects: no caption, empty caption
    add(2, jpg(photo(base + 7200)), None)
    add(4, jpg(photo(base + 7201)), "   ")
    paths = []
    for s in range(nshards):
        sh = shards[s]
        rng.shuffle(sh)
        p = os.path.join(d, "in-%02d.tar" % s)
        write(p, tar_bytes([("%s.%s" % (k, e), data) for k, ms in sh for e, data in ms]))
        paths.append(p)
    return paths


def run(np_, args, cwd):
    args = [str(a) for a in args]
    cmd = ([MVL] if np_ == 0 else MPI + ["-np", str(np_), MVL]) + args
    t0 = time.time()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, cwd=cwd, timeout=TIMEOUT)
    err = p.stderr.decode("utf-8", "replace")
    for marker in ("Segmentation fault", "AddressSanitizer", "runtime error:", "MPI_ABORT"):
        expect(marker not in err, "%s: %s in stderr: %s" % (" ".join(cmd), marker, err[-400:]))
    return p.returncode, err, time.time() - t0


def outcome(np_, cmd, inputs, d, extra=()):
    """Runs one configuration into folder d; everything a run promises."""
    out = os.path.join(d, "out")
    rj = os.path.join(d, "rejects.tsv")
    st = os.path.join(d, "stats.json")
    rc, err, dt = run(np_, list(cmd) + ["-o", out + "/%06d.tar", "--rejects", rj, "--stats", st]
                      + list(extra) + inputs, d)
    shards = sorted(glob.glob(out + "/*.tar"))
    names = [os.path.basename(p) for p in shards]
    eq(names, ["%06d.tar" % i for i in range(len(names))], "np %d: contiguous shard names" % np_)
    samples = []
    for p in shards:
        with open(p, "rb") as f:
            samples += wds_samples(f.read())
    left = [f for f in os.listdir(d) + os.listdir(out) if "tmp" in f or "rank" in f]
    expect(not left, "np %d: leftovers %s" % (np_, left))
    with open(st) as f:
        stats_text = f.read()
    stats = json.loads(stats_text)
    sm = summary(type("R", (), {"errtext": err})())
    return {"rc": rc, "samples": samples, "rejects": read_rejects(rj), "stats": stats, "stats_text": stats_text,
            "summary": sm["line"], "time": dt}


def same(base, got, what):
    eq(got["rc"], base["rc"], what + ": exit status")
    eq([k for k, _ in got["samples"]], [k for k, _ in base["samples"]], what + ": kept keys in order")
    expect(got["samples"] == base["samples"], what + ": kept sample bytes differ")
    eq(got["rejects"], base["rejects"], what + ": rejects TSV (key, source, reason, detail)")
    eq(got["stats"], base["stats"], what + ": stats JSON")
    eq(got["stats_text"], base["stats_text"], what + ": stats JSON text (key order too)")
    eq(got["summary"], base["summary"], what + ": summary line")


D = S.dir("data")
INPUTS = dataset(D)
CHAIN = "clean,dedup:exact_caption=1:near_caption=1:ngram=1:jaccard=0.68"


def compare(name, cmd, inputs, nps=(2, 3), expect_base=None):
    base = outcome(0, cmd, inputs, S.dir(name + "-np0"))
    if expect_base:
        expect_base(base)
    for n in nps:
        same(base, outcome(n, cmd, inputs, S.dir("%s-np%d" % (name, n))), "%s -np %d" % (name, n))


def chain_semantics(base):
    """The fixture does what it is for: cross-shard drops of every kind, the
    caption chain keeps A and C, the key chain keeps Z."""
    reasons = {r[2] for r in base["rejects"]}
    for want in ("dedup.exact_image", "dedup.near_image", "dedup.exact_caption",
                 "dedup.near_caption", "clean.no_text", "clean.empty"):
        expect(want in reasons, "no %s drop in the fixture: %s" % (want, sorted(reasons)))
    # drops whose kept sample sits in an earlier shard of another block
    src = {}
    for k, ms in base["samples"]:
        src[k] = k[:3]
    cross = [r for r in base["rejects"] if r[2].startswith("dedup.") and r[0][:3] != "s00"]
    expect(len(cross) >= 10, "too few dedup drops outside shard 0: %d" % len(cross))
    a, b, c = chain_captions()
    kept_caps = [dict(ms).get("txt", b"").decode() for _, ms in base["samples"]]
    expect(a in kept_caps and c in kept_caps and b not in kept_caps,
           "caption chain: want A and C kept, B dropped")
    expect("a different caption for z" in kept_caps, "key chain: Z must be kept")
    expect(base["rc"] == 0, "plain run failed")


@check("mpi_filter_chain_same_as_one_process")
def _():
    compare("chain", ["filter", CHAIN], INPUTS, expect_base=chain_semantics)


@check("mpi_dedup_command_defaults_same_as_one_process")
def _():
    compare("dedup", ["dedup"], INPUTS)


@check("mpi_dedup_command_options_same_as_one_process")
def _():
    compare("dedupopts", ["dedup", "--exact-caption", "1", "--exact-pair", "1", "--near-caption", "1",
                          "--hash", "dhash", "--max-hamming", "9"], INPUTS)


@check("mpi_filter_reversed_input_order_same_as_one_process")
def _():
    # the input list, not the file names, is the order: duplicates now run
    # from the later-named shards (rank 0) to the earlier ones
    compare("reversed", ["filter", CHAIN], INPUTS[::-1])


@check("mpi_dedup_against_eval_same_as_one_process")
def _():
    # decontamination is decided on each rank against its own copy of the
    # eval set; the shard used as eval set is rank 1's
    def some_contaminated(base):
        n = sum(1 for r in base["rejects"] if r[2] == "dedup.contaminated")
        expect(n >= 5, "only %d contaminated drops" % n)
    compare("against", ["dedup", "--against", INPUTS[4]], INPUTS, nps=(2,), expect_base=some_contaminated)


@check("mpi_filter_without_dedup_same_as_one_process")
def _():
    compare("nodedup", ["filter", "clean,capfilter:min_words=3"], INPUTS, nps=(2,))


@check("mpi_filter_more_ranks_than_shards")
def _():
    compare("fewshards", ["filter", CHAIN], INPUTS[:2], nps=(3,))


@check("mpi_filter_corrupt_shard_counted_like_one_process")
def _():
    d = S.dir("corrupt")
    paths = []
    for p in INPUTS:
        q = os.path.join(d, os.path.basename(p))
        shutil.copy(p, q)
        paths.append(q)
    # shard 4 (rank 1 of 2, rank 2 of 3) breaks in the middle
    with open(paths[4], "rb") as f:
        data = f.read()
    write(paths[4], data[:len(data) // 2] + b"\x7fgarbage" * 200)
    base = outcome(0, ["filter", CHAIN], paths, S.dir("corrupt-np0"))
    expect(base["rc"] == 1, "a broken shard must fail the plain run (exit 1), got %d" % base["rc"])
    expect(base["samples"], "the plain run kept nothing")
    for n in (2, 3):
        same(base, outcome(n, ["filter", CHAIN], paths, S.dir("corrupt-np%d" % n)), "corrupt -np %d" % n)


@check("mpi_filter_refuses_stdout_and_build_index")
def _():
    d = S.dir("refuse")
    rc, err, _ = run(2, ["filter", CHAIN] + INPUTS, d)
    expect(rc == 2 and "-o PATTERN" in err, "stdout output under mpirun: rc %d, %s" % (rc, err[-300:]))
    rc, err, _ = run(2, ["dedup", "--build-index", os.path.join(d, "x.idx"), "-o", d + "/%d.tar"]
                     + INPUTS, d)
    expect(rc == 2 and "without mpirun" in err, "build-index under mpirun: rc %d, %s" % (rc, err[-300:]))


S.finish()
