"""test_nasty.py: every mvl command that reads shards or files, over the
hostile corpus tests/nasty/make_nasty.py writes (issue 10, "Hardening").

For each input and each command: no crash (no signal, no sanitizer report),
no hang (a time bound per run), the documented exit status (0: the run
completed, rejections included; 1: an input was unreadable or broke; 2:
bad usage), a message on stderr that names the file and says why, and, for
inputs that stay readable, every sample accounted for: the summary line's
in = kept + rejected, the rejects TSV lists each rejected key once with its
source and a reason, and the good samples around the hostile ones are
kept."""
import sys
sys.dont_write_bytecode = True

import json
import glob
import os
import subprocess

from mvltest import (Fail, ROOT, Suite, eq, expect, expect_rc, jpeg, mvl, read,
                     samples_to_members, summary, tar_bytes, wds_samples, write)

S = Suite("nasty")
check = S.check
T = 20  # seconds a run may take over one hostile input
CORPUS = S.dir("corpus")
TOK = os.path.join(S.dir("tok"), "t")


def make_corpus():
    p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "tests", "nasty", "make_nasty.py"), CORPUS],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if p.returncode != 0:
        raise Fail("make_nasty.py failed: %s" % p.stderr.decode()[-400:])
    with open(os.path.join(CORPUS, "cases.json")) as f:
        return json.load(f)


CASES = {}


@check("corpus_made")
def _():
    CASES.update(make_corpus())
    expect(len(CASES["tar"]) >= 30, "only %d tar cases" % len(CASES["tar"]))
    expect(len(CASES["samples"]) >= 50, "only %d hostile samples" % len(CASES["samples"]))


@check("tokenizer_trained")
def _():
    text = write(os.path.join(os.path.dirname(TOK), "corpus.txt"),
                 b"a photo of a small red cat sitting on a wooden table\n" * 50 +
                 b"a sunny beach with palm trees and an old locomotive crossing a bridge\n" * 20)
    r = mvl("tok", "train", "--vocab", "300", "-o", TOK, text, timeout=60)
    expect_rc(r, 0)
    expect(os.path.exists(TOK + ".tiktoken"), "no rank file")


# ---------------------------------------------------------------------------
# the commands that read sample streams

def stream_commands(d):
    """(name, argv before the inputs, writes a tar stream to stdout)."""
    return [
        ("cat", ["cat"], True),
        ("ls", ["ls"], False),
        ("shard", ["shard", "-o", os.path.join(d, "shard-%06d.tar"), "--maxcount", "3"], False),
        ("ingest", ["ingest", "-j", "2"], True),
        ("clean", ["clean"], True),
        ("capfilter", ["capfilter"], True),
        ("imgfilter", ["imgfilter", "--min-std", "1"], True),
        ("dedup", ["dedup"], True),
        ("filter_clean", ["filter", "clean"], True),
        ("filter_capfilter", ["filter", "capfilter:min_words=2"], True),
        ("filter_imgfilter", ["filter", "imgfilter:min_side=100:min_std=1"], True),
        ("filter_dedup", ["filter", "dedup:near_caption=1:exact_caption=1"], True),
        ("filter_pairscore", ["filter", "pairscore"], True),
        ("filter_chain", ["filter", "clean,capfilter,imgfilter,dedup", "-j", "2"], True),
        ("tok_count", ["tok", "count", "--tiktoken", TOK + ".tiktoken"], False),
        ("tok_encode_stream", ["tok", "encode", "--stream", "--tiktoken", TOK + ".tiktoken"], False),
        ("pack", ["pack", "--tokenizer", TOK + ".tiktoken", "--seq-len", "512", "-o", os.path.join(d, "p.pack")],
         False),
    ]


# reader-level commands: nothing but the reader rejects samples
READER_ONLY = {"cat", "ls", "shard"}


def read_rejects(path):
    """The rejects TSV as (key, source, reason, detail) rows; keys are bytes
    from member names, not always UTF-8 (surrogate escapes, as tarfile
    decodes names)."""
    text = read(path).decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    eq(lines[0], "key\tsource\treason\tdetail", "rejects TSV header")
    rows = []
    for l in lines[1:-1]:
        cols = l.split("\t")
        expect(len(cols) == 4, "rejects TSV row without 4 columns: %r" % l)
        unesc = [c.replace("\\t", "\t").replace("\\n", "\n").replace("\\\\", "\\") for c in cols]
        rows.append(tuple(unesc))
    return rows


def run_cmd(name, argv, path, d):
    rj = os.path.join(d, name + ".rejects.tsv")
    r = mvl(*(argv + ["--rejects", rj, path]), timeout=T, cwd=d)
    return r, rj


def shard_keys(d):
    keys = []
    for f in sorted(os.listdir(d)):
        if f.startswith("shard-") and f.endswith(".tar"):
            keys += [k for k, _ in wds_samples(read(os.path.join(d, f)))]
    return keys


def names_file(r, path):
    """stderr has a line naming the input and saying why."""
    lines = [l for l in r.errtext.splitlines() if path in l or os.path.basename(path) in l]
    expect(lines, "stderr does not name %r: %r" % (os.path.basename(path), r.errtext[-300:]))
    reasons = ("truncated", "corrupt", "not a tar", "bad ", "malformed", "zstd", "gzip", "metadata",
               "read error", "checksum", "size", "ends", "cannot")
    expect(any(any(w in l for w in reasons) for l in lines), "no reason given: %r" % lines)


def accounted(r, name, path, rows, out_keys, expect_in=None):
    """Summary in = kept + rejected; rejects TSV rows name the source and a
    reason, each key once; the output keys and the rejected keys are apart."""
    s = None
    if any(l.startswith("mvl ") and " in, " in l for l in r.errtext.splitlines()):
        s = summary(r)
    keys = [row[0] for row in rows]
    eq(len(set(keys)), len(keys), "%s: rejected keys listed once" % name)
    for k, src, reason, detail in rows:
        expect(src == path, "%s: reject %r names source %r, not %r" % (name, k, src, path))
        expect(reason and " " not in reason, "%s: reject %r has reason %r" % (name, k, reason))
    if s is not None:
        eq(s["rejected"], len(rows), "%s: summary rejected vs rejects TSV rows" % name)
        if out_keys is not None:
            eq(s["kept"], len(out_keys), "%s: summary kept vs samples written" % name)
            both = set(out_keys) & set(keys)
            expect(not both, "%s: keys both written and rejected: %s" % (name, sorted(both)[:3]))
        if expect_in is not None:
            eq(s["in"], expect_in, "%s: samples in" % name)
    return s


# ---------------------------------------------------------------------------
# tar archives: one hostile feature each


GOOD_KEYS = ("aa_good_first", "zz_good_last")


def tar_files(readable):
    out = []
    for group in ("tar", "compressed"):
        for fname, info in sorted(CASES[group].items()):
            if info["readable"] == readable:
                out.append((os.path.join(CORPUS, "tar", fname), info))
    return out


def has_good(path):
    """Whether a case file holds the good samples (empty ones do not)."""
    f = os.path.basename(path)
    return (CASES["tar"].get(f) or CASES["compressed"][f])["good"]


def tar_check(fname):
    """`mvl cat` over one case file on its own: the reader's verdicts."""
    info = CASES["tar"].get(fname) or CASES["compressed"][fname]
    path = os.path.join(CORPUS, "tar", fname)
    d = S.dir("cat")
    r, rj = run_cmd("cat", ["cat"], path, d)
    if not info["readable"]:
        expect(r.rc == 1, "cat %s: exit %d, expected 1 (a broken input); stderr %r" % (fname, r.rc, r.errtext[-300:]))
        names_file(r, path)
        return
    expect_rc(r, 0)
    rows = read_rejects(rj)
    out = [k for k, _ in wds_samples(r.out)]
    accounted(r, "cat", path, rows, out)
    eq({row[0] for row in rows}, set(info.get("bad_keys", [])), "cat %s: rejected keys" % fname)
    if has_good(path):
        for k in GOOD_KEYS:
            expect(k in out, "cat %s: good sample %r lost" % (fname, k))


def readable_check(name):
    """One command over every readable case file at once: exit 0, each
    file's hostile samples rejected (the rejects' source column says whose),
    everything accounted for, the good samples around them kept."""
    d = S.dir(name)
    argv, writes = [(a, w) for n, a, w in stream_commands(d) if n == name][0]
    files = tar_files(True)
    rj = os.path.join(d, "rejects.tsv")
    r = mvl(*(argv + ["--rejects", rj] + [f for f, _ in files]), timeout=3 * T, cwd=d)
    expect(r.rc == 0, "%s over the readable cases: exit %d; stderr %r" % (name, r.rc, r.errtext[-300:]))
    rows = read_rejects(rj)
    out = [k for k, _ in wds_samples(r.out)] if writes else shard_keys(d) if name == "shard" else None
    s = summary(r) if name not in ("tok_count", "tok_encode_stream") or rows else None
    if s:
        eq(s["rejected"], len(rows), "%s: summary rejected vs rejects TSV rows" % name)
        if out is not None:
            eq(s["kept"], len(out), "%s: summary kept vs samples written" % name)
    for path, info in files:
        mine = {row[0] for row in rows if row[1] == path}
        bad = set(info.get("bad_keys", []))
        if name in READER_ONLY:
            eq(mine, bad, "%s over %s: rejected keys" % (name, os.path.basename(path)))
        else:
            expect(bad <= mine, "%s over %s: %s not rejected" % (name, os.path.basename(path), sorted(bad - mine)))
    expect(all(row[1] in [f for f, _ in files] for row in rows), "%s: a reject without its source" % name)
    if out is not None and name not in ("filter_pairscore", "dedup", "filter_dedup", "filter_chain"):
        n = sum(has_good(f) for f, _ in files)
        for k in GOOD_KEYS:
            eq(out.count(k), n, "%s: good samples %r written" % (name, k))


def broken_check(name):
    """One command over every broken case file, then a good one: exit 1,
    each broken file named with a reason, the good file's sample written."""
    d = S.dir(name)
    argv, writes = [(a, w) for n, a, w in stream_commands(d) if n == name][0]
    files = [f for f, _ in tar_files(False)]
    good = write(os.path.join(d, "good.tar"), tar_bytes(samples_to_members(
        [("g1", [("jpg", GOOD_JPEG), ("txt", b"a red kite flying over a green hill")])])))
    r = mvl(*(argv + files + [good]), timeout=3 * T, cwd=d)
    expect(r.rc == 1, "%s over the broken cases: exit %d; stderr %r" % (name, r.rc, r.errtext[-300:]))
    for f in files:
        names_file(r, f)
    if writes and name not in ("filter_pairscore",):
        expect("g1" in [k for k, _ in wds_samples(r.out)], "%s: the good input after the broken ones is lost" % name)
    # --allow-damaged: the same messages and output, exit 0
    if name == "shard":
        for f in glob.glob(os.path.join(d, "shard-*.tar")):
            os.unlink(f)
    a = mvl(*(argv + ["--allow-damaged"] + files + [good]), timeout=3 * T, cwd=d)
    expect(a.rc == 0, "%s --allow-damaged over the broken cases: exit %d; stderr %r" % (name, a.rc, a.errtext[-300:]))
    for f in files:
        names_file(a, f)
    if writes:
        eq(a.out, r.out, "%s: the stream with and without --allow-damaged" % name)
    if name == "pack":
        expect(os.path.exists(os.path.join(d, "p.pack")), "pack --allow-damaged wrote no pack")


def _tar_checks():
    for group in ("tar", "compressed"):
        for fname in sorted(CASES[group]):
            S.run("cat_" + fname.replace(".", "_"), lambda f=fname: tar_check(f))
    for name, _, _ in stream_commands("."):
        S.run("readable_cases_" + name, lambda n=name: readable_check(n))
        S.run("broken_cases_" + name, lambda n=name: broken_check(n))


if CASES:
    GOOD_JPEG = jpeg(230, 215, seed=77)
    _tar_checks()


@check("broken_input_names_the_sample")
def _():
    # the reader says where it broke: the sample being read (rejected as
    # truncated_shard: its members may go on past the break)
    for fname, where in (("truncated_mid_member.tar", "in sample 'aa_good_first'"),
                         ("size_10gb_short.tar", "in sample 'big'"),
                         ("size_garbage.tar", "in sample 'aa_good_first'"),
                         ("bad_checksum.tar", "bad checksum"),
                         ("garbage.tar", "not a tar archive")):
        path = os.path.join(CORPUS, "tar", fname)
        d = S.dir("names")
        rj = os.path.join(d, "r.tsv")
        r = mvl("cat", "--rejects", rj, path, timeout=T)
        expect_rc(r, 1)
        expect(where in r.errtext and path in r.errtext, "%s: %r not in %r" % (fname, where, r.errtext[-300:]))
        rows = read_rejects(rj)
        expect(all(row[2] == "truncated_shard" and row[1] == path for row in rows),
               "%s: rejects %r" % (fname, rows))
        if "in sample" in where:
            eq([row[0] for row in rows], [where.split("'")[1]], "%s: the sample cut by the break" % fname)


@check("huge_size_fields_cost_no_memory")
def _():
    # a header's size is a claim: nothing that size is touched before the
    # bytes are there
    for fname in ("size_900mb_short.tar", "size_10gb_short.tar", "pax_size_huge.tar"):
        r = mvl("cat", os.path.join(CORPUS, "tar", fname), timeout=T, rusage=True)
        expect_rc(r, 1)
        expect(r.maxrss_kb < 200 * 1024, "%s: peak RSS %d MB" % (fname, r.maxrss_kb // 1024))


@check("broken_input_keeps_what_came_before")
def _():
    # a break mid-stream loses only the sample it cut: the ones read whole
    # before it are written, and the rest of the input is lost with a message
    for fname in ("truncated.tar.zst", "truncated.tar.gz", "corrupt_frame.tar.zst", "corrupt.tar.gz"):
        path = os.path.join(CORPUS, "tar", fname)
        d = S.dir("before")
        rj = os.path.join(d, "r.tsv")
        r = mvl("cat", "--rejects", rj, path, timeout=T)
        expect_rc(r, 1)
        keys = [k for k, _ in wds_samples(r.out)]
        rows = read_rejects(rj)
        expect(keys[:2] == ["aa_good_first", "k000"], "%s: first samples lost: %r" % (fname, keys[:3]))
        expect(len(rows) <= 1, "%s: rejects %r" % (fname, rows))
        want = ["aa_good_first"] + ["k%03d" % i for i in range(600)]
        got = keys + [row[0] for row in rows]
        eq(got, want[:len(got)], "%s: kept then cut keys are a prefix of the input" % fname)


@check("broken_input_then_good_input_is_read")
def _():
    # one broken input does not stop the next
    good = write(os.path.join(S.dir("good"), "good.tar"), tar_bytes(samples_to_members(
        [("g1", [("jpg", jpeg(220, 210)), ("txt", b"a good sample after a bad one")])])))
    for fname in ("garbage.tar", "truncated.tar.zst", "size_10gb_short.tar", "pax_huge_record.tar"):
        for cmd in (["cat"], ["filter", "clean,capfilter"], ["ingest"]):
            r = mvl(*(cmd + [os.path.join(CORPUS, "tar", fname), good]), timeout=T)
            expect(os.path.join(CORPUS, "tar", fname) in r.errtext, "%s: the broken file is not named" % fname)
            expect_rc(r, 1)
            keys = [k for k, _ in wds_samples(r.out)]
            expect("g1" in keys, "%s %s, good.tar: g1 not written: %r" % (" ".join(cmd), fname, r.errtext[-200:]))


@check("listings_stay_one_line_per_sample")
def _():
    # keys holding tabs, newlines or backslashes are escaped as the rejects
    # TSV escapes them (\t \n \\): a listing keeps one line per sample
    path = os.path.join(CORPUS, "tar", "odd_names.tar")
    r = mvl("cat", path, timeout=T)
    expect_rc(r, 0)
    keys = [k for k, _ in wds_samples(r.out)]
    expect("tab\tname" in keys and "nl\nname" in keys, "odd keys not copied: %r" % keys)
    esc = [k.encode("utf-8", "surrogateescape").replace(b"\\", b"\\\\").replace(b"\t", b"\\t")
           .replace(b"\n", b"\\n") for k in keys]
    for argv, ncol in ((["ls"], 5), (["tok", "count", "--tiktoken", TOK + ".tiktoken"], 2)):
        r = mvl(*(argv + [path]), timeout=T)
        expect_rc(r, 0)
        lines = r.out.split(b"\n")[:-1]
        eq(len(lines), len(keys), "%s: lines vs samples" % argv[0])
        eq([l.split(b"\t")[0] for l in lines], esc, "%s: escaped keys" % argv[0])
        expect(all(len(l.split(b"\t")) == ncol for l in lines), "%s: a line without %d columns" % (argv[0], ncol))


@check("concatenated_archives_read_whole")
def _():
    # `cat a.tar b.tar > c.tar` leaves end-of-archive blocks in the middle:
    # the samples after them are read, not dropped without a word
    for fname in ("concatenated.tar", "concatenated.tar.zst", "concatenated.tar.gz"):
        for argv in (["cat"], ["filter", "clean"], ["ingest"]):
            r = mvl(*(argv + [os.path.join(CORPUS, "tar", fname)]), timeout=T)
            expect_rc(r, 0)
            keys = [k for k, _ in wds_samples(r.out)]
            expect("second_tar_1" in keys and "zz_good_last" in keys,
                   "%s %s: samples after the first end-of-archive lost: %r" % (argv[0], fname, keys[-3:]))
    r = mvl("cat", os.path.join(CORPUS, "tar", "trailing_garbage.tar"), timeout=T)
    expect_rc(r, 1)
    expect("end-of-archive" in r.errtext, "garbage after the end is not named: %r" % r.errtext[-300:])


@check("dedup_two_pass_hostile_keys")
def _():
    # the index names samples by key: keys with tabs, newlines and
    # backslashes, and a key met twice (a shard read twice), must come
    # through --build-index / --index as one-pass dedup keeps them
    d = S.dir("dedup2")
    x, y, z = (jpeg(230, 220, seed=s) for s in (1, 2, 3))
    cap = b"a caption of some words"
    a = write(os.path.join(d, "a.tar"), tar_bytes(samples_to_members(
        [("k1", [("jpg", x), ("txt", cap)]), ("tab\tkey", [("jpg", x), ("txt", cap)]),
         ("nl\nkey", [("jpg", x), ("txt", cap)]), ("back\\slash", [("jpg", x), ("txt", cap)]),
         ("k2", [("jpg", y), ("txt", cap)])])))
    b = write(os.path.join(d, "b.tar"), tar_bytes(samples_to_members(
        [("k3", [("jpg", z), ("txt", cap)]), ("k2", [("jpg", y), ("txt", cap)])])))
    one = mvl("dedup", a, b, timeout=T)
    expect_rc(one, 0)
    want = [k for k, _ in wds_samples(one.out)]
    eq(want, ["k1", "k2", "k3"], "one-pass dedup keeps")
    # pass 1 picks survivors whatever the input order: the smallest key of a
    # cluster (filters/README.md); the escaped keys must be dropped by name
    want = ["back\\slash", "k2", "k3"]
    idx = os.path.join(d, "idx.tsv")
    r = mvl("dedup", "--build-index", idx, a, b, timeout=T)
    expect_rc(r, 0)
    two = mvl("dedup", "--index", idx, a, b, timeout=T)
    expect_rc(two, 0)
    got = [k for k, _ in wds_samples(two.out)]
    # a key that names both a survivor and a duplicate cannot be dropped by
    # key without losing the survivor: both copies stay, and pass 1 says so
    eq(sorted(set(got)), want, "two-pass dedup keeps")
    eq(got, ["back\\slash", "k2", "k3", "k2"], "two-pass dedup keeps (both copies of k2)")
    expect("'k2'" in r.errtext, "pass 1 does not name the ambiguous key: %r" % r.errtext[-300:])


@check("long_names_survive_a_round_trip")
def _():
    for fname in ("gnu_longname.tar", "pax_path.tar", "gnu_longname_huge.tar"):
        r = mvl("cat", os.path.join(CORPUS, "tar", fname), timeout=T)
        expect_rc(r, 0)
        keys = [k for k, _ in wds_samples(r.out)]
        longest = max(keys, key=len)
        expect(len(longest) > 250, "%s: the long key came out as %d chars" % (fname, len(longest)))
        r2 = mvl("cat", input=r.out, timeout=T)
        expect_rc(r2, 0)
        eq([k for k, _ in wds_samples(r2.out)], keys, "%s: keys after a second cat" % fname)


# ---------------------------------------------------------------------------
# samples.tar: readable, hostile samples

SAMPLES = os.path.join(CORPUS, "samples.tar")

# what ingest (which validates every image and caption) must decide
INGEST_KEEPS = ["aa_good_first", "zz_good_last", "img_jpeg_cmyk", "img_jpeg_gray", "img_png_16bit_rgb",
                "img_png_16bit_gray", "img_png_palette", "img_png_gray_alpha", "img_png_named_jpg",
                "img_png_zeros_8000", "cap_bidi_zero_width"]
INGEST_REJECTS = {
    "img_jpeg_claims_65535": None, "img_jpeg_claims_60000": "too_large", "img_jpeg_claims_12000": None,
    "img_jpeg_truncated_scan": None, "img_jpeg_bad_huffman": None, "img_png_claims_65535": "too_large",
    "img_png_claims_12000": None, "img_png_truncated_scan": None, "img_png_bad_crc": None,
    "img_webp_claims_16383": "too_large", "img_webp_truncated": None, "img_zero_bytes": "not_an_image",
    "img_text_named_jpg": "not_an_image", "img_gif_named_png": None,
    "json_deep_100k": "bad_json", "json_deep_object": "bad_json", "json_duplicate_keys": "bad_json",
    "json_invalid_utf8": "bad_json", "json_nul_raw": "bad_json", "json_not_object": "bad_json",
    "json_huge_number": "bad_json", "json_lone_surrogate": "bad_json", "json_conv_deep": "bad_json",
    "json_conv_duplicate_keys": "bad_json",
    "json_empty": "bad_json",
    "cap_overlong_utf8": "invalid_utf8", "cap_encoded_surrogate": "invalid_utf8",
    "cap_invalid_utf8": "invalid_utf8", "cap_truncated_utf8": "invalid_utf8",
    "cap_huge_10mb": "caption_too_long", "cap_one_long_word": "caption_too_long",
    "cap_whitespace": "empty_caption", "cap_empty": "empty_caption",
    "miss_image_only": "missing_caption", "miss_caption_only": "missing_image",
    "miss_json_only": "missing_caption", "miss_unknown_ext_only": "missing_caption",
    "two_images": "multiple_images",
}


def samples_check(name):
    d = S.dir(name)
    cmds = stream_commands(d)
    argv = [a for n, a, _ in cmds if n == name][0]
    writes = [w for n, _, w in cmds if n == name][0]
    r, rj = run_cmd(name, argv, SAMPLES, d)
    expect_rc(r, 0)
    rows = read_rejects(rj)
    out = [k for k, _ in wds_samples(r.out)] if writes else shard_keys(d) if name == "shard" else None
    accounted(r, name, SAMPLES, rows, out, expect_in=len(CASES["samples"]))
    keys = {row[0] for row in rows}
    expect(keys <= set(CASES["samples"]), "%s: rejected keys not in the input: %s" % (
        name, sorted(keys - set(CASES["samples"]))[:3]))
    if out is not None:
        eq(sorted(set(out) | keys), sorted(CASES["samples"]), "%s: kept + rejected keys vs input keys" % name)
        if name != "filter_pairscore":
            for k in ("aa_good_first", "zz_good_last"):
                expect(k in out, "%s: good sample %r lost: %r" % (name, k, [x for x in rows if x[0] == k]))
    return r, rows, out


def _samples_checks():
    for name, _, _ in stream_commands("."):
        S.run("samples_" + name, lambda name=name: samples_check(name))


if CASES:
    _samples_checks()


@check("samples_ingest_verdicts")
def _():
    r, rows, out = samples_check("ingest")
    why = {row[0]: row[2] for row in rows}
    bad = ["%s kept" % k for k in INGEST_REJECTS if k in out]
    bad += ["%s rejected as %s" % (k, why[k]) for k in INGEST_KEEPS if k in why]
    bad += ["%s: %s, expected %s" % (k, why.get(k), w) for k, w in INGEST_REJECTS.items()
            if w and k in why and why[k] != w]
    expect(not bad, "; ".join(bad))
    ms = dict((k, dict(m)) for k, m in wds_samples(r.out))
    expect("png" in ms["img_png_named_jpg"], "a PNG named .jpg keeps the wrong name: %s" % sorted(ms["img_png_named_jpg"]))


@check("samples_clean_rejects_bad_utf8")
def _():
    r, rows, out = samples_check("clean")
    why = {row[0]: row[2] for row in rows}
    for k in ("cap_overlong_utf8", "cap_encoded_surrogate", "cap_invalid_utf8", "cap_truncated_utf8"):
        eq(why.get(k), "clean.invalid_utf8", "clean's verdict on %s" % k)
    for k in ("cap_empty", "cap_whitespace", "cap_only_nul"):
        expect(k not in out, "clean kept %s" % k)
    # clean rewrites conversation turns: a key twice would keep one silently
    eq(why.get("json_conv_duplicate_keys"), "clean.bad_json", "clean's verdict on a turn with a key twice")


@check("samples_kept_output_is_valid_utf8")
def _():
    # whatever clean keeps is valid UTF-8 without NUL bytes
    d = S.dir("clean")
    r = mvl("filter", "clean", SAMPLES, timeout=T, cwd=d)
    expect_rc(r, 0)
    for k, ms in wds_samples(r.out):
        t = dict(ms).get("txt")
        if t is None:
            continue
        try:
            t.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Fail("clean kept %r with invalid UTF-8: %s" % (k, e))
        expect(b"\0" not in t, "clean kept %r with a NUL byte" % k)


def ingest_case(case):
    """mvl ingest over CASES[case], exit 0: (result, keys written, rejects
    rows, {key: reason})."""
    r, rj = run_cmd("ingest", ["ingest"], CASES[case], S.dir("ingest-" + case))
    expect_rc(r, 0)
    rows = read_rejects(rj)
    return r, [k for k, _ in wds_samples(r.out)], rows, {row[0]: row[2] for row in rows}


@check("ingest_hostile_folder")
def _():
    # a FIFO where a caption should be (opening it blocks), a symlink loop,
    # a dangling link, a device: each sample read once, none hangs
    r, out, rows, why = ingest_case("folder")
    eq(sorted(out), ["a", "sub/c", "z"], "samples ingested from the folder")
    for k in ("fifo", "dangling", "dev"):
        expect(k in why, "%s not rejected: %r" % (k, why))
    expect(not any("loop/" in k or "up/" in k for k in out + list(why)), "the symlink loop was followed: %r" % (
        sorted(why)[:5]))


@check("ingest_hostile_jsonl")
def _():
    r, out, rows, why = ingest_case("jsonl")
    s = summary(r)
    eq(s["in"], 17, "JSONL lines read")
    eq(s["in"], len(out) + len(rows), "in = kept + rejected")
    for k in ("j_good", "j_last"):
        expect(k in out, "%s not ingested: %r" % (k, why))
    for k in ("j_fifo", "j_zero", "j_dir", "j_missing"):
        expect(k in why, "%s not rejected" % k)
    expect(all(row[1] == CASES["jsonl"] for row in rows), "rejects do not name the JSONL file")


# ---------------------------------------------------------------------------
# mix over hostile sources

@check("mix_over_nasty_sources")
def _():
    d = S.dir("mix")
    rec = write(os.path.join(d, "r.yaml"), ("""seed: 3
sources:
  nasty:
    kind: captions
    shards:
      - %s
      - %s
      - %s
tokenizer:
  file: %s
stages:
  - name: s
    train: all
    seq_len: 512
    tokens: 40000
    mix: {nasty: 1}
""" % (SAMPLES, os.path.join(CORPUS, "tar", "traversal.tar"), os.path.join(CORPUS, "tar", "size_10gb_short.tar"),
       TOK + ".tiktoken")).encode())
    rj = os.path.join(d, "rejects.tsv")
    # a budget that never ends, and more samples than an epoch emits: the
    # 10 MB caption cannot end the mix before the good samples come
    args = ("mix", rec, "--stage", "s", "--rejects", rj, "-q", "--budget", "1T", "--limit", "150")
    strict = mvl(*args, timeout=60, cwd=d)
    # a broken source shard fails the run as it does filter's, the
    # stream itself whole; --allow-damaged accepts it (mvl run's raw data)
    expect_rc(strict, 1)
    expect("damaged source input" in strict.errtext, "no damaged-input line: %r" % strict.errtext[-300:])
    r = mvl(*(args + ("--allow-damaged",)), timeout=60, cwd=d)
    expect_rc(r, 0)
    eq(r.out, strict.out, "the stream with and without --allow-damaged")
    expect("size_10gb_short.tar" in r.errtext, "the broken source shard is not named: %r" % r.errtext[-300:])
    rows = read_rejects(rj)
    keys = [row[0] for row in rows]
    eq(len(set(keys)), len(keys), "rejected keys listed once")
    out = {k.split("/", 2)[2] for k, _ in wds_samples(r.out)}
    expect(not (out & set(keys)), "keys both mixed and rejected: %s" % sorted(out & set(keys))[:3])
    for k in ("aa_good_first", "zz_good_last"):
        expect(k in out, "good sample %r never mixed" % k)
    for k in ("../evil", "img_zero_bytes", "cap_empty"):
        expect(k in keys, "%r not rejected by mix" % k)


# ---------------------------------------------------------------------------
# recipes, run dirs, text files, packs


@check("recipe_check_nasty_yaml")
def _():
    for name in CASES["recipes"]:
        path = os.path.join(CORPUS, "recipe", name)
        r = mvl("recipe", "check", "--no-count", path, timeout=T)
        if r.rc != 1:
            raise Fail("recipe check %s: exit %d, expected 1; stderr %r" % (name, r.rc, r.errtext[-300:]))
        expect(path in r.errtext, "recipe check %s: stderr does not name the file: %r" % (name, r.errtext[-300:]))
        eq(r.out, b"", "recipe check %s: stdout" % name)
        for cmd in (["mix", path, "--stage", "s"], ["pack", "--recipe", path, "--stage", "s", "-o",
                                                    os.path.join(S.tmp, "x.pack")],
                    ["run", path, "-o", os.path.join(S.tmp, "run-" + name)]):
            r = mvl(*cmd, timeout=T)
            expect(r.rc in (1, 2), "%s %s: exit %d" % (cmd[0], name, r.rc))
            expect(os.path.basename(path) in r.errtext, "%s %s: file not named: %r" % (cmd[0], name, r.errtext[-300:]))


@check("report_on_nasty_run_dir")
def _():
    run = os.path.join(CORPUS, "run")
    r = mvl("report", run, timeout=60)
    expect_rc(r, 0)
    page = read(os.path.join(run, "report.html")).decode("utf-8")
    expect("unreadable" in page, "the unreadable inputs are not reported")
    expect("<script" not in page.lower(), "the page holds a script")
    # examples drawn from hostile shards: thumbnails of bombs and broken images
    run = CASES["run2"]
    r = mvl("report", run, "--examples", "100", "--reasons", "4", timeout=60)
    expect_rc(r, 0)
    page = read(os.path.join(run, "report.html")).decode("utf-8")
    expect("aa_good_first" in page or "img_" in page, "no examples shown from the hostile shards")


@check("tok_encode_nasty_text")
def _():
    for name in CASES["texts"]:
        path = os.path.join(CORPUS, "text", name)
        r = mvl("tok", "encode", "--tiktoken", TOK + ".tiktoken", path, timeout=T)
        if name == "specials.txt":
            expect_rc(r, 1)
            expect(path in r.errtext and "special" in r.errtext, "no reason naming the file: %r" % r.errtext[-200:])
            continue
        expect_rc(r, 0)
        ids = r.out.split()
        expect(len(ids) > 0 or name == "empty.txt", "%s: no ids" % name)
        r2 = mvl("tok", "decode", "--tiktoken", TOK + ".tiktoken", input=r.out, timeout=T)
        expect_rc(r2, 0)
        eq(r2.out == read(path), True, "%s decodes back to its bytes" % name)
    r = mvl("tok", "encode", "--tiktoken", TOK + ".tiktoken", os.path.join(CORPUS, "text", "missing.txt"))
    expect_rc(r, 1)
    expect("missing.txt" in r.errtext, "a missing file is not named")


@check("ls_on_broken_packs")
def _():
    d = S.dir("packs")
    good = write(os.path.join(d, "good.tar"), tar_bytes(samples_to_members(
        [("p%d" % i, [("jpg", jpeg(100 + 20 * i, 120)), ("txt", b"a caption for the pack")]) for i in range(4)])))
    pk = os.path.join(d, "g.pack")
    expect_rc(mvl("pack", "--tokenizer", TOK + ".tiktoken", "--seq-len", "256", "-o", pk, good), 0)
    data = read(pk)
    variants = {"cut_half": data[:len(data) // 2], "cut_header": data[:20], "zero_tail": data[:-64] + b"\0" * 64,
                "flipped": data[:40] + bytes(b ^ 0xFF for b in data[40:200]) + data[200:]}
    for n, v in variants.items():
        p = write(os.path.join(d, n + ".pack"), v)
        r = mvl("ls", p, timeout=T)
        expect(r.rc in (0, 1), "ls %s: exit %d" % (n, r.rc))
        if r.rc == 1:
            expect(p in r.errtext, "ls %s: the file is not named: %r" % (n, r.errtext[-200:]))
        r = mvl("train", "--preset", "micro", "--steps", "1", "--vocab", "306", "-j", "1", "-q",
                "-o", os.path.join(d, "ck-" + n), p, timeout=60)
        expect(r.rc in (0, 1), "train on %s: exit %d: %r" % (n, r.rc, r.errtext[-300:]))
        if r.rc == 1:
            expect(p in r.errtext, "train %s: the file is not named: %r" % (n, r.errtext[-200:]))


S.finish()
