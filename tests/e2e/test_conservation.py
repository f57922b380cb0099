"""test_conservation.py: nothing is lost silently (issue 10, "Hardening").

For every command that drops samples (filter with each filter, dedup, cat
and shard with their reader rejections, ingest, mix, pack) over a dirty
input -- scripts/synth.py --scale 0.05 (duplicates, boilerplate, foreign
text, tiny, blank and corrupt images, empty captions) plus the hostile
samples of tests/nasty/make_nasty.py plus archive members the reader must
refuse (traversal, links, devices, bad names) -- the audit checks:

  in = kept + the sum of the rejections by reason, on the summary line and
       in the --stats JSON where the command writes one;
  in = the number of samples in the input, counted here independently;
  the rejects TSV lists exactly the keys missing from the output: set
       equality, each key once, none both kept and rejected."""
import sys
sys.dont_write_bytecode = True

import collections
import glob
import io
import json
import os
import subprocess
import tarfile

from mvltest import (Fail, ROOT, Suite, eq, expect, expect_rc, jpeg, mvl, read, read_rejects,
                     summary, tar_bytes, wds_samples, write)

S = Suite("conservation")
check = S.check
T = 60

DATA = S.dir("data")
TOK = os.path.join(S.dir("tok"), "t")
INPUTS = []          # the dirty input files, in order
INKEYS = []          # every sample key of INPUTS, in stream order


def input_keys(path):
    """The sample keys of a tar as mvl's reader groups them: consecutive
    members sharing a key (WebDataset's rule), directories skipped, a
    leading "./" ignored; every other member (links, devices, names without
    an extension) is part of a group that the reader must account for."""
    keys = []
    with tarfile.open(path, "r:*") as tf:
        for m in tf:
            if m.isdir():
                continue
            name = m.name
            while name.startswith("./"):
                name = name[2:]
            d, slash, base = name.rpartition("/")
            i = base.find(".")
            key = d + slash + base[:i] if i > 0 else name
            if not keys or keys[-1] != key:
                keys.append(key)
    return keys


def reader_nasty():
    """Members the reader must reject, each its own sample, unique keys."""
    cap = b"four plain caption words"
    return tar_bytes([
        {"name": "../evil.txt", "data": cap},
        {"name": "rd_ok/../../up.txt", "data": cap},
        {"name": "rd_sym.jpg", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"},
        {"name": "rd_hard.txt", "type": tarfile.LNKTYPE, "linkname": "rd_sym.jpg"},
        {"name": "rd_chr.txt", "type": tarfile.CHRTYPE},
        {"name": "rd_fifo.txt", "type": tarfile.FIFOTYPE},
        {"name": "rd_noext", "data": cap},
        {"name": "rd_dup.txt", "data": cap},
        {"name": "rd_dup.txt", "data": cap},
        {"name": "rd_good.jpg", "data": jpeg(230, 220, 7)},
        {"name": "rd_good.txt", "data": b"a good sample among the bad members"},
    ])


@check("dirty_input_made")
def _():
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "synth.py"), "--out", DATA,
                        "--scale", "0.05", "--seed", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    expect(p.returncode == 0, "synth.py failed: %s" % p.stderr.decode()[-300:])
    nasty = S.dir("nasty")
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests", "nasty", "make_nasty.py"), nasty],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    expect(p.returncode == 0, "make_nasty.py failed: %s" % p.stderr.decode()[-300:])
    INPUTS.extend(sorted(glob.glob(os.path.join(DATA, "raw", "captions", "*.tar"))))
    INPUTS.extend(sorted(glob.glob(os.path.join(DATA, "raw", "conversations", "*.tar")))[:1])
    INPUTS.append(os.path.join(nasty, "samples.tar"))
    INPUTS.append(write(os.path.join(S.dir("reader"), "reader.tar"), reader_nasty()))
    for f in INPUTS:
        INKEYS.extend(input_keys(f))
    eq(len(set(INKEYS)), len(INKEYS), "fixture: input keys are unique")
    expect(len(INKEYS) > 150, "only %d input samples" % len(INKEYS))


@check("tokenizer_trained")
def _():
    text = write(os.path.join(os.path.dirname(TOK), "corpus.txt"),
                 b"two small red circles above a large blue square on the left\n" * 40)
    expect_rc(mvl("tok", "train", "--vocab", "300", "-o", TOK, text), 0)


# ---------------------------------------------------------------------------


def audit(name, r, rows, out_keys, stats=None):
    """The conservation rules for one run."""
    s = summary(r)
    eq(s["in"], len(INKEYS), "%s: summary 'in' vs the samples of the input" % name)
    eq(s["in"], s["kept"] + sum(s["reasons"].values()), "%s: in = kept + rejections by reason" % name)
    keys = [row[0] for row in rows]
    dup = [k for k, n in collections.Counter(keys).items() if n > 1]
    expect(not dup, "%s: keys rejected more than once: %s" % (name, dup[:5]))
    eq(len(rows), s["rejected"], "%s: rejects TSV rows vs summary" % name)
    by_reason = collections.Counter(row[2] for row in rows)
    eq(dict(by_reason), s["reasons"], "%s: rejects TSV reasons vs summary" % name)
    dup = [k for k, n in collections.Counter(out_keys).items() if n > 1]
    expect(not dup, "%s: keys written more than once: %s" % (name, dup[:5]))
    eq(len(out_keys), s["kept"], "%s: samples written vs summary 'kept'" % name)
    both = set(out_keys) & set(keys)
    expect(not both, "%s: keys both kept and rejected: %s" % (name, sorted(both)[:5]))
    missing = set(INKEYS) - set(out_keys)
    expect(missing == set(keys), "%s: missing from the output but not rejected: %s; rejected but not missing: %s" % (
        name, sorted(missing - set(keys))[:5], sorted(set(keys) - missing)[:5]))
    if stats is not None:
        eq((stats["in"], stats["kept"], stats["dropped"]), (s["in"], s["kept"], s["rejected"]),
           "%s: stats JSON in/kept/dropped vs summary" % name)
        # every rejection of the run by reason: the reader's and each filter's
        got = collections.Counter(stats.get("reasons", {}))
        eq(dict(got), s["reasons"], "%s: stats JSON reasons vs summary" % name)
        eq(stats["in"], stats["kept"] + sum(got.values()), "%s: stats in = kept + reasons" % name)
        for f in stats["filters"]:
            eq(f["in"], f["kept"] + sum(f["reasons"].values()),
               "%s: filter %s in = kept + reasons" % (name, f["name"]))
        eq(stats["filters"][-1]["kept"], s["kept"], "%s: the last filter's kept" % name)
    return s


def run_stream(name, argv, stats=False):
    d = S.dir(name)
    rj = os.path.join(d, "rejects.tsv")
    extra = ["--rejects", rj]
    sp = os.path.join(d, "stats.json")
    if stats:
        extra += ["--stats", sp]
    r = mvl(*(argv + extra + INPUTS), timeout=T, cwd=d)
    expect_rc(r, 0)
    st = json.loads(read(sp)) if stats else None
    return r, read_rejects(rj), st, d


FILTERS = [
    ("clean", ["filter", "clean"]),
    ("capfilter", ["filter", "capfilter:min_words=3:boilerplate=1"]),
    ("imgfilter", ["filter", "imgfilter:min_side=56:min_std=3"]),
    ("dedup", ["filter", "dedup:near_caption=1:exact_caption=1"]),
    ("pairscore", ["filter", "pairscore"]),
    ("chain", ["filter", "clean,capfilter:min_words=3,imgfilter:min_side=56:min_std=3,dedup", "-j", "2"]),
    ("chain_1thread", ["filter", "clean,capfilter:min_words=3,imgfilter:min_side=56:min_std=3,dedup", "-j", "1"]),
    ("cmd_dedup", ["dedup"]),
    ("cmd_clean", ["clean"]),
    ("cmd_capfilter", ["capfilter"]),
    ("cmd_imgfilter", ["imgfilter"]),
]


def filter_audit(name, argv):
    r, rows, st, _ = run_stream(name, argv, stats=True)
    out = [k for k, _ in wds_samples(r.out)]
    audit(name, r, rows, out, st)
    expect(len(out) > 0 or name == "pairscore", "%s kept nothing" % name)
    expect(len(rows) > 0, "%s rejected nothing" % name)


for _n, _a in FILTERS:
    S.run("filter_" + _n, lambda n=_n, a=_a: filter_audit(n, a))


@check("dedup_two_pass_rejects")
def _():
    # pass 1 clusters everything and writes the keys to drop; pass 2 drops
    # exactly those: the rejects of pass 2 are the index's keys
    d = S.dir("dedup2")
    idx = os.path.join(d, "idx.tsv")
    r1 = mvl("dedup", "--build-index", idx, "--keep", "largest_image", *INPUTS, timeout=T, cwd=d)
    expect_rc(r1, 0)
    lines = read(idx).decode("utf-8").split("\n")
    expect(lines[0].startswith("# mvl dedup index"), "index header %r" % lines[0])
    listed = [l.split("\t")[0] for l in lines[1:] if l]
    expect(listed, "the index lists no duplicate")
    r, rows, st, _ = run_stream("dedup2", ["dedup", "--index", idx], stats=False)
    out = [k for k, _ in wds_samples(r.out)]
    audit("dedup --index", r, rows, out)
    eq(sorted(row[0] for row in rows if row[2].startswith("dedup.")), sorted(listed),
       "dedup --index: dropped keys vs the index")


@check("cat_rejects")
def _():
    r, rows, _, _ = run_stream("cat", ["cat"])
    out = [k for k, _ in wds_samples(r.out)]
    audit("cat", r, rows, out)
    eq({row[2] for row in rows}, {"unsafe_path", "not_regular_file", "bad_name", "duplicate_member"},
       "cat: the reader's reasons")


@check("shard_rejects")
def _():
    d = S.dir("shard-out")
    r, rows, _, _ = run_stream("shard", ["shard", "-o", os.path.join(d, "s-%04d.tar"), "--maxcount", "40"])
    out = []
    for f in sorted(os.listdir(d)):
        out += [k for k, _ in wds_samples(read(os.path.join(d, f)))]
    audit("shard", r, rows, out)


@check("ingest_rejects")
def _():
    r, rows, _, _ = run_stream("ingest", ["ingest", "-j", "2"])
    out = [k for k, _ in wds_samples(r.out)]
    audit("ingest", r, rows, out)
    expect(len(rows) > 20, "ingest rejected only %d samples" % len(rows))


@check("pack_rejects")
def _():
    d = S.dir("pack-out")
    pk = os.path.join(d, "out.pack")
    r, rows, _, _ = run_stream("pack", ["pack", "--tokenizer", TOK + ".tiktoken", "--seq-len", "1024", "-o", pk,
                                        "--no-truncate"])
    ls = mvl("ls", pk, timeout=T)
    expect_rc(ls, 0)
    out = []
    for line in ls.out.decode().splitlines():
        cols = line.split("\t")
        out += [k.rstrip("~") for k in cols[4].split(",") if k]
    audit("pack", r, rows, out)
    expect(any(row[2] == "too_long" for row in rows), "no sample was too long for the pack")


@check("mix_rejects")
def _():
    d = S.dir("mix")
    shards = "\n".join("      - %s" % f for f in INPUTS)
    rec = write(os.path.join(d, "r.yaml"), ("""seed: 9
sources:
  dirty:
    kind: captions
    shards:
%s
tokenizer:
  file: %s
stages:
  - name: s
    train: all
    seq_len: 1024
    tokens: 1000000
    mix: {dirty: 1}
""" % (shards, TOK + ".tiktoken")).encode())
    rj = os.path.join(d, "rejects.tsv")
    man = os.path.join(d, "manifest.json")
    # a budget that never ends, and more samples than one epoch emits: the
    # first epoch is read whole (the shuffle buffer never spans epochs)
    r = mvl("mix", rec, "--stage", "s", "--rejects", rj, "--manifest", man, "--budget", "1T",
            "--limit", str(len(INKEYS)), "-q", timeout=T, cwd=d)
    expect_rc(r, 0)
    m = json.loads(read(man))
    src = [x for x in m["sources"] if x["name"] == "dirty"][0]
    expect(src.get("samples_per_epoch", 0) > 0, "the budget did not cover an epoch: %r" % src)
    rows = read_rejects(rj)
    keys = [row[0] for row in rows]
    dup = [k for k, n in collections.Counter(keys).items() if n > 1]
    expect(not dup, "mix: keys rejected more than once: %s" % dup[:5])
    first = collections.Counter()
    for k, _ in wds_samples(r.out):
        s, ep, key = k.split("/", 2)
        if ep == "1":
            first[key] += 1
    dup = [k for k, n in first.items() if n > 1]
    expect(not dup, "mix: keys mixed twice in epoch 1: %s" % dup[:5])
    both = set(first) & set(keys)
    expect(not both, "mix: keys both mixed and rejected: %s" % sorted(both)[:5])
    missing = set(INKEYS) - set(first)
    expect(missing == set(keys), "mix: missing from epoch 1 but not rejected: %s; rejected but mixed: %s" % (
        sorted(missing - set(keys))[:5], sorted(set(keys) - missing)[:5]))
    s = summary(r)
    eq(s["rejected"], len(rows), "mix: summary rejected vs rejects TSV")


S.finish()
