"""End-to-end tests of `mvl dedup` (issue 4, the "dedup" section of
filters/README.md).  Run by tests/run.sh with MVL=path to the binary.

Fixtures are real PIL-encoded images (smooth random "photos" with shapes,
block noise, gradients) re-encoded, resized and recoloured here, and real
captions; every drop is checked by key and reason, and every run by
conservation (each input key kept or rejected exactly once).

The quality checks use tests/e2e/dedup_set.py (a labelled near-duplicate set
generator) when it exists: recall per transformation kind and precision on
look-alike distinct pairs, one dedup run per pair (so pairs are isolated),
with the per-kind table printed to stderr."""
import sys
sys.dont_write_bytecode = True

import collections
import concurrent.futures
import functools
import io
import json
import os
import random
import re
import subprocess
import tarfile
import time

from mvltest import (
    Fail, MVL, Suite, encode, eq, expect, expect_rc, expect_summary, jpeg, mvl, png_chunk,
    read, read_rejects, samples_to_members, summary, tar_bytes, wds_samples, write,
    zstd_compress, TIMEOUT,
)

S = Suite("dedup")
check = S.check
REASONS = ("dedup.exact_image", "dedup.exact_caption", "dedup.exact_pair", "dedup.near_image",
           "dedup.near_caption", "dedup.contaminated")


# ---------------------------------------------------------------------------
# images

def _np():
    import numpy
    return numpy


def photo(seed, w=320, h=240):
    """A smooth random colour field (a 6x5 grid upsampled bicubically) with
    a few shapes on it: structure at every scale, like a photo."""
    np = _np()
    from PIL import Image, ImageDraw
    rs = np.random.RandomState(seed)
    grid = rs.randint(0, 256, (5, 6, 3)).astype(np.uint8)
    im = Image.fromarray(grid, "RGB").resize((w, h), Image.BICUBIC)
    d = ImageDraw.Draw(im)
    for _ in range(4):
        x0, y0 = int(rs.randint(0, w - 40)), int(rs.randint(0, h - 40))
        x1, y1 = x0 + int(rs.randint(20, w // 2)), y0 + int(rs.randint(20, h // 2))
        col = tuple(int(c) for c in rs.randint(0, 256, 3))
        (d.ellipse if rs.randint(2) else d.rectangle)((x0, y0, x1, y1), fill=col)
    return im


def blocks(seed, w=256, h=256, block=32):
    np = _np()
    from PIL import Image
    rs = np.random.RandomState(seed)
    s = rs.randint(0, 256, ((h + block - 1) // block, (w + block - 1) // block, 3)).astype(np.uint8)
    return Image.fromarray(s.repeat(block, 0).repeat(block, 1)[:h, :w], "RGB")


def shape(col, bg=(128, 128, 128), size=256):
    """A flat graphic: a disc and a bar in colour col on a grey ground."""
    from PIL import Image, ImageDraw
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    d.ellipse((40, 40, 200, 220), fill=col)
    d.rectangle((150, 20, 240, 90), fill=col)
    return im


def same_luma(rgb, r, b):
    """The colour (r, G, b) with the BT.601 luminance of rgb."""
    y = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    g = round((y - 0.299 * r - 0.114 * b) / 0.587)
    assert 0 <= g <= 255
    return (r, g, b)


def J(im, q=90):
    return ("jpg", encode(im.convert("RGB"), "JPEG", quality=q))


def P(im):
    return ("png", encode(im, "PNG"))


def W(im, lossless=False, q=80):
    return ("webp", encode(im, "WEBP", lossless=lossless, quality=q))


def half(im):
    from PIL import Image
    return im.resize((im.width // 2, im.height // 2), Image.LANCZOS)


def junk(seed, n=3000):
    return random.Random(seed).randbytes(n)


# ---------------------------------------------------------------------------
# running

def B(s):
    return s.encode("utf-8") if isinstance(s, str) else s


def write_tar(samples, name="in.tar", d=None):
    d = d or S.dir(name.split(".")[0])
    return write(os.path.join(d, name), tar_bytes(samples_to_members(samples)))


class Run:
    """One mvl run: the result, kept samples (key -> {ext: bytes}), rejects
    (key -> (reason, detail)), stats and clusters when asked.  Checks
    conservation: every input key kept or rejected, exactly once."""

    def __init__(self, r, inkeys, rows, stats=None, clusters=None):
        self.r = r
        self.out = wds_samples(r.out)
        self.kept = collections.OrderedDict((k, dict(ms)) for k, ms in self.out)
        self.rows = rows
        self.rej = {row[0]: (row[2], row[3]) for row in rows}
        self.stats = stats
        self.clusters = clusters
        eq(len(self.kept), len(self.out), "output keys are unique")
        eq(len(self.rej), len(rows), "rejected keys are unique")
        both = set(self.kept) & set(self.rej)
        expect(not both, "keys both kept and rejected: %s" % sorted(both)[:5])
        eq(sorted(set(self.kept) | set(self.rej)), sorted(inkeys), "kept + rejected keys vs input keys")
        bad = [row for row in rows if row[2] not in REASONS]
        expect(not bad, "rejects with a reason that is not dedup.*: %s" % bad[:3])

    def outcome(self, key):
        return "kept" if key in self.kept else self.rej[key][0]

    def outcomes(self, keys):
        return [self.outcome(k) for k in keys]


def run_on(args, samples, rc=0, stats=False, clusters=False, cmd=("dedup",), d=None):
    d = d or S.dir("run")
    p = write_tar(samples, d=d)
    rj = os.path.join(d, "rejects.tsv")
    extra = ["--rejects", rj]
    sp, cp = os.path.join(d, "stats.json"), os.path.join(d, "clusters.jsonl")
    if stats:
        extra += ["--stats", sp]
    if clusters:
        extra += ["--clusters", cp]
    r = mvl(*(list(cmd) + list(args) + extra + [p]))
    expect_rc(r, rc)
    st = cl = None
    if stats:
        with open(sp) as f:
            st = json.load(f)
    if clusters:
        with open(cp, "rb") as f:
            cl = [json.loads(l) for l in f.read().decode("utf-8").splitlines()]
    return Run(r, [k for k, _ in samples], read_rejects(rj), st, cl)


def expect_outcomes(args, samples, want, what=None, **kw):
    """want: {key: 'kept' or reason} for every sample."""
    run = run_on(args, samples, **kw)
    keys = [k for k, _ in samples]
    got = dict(zip(keys, run.outcomes(keys)))
    bad = ["%s -> %s (expected %s)" % (k, got[k], want[k]) for k in keys if got[k] != want[k]]
    expect(not bad, "%s: %s" % (what or "dedup " + " ".join(args), "; ".join(bad)))
    return run


def dist_of(detail):
    m = re.search(r"distance ([0-9.e+-]+)\)", detail)
    expect(m, "no distance in the detail %r" % detail)
    return float(m.group(1))


def expect_usage_error(args, *names, rcs=(2,)):
    r = mvl(*args, input=read(few_tar()))
    expect(r.rc in rcs, "mvl %s: exit %d, expected %s; stderr: %s" % (
        " ".join(args), r.rc, " or ".join(map(str, rcs)), r.errtext[:300]))
    eq(wds_samples(r.out) if r.out else [], [], "samples on stdout of %s" % " ".join(args))
    expect(r.err.strip() and b"Traceback" not in r.err, "no message on stderr")
    for n in names:
        expect(n.encode() in r.err, "stderr does not name %r: %r" % (n, r.err[:300]))


@functools.lru_cache(None)
def few_tar():
    return write_tar([("a", [("txt", b"a cat"), P(photo(1, 64, 64))]),
                      ("b", [("txt", b"a dog"), P(photo(2, 64, 64))])], "few.tar")


# ---------------------------------------------------------------------------
# help and options

@check("help_lists_every_option_with_default")
def _():
    r = mvl("dedup", "--help")
    expect_rc(r, 0)
    t = r.out.decode()
    expect(t.startswith("usage: mvl dedup"), "starts with %r" % t[:40])
    lines = t.splitlines()
    for opt, default in (("exact-image", "1"), ("exact-pixels", "0"), ("exact-caption", "0"),
                         ("exact-pair", "0"), ("near-image", "1"), ("hash", "phash"),
                         ("max-hamming", "7"), ("bands", "4"), ("max-thumb", "16"),
                         ("near-caption", "0"), ("jaccard", "0.8"), ("num-perm", "128"),
                         ("ngram", "5"), ("seed", "1")):
        ls = [l for l in lines if re.search(r"(^|\s)--%s\b" % re.escape(opt), l)]
        expect(ls, "--help does not list --%s" % opt)
        expect("(default: %s)" % default in ls[0], "--%s: default %s not in %r" % (opt, default, ls[0].strip()))
    for opt in ("against", "clusters", "rejects", "stats", "threads", "strict"):
        expect(re.search(r"(^|\s)--%s\b" % opt, t), "--help does not list --%s" % opt)
    for reason in REASONS:
        expect(reason in t, "--help does not name the reason %s" % reason)


@check("help_lists_dedup_command")
def _():
    r = mvl("help")
    expect_rc(r, 0)
    expect(re.search(rb"(?m)^\s*dedup\b", r.out), "'mvl help' does not list dedup")


@check("bad_bands_exits_2")
def _():
    expect_usage_error(["dedup", "--bands", "3"], "bands")
    expect_usage_error(["dedup", "--bands", "17"], "bands")
    expect_usage_error(["filter", "dedup:bands=3"], "bands")


@check("bad_max_hamming_exits_2")
def _():
    expect_usage_error(["dedup", "--max-hamming", "65"], "max_hamming")
    expect_usage_error(["dedup", "--max-hamming", "-1"])


@check("bad_num_perm_exits_2")
def _():
    expect_usage_error(["dedup", "--num-perm", "4"], "num_perm")
    expect_usage_error(["dedup", "--num-perm", "257"], "num_perm")
    expect_usage_error(["filter", "dedup:near_caption=1:num_perm=4"], "num_perm")


@check("bad_jaccard_exits_2")
def _():
    expect_usage_error(["dedup", "--jaccard", "0"], "jaccard")
    expect_usage_error(["dedup", "--jaccard", "1.5"], "jaccard")
    expect_usage_error(["dedup", "--jaccard", "high"], "jaccard")


@check("bad_flags_choices_and_unknown_options_exit_2")
def _():
    expect_usage_error(["dedup", "--exact-image", "2"])
    expect_usage_error(["dedup", "--near-caption", "yes"])
    expect_usage_error(["dedup", "--hash", "ahash"], "ahash")
    expect_usage_error(["dedup", "--max-thumb", "256"], "max_thumb")
    expect_usage_error(["dedup", "--ngram", "0"], "ngram")
    expect_usage_error(["dedup", "--max-hamm", "3"], "max-hamm")
    expect_usage_error(["filter", "dedup:jacard=0.5"], "jacard")


@check("against_missing_or_unreadable_eval_set_fails_naming_it")
def _():
    d = S.dir("badeval")
    missing = os.path.join(d, "nonexistent.tar")
    expect_usage_error(["dedup", "--against", missing], "nonexistent.tar", rcs=(1, 2))
    notar = write(os.path.join(d, "notatar.tar"), b"hello world\n" * 100)
    expect_usage_error(["dedup", "--against", notar], "notatar.tar", rcs=(1, 2))
    expect_usage_error(["filter", "dedup:against=%s" % missing], "nonexistent.tar", rcs=(1, 2))


# ---------------------------------------------------------------------------
# default mode: exact and near-duplicate images, first seen kept

@check("default_exact_image_bytes_dropped_first_kept")
def _():
    img = J(photo(1))
    smp = [("a", [("txt", b"a red bicycle"), img]), ("b", [("txt", b"something else entirely"), img]),
           ("c", [("txt", b"a red bicycle"), J(photo(2))]), ("d", [img])]
    run = expect_outcomes([], smp, {"a": "kept", "b": "dedup.exact_image", "c": "kept",
                                    "d": "dedup.exact_image"})
    expect("'a'" in run.rej["b"][1] or "#0" in run.rej["b"][1],
           "detail does not point at the kept sample: %r" % run.rej["b"][1])
    expect_summary(run.r, "dedup", 4, 2, {"dedup.exact_image": 2})


@check("default_reencodes_format_changes_and_resizes_dropped_as_near_image")
def _():
    im = photo(3)
    variants = [("jq95", J(im, 95)), ("jq75", J(im, 75)), ("jq50", J(im, 50)), ("jq30", J(im, 30)),
                ("png", P(im)), ("webp", W(im)), ("webpll", W(im, lossless=True)),
                ("pngA", P(im.convert("RGBA"))), ("half", J(half(im), 90)), ("halfpng", P(half(im)))]
    smp = [("orig", [("txt", b"a photo"), J(im, 90)])] + [(k, [("txt", b"a photo"), v]) for k, v in variants]
    want = {k: "dedup.near_image" for k, _ in variants}
    want["orig"] = "kept"
    run = expect_outcomes([], smp, want)
    for k, _ in variants:
        expect(dist_of(run.rej[k][1]) <= 10, "%s: distance %s > max_hamming 10" % (k, run.rej[k][1]))


@check("default_distinct_images_kept")
def _():
    imgs = [J(photo(s)) for s in range(10, 22)] + [P(blocks(s)) for s in range(1, 7)] + \
           [("jpg", jpeg(300, 200, s)) for s in range(3)]
    smp = [("s%02d" % i, [("txt", b"a photo of a cat"), im]) for i, im in enumerate(imgs)]
    expect_outcomes([], smp, {k: "kept" for k, _ in smp})


@check("default_same_caption_on_different_images_kept")
def _():
    caps = [b"a photo of a cat", b"A photo of a cat", b"a photo of a cat", b"a   photo of a  cat "]
    smp = [("s%d" % i, [("txt", c), J(photo(30 + i))]) for i, c in enumerate(caps)]
    smp += [("t%d" % i, [("txt", b"a photo of a cat")]) for i in range(3)]
    run = expect_outcomes([], smp, {k: "kept" for k, _ in smp})
    expect_summary(run.r, "dedup", len(smp), len(smp))


@check("kept_samples_unchanged_in_input_order")
def _():
    im = photo(40)
    smp = [("k0", [("txt", b"one"), J(im), ("json", b'{"id": 0}')]),
           ("k1", [("txt", b"two"), P(im), ("json", b'{"id": 1}')]),
           ("k2", [("txt", b"three"), W(photo(41)), ("json", b'{"id": 2}'), ("cls", b"7")]),
           ("k3", [("json", b'{"id": 3}')]),
           ("k4", [("txt", b"five"), J(photo(42)), ("json", b'{"id": 4}')])]
    run = run_on([], smp)
    eq([k for k, _ in run.out], ["k0", "k2", "k3", "k4"], "kept keys in input order")
    want = {k: dict(ms) for k, ms in smp}
    for k, ms in run.kept.items():
        eq(ms, want[k], "members of %s" % k)


@check("stdin_equals_file_input")
def _():
    im = photo(43)
    smp = [("a", [J(im)]), ("b", [W(im)]), ("c", [P(photo(44))])]
    p = write_tar(smp)
    r1 = mvl("dedup", p)
    r2 = mvl("dedup", input=read(p))
    expect_rc(r1, 0)
    expect_rc(r2, 0)
    eq([k for k, _ in wds_samples(r1.out)], ["a", "c"], "kept keys")
    expect(r1.out == r2.out, "stdin output differs from the file input's")
    expect_summary(r2, "dedup", 3, 2, {"dedup.near_image": 1})


@check("samples_without_image_kept")
def _():
    smp = [("t%d" % i, [("txt", b"the same caption on every sample")]) for i in range(4)]
    smp += [("j0", [("json", b"{}")]), ("j1", [("json", b"{}")]), ("c0", [("cls", b"1")])]
    expect_outcomes([], smp, {k: "kept" for k, _ in smp})


@check("samples_with_corrupt_images_kept")
def _():
    im = photo(45)
    j = J(im)[1]
    ihdr = __import__("struct").pack(">IIBBBBB", 320, 240, 8, 2, 0, 0, 0)
    bad_png = lambda s: (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
                         png_chunk(b"IDAT", b"\x78\x9c" + junk(s)) + png_chunk(b"IEND", b""))
    smp = [("ok", [("txt", b"x"), ("jpg", j)]),
           ("trunc", [("txt", b"x"), ("jpg", j[:len(j) // 2])]),
           ("header", [("txt", b"x"), ("jpg", j[:600])]),
           ("junkjpg", [("txt", b"x"), ("jpg", b"\xff\xd8\xff" + junk(1))]),
           ("junkjpg2", [("txt", b"x"), ("jpg", b"\xff\xd8\xff" + junk(2))]),
           ("badpng1", [("txt", b"x"), ("png", bad_png(3))]),
           ("badpng2", [("txt", b"x"), ("png", bad_png(4))]),
           ("junkwebp", [("txt", b"x"), ("webp", b"RIFF\x00\x10\x00\x00WEBPVP8 " + junk(5))]),
           ("empty", [("txt", b"x"), ("jpg", b"")]),
           ("ok2", [("txt", b"x"), ("png", P(im)[1])])]
    want = {k: "kept" for k, _ in smp}
    want["ok2"] = "dedup.near_image"
    expect_outcomes([], smp, want)
    expect_outcomes(["--exact-pixels", "1"], smp, want, "with --exact-pixels 1")


@check("recoloured_flat_graphic_same_luminance_kept_its_reencodes_dropped")
def _():
    a = (200, 100, 60)
    b = same_luma(a, 40, 220)
    c = same_luma(a, 90, 30)
    ia, ib, ic = shape(a), shape(b), shape(c)
    smp = [("a", [P(ia)]), ("b", [P(ib)]), ("c", [P(ic)]),
           ("a_jpg", [J(ia, 60)]), ("b_jpg", [J(ib, 60)]), ("c_webp", [W(ic)])]
    expect_outcomes([], smp, {"a": "kept", "b": "kept", "c": "kept", "a_jpg": "dedup.near_image",
                              "b_jpg": "dedup.near_image", "c_webp": "dedup.near_image"})


@check("colour_check_is_what_separates_recolours")
def _():
    a = (200, 100, 60)
    smp = [("a", [P(shape(a))]), ("b", [P(shape(same_luma(a, 40, 220)))])]
    expect_outcomes(["--max-thumb", "255"], smp, {"a": "kept", "b": "dedup.near_image"},
                    "without the colour check (max_thumb 255)")


# ---------------------------------------------------------------------------
# options

@check("exact_image_0_identical_bytes_caught_as_near_image")
def _():
    img = J(photo(50))
    smp = [("a", [img]), ("b", [img]), ("c", [J(photo(51))])]
    run = expect_outcomes(["--exact-image", "0"], smp, {"a": "kept", "b": "dedup.near_image", "c": "kept"})
    eq(dist_of(run.rej["b"][1]), 0.0, "distance of identical bytes")
    expect_outcomes(["--exact-image", "0", "--near-image", "0"], smp, {"a": "kept", "b": "kept", "c": "kept"},
                    "everything off")


@check("near_image_0_keeps_reencodes_drops_exact_bytes")
def _():
    im = photo(52)
    smp = [("a", [J(im)]), ("b", [J(im, 50)]), ("c", [P(im)]), ("d", [J(im)])]
    expect_outcomes(["--near-image", "0"], smp, {"a": "kept", "b": "kept", "c": "kept",
                                                  "d": "dedup.exact_image"})


@check("exact_pixels_png_and_lossless_webp")
def _():
    im = photo(53)
    smp = [("png", [("txt", b"one"), P(im)]), ("webp", [("txt", b"two"), W(im, lossless=True)]),
           ("png_rgba", [("txt", b"three"), P(im.convert("RGBA"))])]
    expect_outcomes([], smp, {"png": "kept", "webp": "dedup.near_image", "png_rgba": "dedup.near_image"},
                    "default mode")
    expect_outcomes(["--exact-pixels", "1"], smp, {"png": "kept", "webp": "dedup.exact_image",
                                                   "png_rgba": "dedup.exact_image"}, "--exact-pixels 1")
    # exact pixels alone: equal pixels only
    expect_outcomes(["--exact-pixels", "1", "--near-image", "0"], smp,
                    {"png": "kept", "webp": "dedup.exact_image", "png_rgba": "dedup.exact_image"},
                    "--exact-pixels 1 --near-image 0")


@check("exact_pixels_lossy_reencode_is_not_exact")
def _():
    im = photo(54)
    smp = [("png", [P(im)]), ("jpg", [J(im, 95)]), ("webp", [W(im, q=90)]), ("small", [P(half(im))])]
    expect_outcomes(["--exact-pixels", "1", "--near-image", "0"], smp, {k: "kept" for k, _ in smp})


@check("exact_caption_normalizes_case_and_whitespace")
def _():
    caps = [("c0", "A photo of a cat"), ("c1", "a photo of a cat"), ("c2", "  A  PHOTO\tof a\n cat  "),
            ("c3", "a photo of a cat."), ("c4", "a photo of a dog"), ("c5", "a photo\r\nof a CAT"),
            ("c6", "aphoto of a cat")]
    smp = [(k, [("txt", B(c)), J(photo(60 + i))]) for i, (k, c) in enumerate(caps)]
    smp.append(("noimg", [("txt", b"A Photo Of A Cat")]))
    want = {"c0": "kept", "c1": "dedup.exact_caption", "c2": "dedup.exact_caption", "c3": "kept",
            "c4": "kept", "c5": "dedup.exact_caption", "c6": "kept", "noimg": "dedup.exact_caption"}
    run = expect_outcomes(["--exact-caption", "1"], smp, want)
    expect_summary(run.r, "dedup", 8, 4, {"dedup.exact_caption": 4})


@check("exact_caption_samples_without_caption_kept")
def _():
    smp = [("a", [J(photo(70))]), ("b", [J(photo(71))]), ("c", [("json", b"{}")]), ("d", [("json", b"{}")])]
    expect_outcomes(["--exact-caption", "1"], smp, {k: "kept" for k, _ in smp})


@check("exact_pair_same_image_and_caption")
def _():
    i1, i2 = J(photo(72)), J(photo(73))
    smp = [("a", [("txt", b"a cat on a mat"), i1]), ("b", [("txt", b"a dog on a mat"), i1]),
           ("c", [("txt", b"a cat on a mat"), i2]), ("d", [("txt", b"a cat on a mat"), i1]),
           ("e", [("txt", b"a dog on a mat"), i1]), ("f", [("txt", b"a cat on a mat")])]
    off = ["--exact-image", "0", "--near-image", "0"]
    expect_outcomes(off + ["--exact-pair", "1"], smp,
                    {"a": "kept", "b": "kept", "c": "kept", "d": "dedup.exact_pair", "e": "dedup.exact_pair",
                     "f": "kept"})
    expect_outcomes(off, smp, {k: "kept" for k, _ in smp}, "exact_pair off")


WORDS = ("the quick brown fox jumps over the lazy dog near a quiet river bank "
         "under tall green trees at dawn").split()
LONG = ("an old stone bridge crosses a narrow mountain stream while a red kite circles above "
        "pine forest covered slopes and a shepherd leads his flock down the winding path toward "
        "a small village with white houses and a church tower").split()


def shingles(words, n):
    words = [w.lower() for w in words]
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def jac(a, b, n=5):
    x, y = shingles(a.split(), n), shingles(b.split(), n)
    return len(x & y) / len(x | y)


@check("near_caption_one_word_of_twenty_dropped_unrelated_kept")
def _():
    c0 = " ".join(WORDS)
    last = " ".join(WORDS[:-1] + ["dusk"])
    mid = " ".join(WORDS[:10] + ["cat"] + WORDS[11:])
    caps = [("c0", c0), ("last", last), ("upper", c0.upper()), ("mid", mid),
            ("other", "a photo of a cat sitting on a red sofa in a living room with big windows and plants"),
            ("long", " ".join(LONG))]
    expect(len(WORDS) == 20 and jac(c0, last) > 0.85 and jac(c0, mid) < 0.6, "fixture: %.3f %.3f" % (
        jac(c0, last), jac(c0, mid)))
    smp = [(k, [("txt", B(c)), J(photo(80 + i))]) for i, (k, c) in enumerate(caps)]
    run = expect_outcomes(["--near-caption", "1"], smp,
                          {"c0": "kept", "last": "dedup.near_caption", "upper": "dedup.near_caption",
                           "mid": "kept", "other": "kept", "long": "kept"})
    expect(dist_of(run.rej["last"][1]) <= 0.2, "distance of the one-word change: %r" % run.rej["last"][1])
    # the same captions without near_caption: all kept
    expect_outcomes([], smp, {k: "kept" for k, _ in smp}, "near_caption off (default)")


@check("near_caption_ngram_1_catches_middle_word_change")
def _():
    c0 = " ".join(WORDS)
    mid = " ".join(WORDS[:10] + ["cat"] + WORDS[11:])
    smp = [("c0", [("txt", B(c0))]), ("mid", [("txt", B(mid))])]
    expect(jac(c0, mid, 1) > 0.85, "fixture")
    expect_outcomes(["--near-caption", "1", "--ngram", "1"], smp, {"c0": "kept", "mid": "dedup.near_caption"})
    expect_outcomes(["--near-caption", "1"], smp, {"c0": "kept", "mid": "kept"}, "ngram 5")


@check("near_caption_jaccard_threshold")
def _():
    c0 = " ".join(LONG)
    mid = " ".join(LONG[:20] + ["eagle"] + LONG[21:])
    last = " ".join(LONG[:-1] + ["spire"])
    jm, jl = jac(c0, mid), jac(c0, last)
    expect(0.7 < jm < 0.78 and jl > 0.94, "fixture: %.3f %.3f" % (jm, jl))
    smp = [("c0", [("txt", B(c0))]), ("mid", [("txt", B(mid))]), ("last", [("txt", B(last))]),
           ("same", [("txt", B(c0.upper()))])]
    expect_outcomes(["--near-caption", "1", "--jaccard", "0.5"], smp,
                    {"c0": "kept", "mid": "dedup.near_caption", "last": "dedup.near_caption",
                     "same": "dedup.near_caption"}, "jaccard 0.5")
    expect_outcomes(["--near-caption", "1", "--jaccard", "1"], smp,
                    {"c0": "kept", "mid": "kept", "last": "kept", "same": "dedup.near_caption"}, "jaccard 1")
    expect_outcomes(["--near-caption", "1", "--jaccard", "0.9", "--num-perm", "256", "--seed", "7"], smp,
                    {"c0": "kept", "mid": "kept", "last": "dedup.near_caption", "same": "dedup.near_caption"},
                    "jaccard 0.9, 256 perms, seed 7")


@check("near_caption_short_identical_captions")
def _():
    smp = [("a", [("txt", b"a red car")]), ("b", [("txt", b"A red  car")]), ("c", [("txt", b"a blue car")]),
           ("d", [("txt", b"cat")]), ("e", [("txt", b"cat")])]
    expect_outcomes(["--near-caption", "1"], smp, {"a": "kept", "b": "dedup.near_caption", "c": "kept",
                                                   "d": "kept", "e": "dedup.near_caption"})


@check("near_caption_wordless_captions_not_duplicates_of_each_other")
def _():
    # no words, no shingles: nothing to compare (as a sample without an
    # image is not judged by near_image), not Jaccard 1 with every other
    # word-less caption
    caps = [("dogcat", "\U0001F436\U0001F431"), ("party", "\U0001F389\U0001F388"), ("bang", "!!!"),
            ("what", "???"), ("stars", "\u2605\u2606\u2605"), ("words", "a dog and a cat")]
    smp = [(k, [("txt", B(c)), J(photo(85 + i))]) for i, (k, c) in enumerate(caps)]
    expect_outcomes(["--near-caption", "1"], smp, {k: "kept" for k, _ in smp})
    # and an eval set with a word-less caption does not contaminate them
    d = S.dir("wordless")
    ev = write_tar([("e", [("txt", B("\u2764\ufe0f"))])], "eval.tar", d)
    expect_outcomes(["--near-caption", "1", "--against", ev], smp, {k: "kept" for k, _ in smp}, "against")


@check("caption_dedup_reads_sft_conversations")
def _():
    # filters/README.md: for SFT samples (KEY.json with "conversations",
    # no KEY.txt) clean and capfilter work on the turns; issue 4: caption
    # dedup is what the recipe turns on for SFT sources
    def conv(t):
        return B(json.dumps({"conversations": [{"from": "human", "value": "<image>\nWhat is shown here?"},
                                               {"from": "gpt", "value": t}]}))
    ans = "A red double decker bus crossing a stone bridge over a wide river at sunset"
    smp = [("a", [("json", conv(ans))]), ("b", [("json", conv(ans))]), ("c", [("json", conv("A small dog."))]),
           ("d", [("json", conv(ans.replace("sunset", "dawn")))])]
    expect_outcomes(["--exact-caption", "1"], smp, {"a": "kept", "b": "dedup.exact_caption", "c": "kept",
                                                    "d": "kept"}, "exact_caption")
    expect_outcomes(["--near-caption", "1"], smp, {"a": "kept", "b": "dedup.near_caption", "c": "kept",
                                                   "d": "dedup.near_caption"}, "near_caption")


def chain_fixture():
    """A, B, C: words [0, 40), [10, 50), [20, 60) of one vocabulary: with
    ngram 1, J(A,B) = J(B,C) = 0.6, J(A,C) = 0.33."""
    vocab = ["w%03dx" % i for i in range(60)]
    return [(k, [("txt", B(" ".join(vocab[o:o + 40])))]) for k, o in (("A", 0), ("B", 10), ("C", 20))]


@check("clusters_are_stars_not_chains")
def _():
    smp = chain_fixture()
    args = ["--near-caption", "1", "--ngram", "1", "--num-perm", "256", "--jaccard", "0.45"]
    # the links: A~B and B~C, but not A~C
    expect_outcomes(args, [smp[0], smp[1]], {"A": "kept", "B": "dedup.near_caption"}, "A, B")
    expect_outcomes(args, [smp[1], smp[2]], {"B": "kept", "C": "dedup.near_caption"}, "B, C")
    expect_outcomes(args, [smp[0], smp[2]], {"A": "kept", "C": "kept"}, "A, C")
    # B is dropped for being close to A; C is close only to the dropped B
    run = expect_outcomes(args, smp, {"A": "kept", "B": "dedup.near_caption", "C": "kept"}, "A, B, C",
                          clusters=True)
    eq([(c["kept"], [x["key"] for x in c["dropped"]]) for c in run.clusters], [("A", ["B"])], "clusters")


@check("dhash_option")
def _():
    im = photo(90)
    smp = [("a", [J(im)]), ("b", [J(im, 40)]), ("c", [P(half(im))]), ("d", [J(photo(91))]), ("e", [P(blocks(9))])]
    expect_outcomes(["--hash", "dhash"], smp, {"a": "kept", "b": "dedup.near_image", "c": "dedup.near_image",
                                              "d": "kept", "e": "kept"})


@check("max_hamming_boundary_from_measured_distance")
def _():
    # the first of a few re-encodes whose hash moved by 1..15 bits
    args = ["--bands", "16", "--max-thumb", "255"]
    for seed, q in ((3, 30), (150, 20), (151, 15), (152, 10), (153, 10)):
        im = photo(seed)
        smp = [("a", [P(im)]), ("b", [J(im, q)])]
        run = run_on(args + ["--max-hamming", "15"], smp)
        expect("b" in run.rej, "a JPEG q%d re-encode is not a duplicate within 15 bits" % q)
        d = int(dist_of(run.rej["b"][1]))
        if d >= 1:
            break
    else:
        raise Fail("every re-encode is at distance 0: no boundary to test")
    expect_outcomes(args + ["--max-hamming", str(d)], smp, {"a": "kept", "b": "dedup.near_image"},
                    "max_hamming %d (the distance)" % d)
    expect_outcomes(args + ["--max-hamming", str(d - 1)], smp, {"a": "kept", "b": "kept"},
                    "max_hamming %d (one below the distance)" % (d - 1))


@check("max_thumb_0_keeps_lossy_reencodes")
def _():
    im = photo(92)
    smp = [("a", [J(im)]), ("b", [J(im, 30)]), ("c", [P(half(im))])]
    expect_outcomes([], smp, {"a": "kept", "b": "dedup.near_image", "c": "dedup.near_image"}, "default")
    expect_outcomes(["--max-thumb", "0"], smp, {"a": "kept", "b": "kept", "c": "kept"}, "max_thumb 0")


@check("bands_do_not_change_close_pairs")
def _():
    im, im2 = photo(93), photo(94)
    smp = [("a", [J(im)]), ("b", [W(im)]), ("c", [P(im)]), ("d", [J(im2)]), ("e", [P(im2)]), ("f", [J(photo(95))])]
    base = run_on([], smp)
    for bands in ("5", "8", "16"):
        run = run_on(["--bands", bands], smp)
        eq(run.outcomes([k for k, _ in smp]), base.outcomes([k for k, _ in smp]), "outcomes with %s bands" % bands)
    eq(base.outcomes(["a", "b", "c", "d", "e", "f"]),
       ["kept", "dedup.near_image", "dedup.near_image", "kept", "dedup.near_image", "kept"], "outcomes")


@check("filter_spec_equals_command_options")
def _():
    smp = [("a", [("txt", b" ".join(B(w) for w in WORDS)), J(photo(96))]),
           ("b", [("txt", B(" ".join(WORDS[:-1] + ["dusk"])))]),
           ("c", [("txt", b"another caption"), W(photo(96))])]
    p = write_tar(smp)
    r1 = mvl("dedup", "--near-caption", "1", "--jaccard", "0.7", "--max-hamming", "8", p)
    r2 = mvl("filter", "dedup:near_caption=1:jaccard=0.7:max_hamming=8", p)
    r3 = mvl("dedup", "--near_caption=1", "--jaccard=0.7", "--max_hamming=8", p)
    for r in (r1, r2, r3):
        expect_rc(r, 0)
    eq([k for k, _ in wds_samples(r1.out)], ["a"], "kept keys")
    expect(r1.out == r2.out == r3.out, "outputs differ between the command and the filter spec")


@check("strict_exits_1_when_something_dropped")
def _():
    img = J(photo(97))
    r = mvl("dedup", "--strict", write_tar([("a", [img]), ("b", [img])]))
    expect_rc(r, 1)
    r = mvl("dedup", "--strict", write_tar([("a", [img]), ("b", [J(photo(98))])]))
    expect_rc(r, 0)


@check("compressed_input_same_result")
def _():
    im = photo(99)
    smp = [("a", [J(im)]), ("b", [W(im)]), ("c", [J(photo(100))])]
    p = write_tar(smp)
    z = write(p + ".zst", zstd_compress(read(p)))
    r1, r2 = mvl("dedup", p), mvl("dedup", z)
    expect_rc(r1, 0)
    expect_rc(r2, 0)
    eq([k for k, _ in wds_samples(r2.out)], ["a", "c"], "kept keys from .tar.zst")
    expect(r1.out == r2.out, "output differs for the compressed input")


# ---------------------------------------------------------------------------
# decontamination

@functools.lru_cache(None)
def eval_dir():
    d = S.dir("eval")
    ev0 = [("e0", [("txt", B(" ".join(WORDS))), J(photo(110))]),
           ("e1", [("txt", b"what is the capital of france answer with one word please thanks"), P(photo(111))])]
    ev1 = [("e2", [("txt", b"how many legs does a spider have count them carefully and answer"), P(blocks(20))])]
    write_tar(ev0, "eval-0.tar", d)
    write_tar(ev1, "eval-1.tar", d)
    return d


def train_samples():
    return [
        ("t0", [("txt", b"an unrelated caption about trains"), J(photo(110), 50)]),  # eval image re-encoded
        ("t1", [("txt", b"what is the capital of france answer with one word please thanks"), J(photo(112))]),
        ("t2", [("txt", b"a photo of something new"), P(photo(113))]),                 # clean
        ("t3", [("txt", B(" ".join(WORDS[:-1] + ["dusk"])))]),                          # near an eval caption
        ("t4", [("txt", b"yet another new picture"), W(photo(111))]),                   # eval image as WebP
        ("t5", [("txt", b"a third new picture of a boat"), read_eval_png()]),            # eval image bytes
        ("t6", [("txt", b"a fourth new picture of a field"), J(blocks(20), 60)]),        # eval-1 image
        ("t7", [("txt", b"a photo of something new"), P(photo(113))]),                 # dup of t2 (train)
        ("t8", [("txt", b"a caption with no image at all")]),
    ]


def read_eval_png():
    return P(photo(111))


@check("against_eval_images_contaminated_others_kept")
def _():
    ev = os.path.join(eval_dir(), "eval-{0..1}.tar")
    smp = train_samples()
    run = expect_outcomes(["--against", ev], smp, {
        "t0": "dedup.contaminated", "t1": "kept", "t2": "kept", "t3": "kept", "t4": "dedup.contaminated",
        "t5": "dedup.contaminated", "t6": "dedup.contaminated", "t7": "dedup.exact_image", "t8": "kept"},
        "images only (default options)")
    expect_summary(run.r, "dedup", 9, 4, {"dedup.contaminated": 4, "dedup.exact_image": 1})


@check("against_eval_captions_contaminated_with_caption_dedup")
def _():
    ev = os.path.join(eval_dir(), "eval-{0..1}.tar")
    smp = train_samples()
    want = {"t0": "dedup.contaminated", "t1": "dedup.contaminated", "t2": "kept", "t3": "dedup.contaminated",
            "t4": "dedup.contaminated", "t5": "dedup.contaminated", "t6": "dedup.contaminated",
            "t7": "dedup.exact_image", "t8": "kept"}
    expect_outcomes(["--against", ev, "--near-caption", "1"], smp, want, "near_caption")
    want["t3"] = "kept"  # one word off: not an exact caption
    expect_outcomes(["--against", ev, "--exact-caption", "1"], smp, want, "exact_caption")


@check("against_glob_and_filter_spec")
def _():
    smp = train_samples()
    glob = os.path.join(eval_dir(), "eval-*.tar")
    r1 = run_on(["--against", glob], smp)
    r2 = run_on(["dedup:against=%s" % glob], smp, cmd=("filter",))
    one = run_on(["--against", os.path.join(eval_dir(), "eval-0.tar")], smp)
    keys = [k for k, _ in smp]
    eq(r2.outcomes(keys), r1.outcomes(keys), "outcomes in a filter spec")
    expect(r1.r.out == r2.r.out, "output differs in a filter spec")
    eq(one.outcome("t6"), "kept", "t6 (a copy of an eval-1 image) against eval-0 only")
    eq(r1.outcome("t6"), "dedup.contaminated", "t6 against eval-*.tar")


@check("against_eval_set_not_written_and_contaminated_not_in_clusters")
def _():
    ev = os.path.join(eval_dir(), "eval-{0..1}.tar")
    run = run_on(["--against", ev], train_samples(), clusters=True)
    expect(not any(k.startswith("e") for k in run.kept), "eval samples in the output: %s" % list(run.kept))
    eq(run.clusters, [{"kept": "t2", "dropped": [{"key": "t7", "reason": "exact_image", "distance": 0.0}]}],
       "clusters")


# ---------------------------------------------------------------------------
# a bigger mixed fixture: clusters, conservation, determinism

@functools.lru_cache(None)
def mixed_samples():
    """~260 samples: 60 base photos, each with 0-3 re-encodes/resizes spread
    through the stream, repeated bytes, recolours, captions that repeat,
    samples without image and with corrupt images."""
    rs = random.Random(5)
    items = []
    for b in range(60):
        im = photo(1000 + b, 160 + 8 * (b % 5), 120 + 8 * (b % 3)) if b % 4 else blocks(1000 + b, 128, 128, 16)
        cap = "a photo number %d of a scene with things" % (b % 17)
        items.append((b, 0, [("txt", B(cap)), J(im)]))
        for v in range(rs.randint(0, 3)):
            kind = rs.choice(["jpeg50", "webp", "png", "half", "bytes"])
            img = {"jpeg50": lambda: J(im, 50), "webp": lambda: W(im), "png": lambda: P(im),
                   "half": lambda: J(half(im), 85), "bytes": lambda: J(im)}[kind]()
            items.append((b, v + 1, [("txt", B("variant %s of %d" % (kind, b))), img]))
    for i in range(12):
        items.append((200 + i, 0, [("txt", b"no image here, just words")]))
    for i in range(6):
        items.append((300 + i, 0, [("txt", b"broken"), ("jpg", b"\xff\xd8\xff" + junk(100 + i))]))
    base = (200, 100, 60)
    for i, (r, b) in enumerate(((40, 220), (90, 30), (10, 160))):
        items.append((400 + i, 0, [("txt", b"a flat logo"), P(shape(same_luma(base, r, b)))]))
    items.append((403, 0, [("txt", b"a flat logo"), P(shape(base))]))
    rs.shuffle(items)
    # originals before their variants only by chance: the first seen survives
    return [("s%03d_%d_%d" % (i, b, v), ms) for i, (b, v, ms) in enumerate(items)]


@functools.lru_cache(None)
def mixed_tar():
    return write_tar(mixed_samples(), "mixed.tar")


def full_run(extra=(), path=None):
    d = S.dir("full")
    rj, st, cl = (os.path.join(d, n) for n in ("rejects.tsv", "stats.json", "clusters.jsonl"))
    r = mvl("dedup", "--rejects", rj, "--stats", st, "--clusters", cl, *extra, path or mixed_tar())
    expect_rc(r, 0)
    return r, read(rj), read(st), read(cl)


@functools.lru_cache(None)
def mixed_run():
    r, rj, st, cl = full_run(["--exact-caption", "0"])
    rows = read_rejects(write(os.path.join(S.dir("rows"), "r.tsv"), rj))
    clusters = [json.loads(l) for l in cl.decode("utf-8").splitlines()]
    return Run(r, [k for k, _ in mixed_samples()], rows, json.loads(st), clusters), rj, cl


@check("mixed_expected_drops")
def _():
    run = mixed_run()[0]
    by_base = collections.defaultdict(list)
    for k, _ in mixed_samples():
        by_base[int(k.split("_")[1])].append(k)
    bad = []
    for b, keys in by_base.items():
        outs = run.outcomes(keys)
        if b < 200:  # a cluster: exactly its first member kept
            if outs[0] != "kept" or any(o == "kept" for o in outs[1:]) or \
                    any(o not in ("dedup.near_image", "dedup.exact_image") for o in outs[1:]):
                bad.append("base %d: %s -> %s" % (b, keys, outs))
        elif outs != ["kept"] * len(keys):
            bad.append("%s -> %s" % (keys, outs))
    expect(not bad, "; ".join(bad[:6]))
    # repeated bytes of a kept sample are exact_image, not near_image
    first = {}
    for k, ms in mixed_samples():
        img = [v for e, v in ms if e != "txt"]
        if not img:
            continue
        if img[0] in first and run.outcome(first[img[0]]) == "kept":
            eq(run.outcome(k), "dedup.exact_image", "outcome of %s (same bytes as the kept %s)" % (
                k, first[img[0]]))
        first.setdefault(img[0], k)


@check("conservation_stats_rejects_and_summary_agree")
def _():
    run = mixed_run()[0]
    st = run.stats
    n = len(mixed_samples())
    eq(st["in"], n, "stats in")
    eq((st["kept"], st["dropped"]), (len(run.kept), len(run.rows)), "stats (kept, dropped)")
    eq(st["in"], st["kept"] + st["dropped"], "in = kept + dropped")
    eq([f["name"] for f in st["filters"]], ["dedup"], "filters")
    f = st["filters"][0]
    eq(f["in"], f["kept"] + f["dropped"], "dedup: in = kept + dropped")
    tsv = collections.Counter(row[2] for row in run.rows)
    eq(f["reasons"], dict(tsv), "stats reasons vs rejects TSV counts")
    s = summary(run.r)
    eq((s["in"], s["kept"], s["reasons"]), (n, len(run.kept), dict(tsv)), "summary line vs rejects")
    expect(all(row[1].endswith("mixed.tar") for row in run.rows), "source column: %s" % run.rows[:2])


@check("clusters_every_dropped_key_once_matching_rejects")
def _():
    run = mixed_run()[0]
    cl = run.clusters
    expect(cl, "no clusters written")
    kept_keys = [c["kept"] for c in cl]
    eq(len(set(kept_keys)), len(kept_keys), "one line per cluster (kept keys unique)")
    expect(all(k in run.kept for k in kept_keys), "a cluster's kept key is not in the output")
    dropped = [(x["key"], "dedup." + x["reason"]) for c in cl for x in c["dropped"]]
    eq(len(dropped), len(set(k for k, _ in dropped)), "dropped keys appear once")
    eq(sorted(dropped), sorted((row[0], row[2]) for row in run.rows), "clusters' (key, reason) vs rejects TSV")
    for c in cl:
        expect(set(c) == {"kept", "dropped"} and c["dropped"], "cluster line %r" % c)
        for x in c["dropped"]:
            expect(set(x) == {"key", "reason", "distance"}, "dropped entry %r" % x)
            expect(isinstance(x["distance"], (int, float)) and x["distance"] >= 0, "distance in %r" % x)
            if x["reason"] == "exact_image":
                eq(x["distance"], 0, "distance of %s" % x["key"])
            if x["reason"] == "near_image":
                expect(x["distance"] <= 10, "near_image distance %s > 10" % x["distance"])
            eq(x["distance"], dist_of(run.rej[x["key"]][1]), "distance of %s vs the rejects detail" % x["key"])


@check("clusters_kept_is_first_seen_and_detail_names_it")
def _():
    run = mixed_run()[0]
    order = {k: i for i, (k, _) in enumerate(mixed_samples())}
    for c in run.clusters:
        expect(all(order[x["key"]] > order[c["kept"]] for x in c["dropped"]),
               "a dropped sample comes before its kept one: %r" % c)
        for x in c["dropped"]:
            expect("'%s'" % c["kept"] in run.rej[x["key"]][1],
                   "detail of %s does not name %s: %r" % (x["key"], c["kept"], run.rej[x["key"]][1]))


@check("clusters_file_empty_when_nothing_dropped")
def _():
    run = run_on([], [("a", [J(photo(120))]), ("b", [J(photo(121))])], clusters=True)
    eq(run.clusters, [], "clusters")


@check("deterministic_across_threads")
def _():
    _, rj0, cl0 = mixed_run()
    out0 = mixed_run()[0].r.out
    for j in ("1", "2", "0"):
        r, rj, st, cl = full_run(["--exact-caption", "0", "-j", j])
        expect(r.out == out0, "output differs with -j %s" % j)
        expect(rj == rj0, "rejects differ with -j %s" % j)
        expect(cl == cl0, "clusters differ with -j %s" % j)


@check("deterministic_across_repeated_runs")
def _():
    _, rj0, cl0 = mixed_run()
    out0 = mixed_run()[0].r.out
    for _i in range(3):
        r, rj, st, cl = full_run(["--exact-caption", "0", "-j", "2"])
        expect(r.out == out0 and rj == rj0 and cl == cl0, "a repeated run differs")


@check("deterministic_with_all_options")
def _():
    extra = ["--exact-pixels", "1", "--exact-caption", "1", "--exact-pair", "1", "--near-caption", "1"]
    a = full_run(extra + ["-j", "1"])
    b = full_run(extra + ["-j", "2"])
    expect(a[0].out == b[0].out and a[1] == b[1] and a[3] == b[3], "-j 1 and -j 2 differ with every option on")
    expect(a[0].out != mixed_run()[0].r.out, "caption options changed nothing")


@check("first_seen_survives_reversed_order")
def _():
    pairs = []
    for i in range(8):
        im = photo(130 + i)
        pairs.append([("p%d_a" % i, [J(im, 90)]), ("p%d_b" % i, [(W, J, P)[i % 3](im)])])
    fwd = [s for p in pairs for s in p]
    rev = list(reversed(fwd))
    r1, r2 = run_on([], fwd), run_on([], rev)
    eq(list(r1.kept), ["p%d_a" % i for i in range(8)], "kept, forward")
    eq(list(r2.kept), ["p%d_b" % i for i in reversed(range(8))], "kept, reversed")
    eq(len(r1.rows), len(r2.rows), "drop counts")


@check("first_seen_survives_reversed_mixed")
def _():
    smp = mixed_samples()
    fwd = mixed_run()[0]
    rev = run_on(["--exact-caption", "0"], list(reversed(smp)), clusters=True)
    eq(len(rev.kept), len(fwd.kept), "kept count reversed")
    # in every cluster of the forward run, the reversed run keeps its last member
    for c in fwd.clusters:
        last = c["dropped"][-1]["key"]
        expect(last in rev.kept, "reversed: %s (last of cluster %s) not kept: %s" % (
            last, c["kept"], rev.outcome(last)))
        expect(c["kept"] not in rev.kept, "reversed: %s kept as well as %s" % (c["kept"], last))


@check("output_shards_equal_stdout")
def _():
    d = S.dir("shards")
    r = mvl("dedup", "-o", os.path.join(d, "shard-%06d.tar"), "--maxcount", "20", mixed_tar())
    expect_rc(r, 0)
    names = sorted(n for n in os.listdir(d) if n.startswith("shard-"))
    expect(len(names) >= 2, "shards: %s" % names)
    got = [s for n in names for s in wds_samples(read(os.path.join(d, n)))]
    want = mixed_run()[0].out
    eq([k for k, _ in got], [k for k, _ in want], "keys over the shards")


@check("memory_per_kept_image_bounded")
def _():
    if "asan" in os.path.basename(os.path.dirname(MVL)):
        return  # sanitizer redzones inflate memory: measured in the normal build
    import numpy as np
    from PIL import Image
    d = S.dir("mem")

    def mk(n, name):
        rs = np.random.RandomState(n)
        arr = rs.randint(0, 256, (n, 8, 8, 3)).astype(np.uint8)
        bio = io.BytesIO()
        with tarfile.open(fileobj=bio, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for i in range(n):
                b = io.BytesIO()
                Image.fromarray(arr[i]).save(b, "PNG", compress_level=0)
                data = b.getvalue()
                ti = tarfile.TarInfo("s%07d.png" % i)
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
        return write(os.path.join(d, name), bio.getvalue())

    small, big = mk(2000, "small.tar"), mk(42000, "big.tar")
    # peak RSS of mvl alone: spawned by a bare Python (a fork of this
    # process would report this process's memory as its peak)
    code = ("import os,sys\npid=os.posix_spawn(sys.argv[1],sys.argv[1:],os.environ,file_actions=["
            "(os.POSIX_SPAWN_OPEN,1,'/dev/null',os.O_WRONLY,0),(os.POSIX_SPAWN_OPEN,2,'/dev/null',os.O_WRONLY,0)])\n"
            "_,st,ru=os.wait4(pid,0)\nprint(os.waitstatus_to_exitcode(st),ru.ru_maxrss)")

    def peak(path):
        p = subprocess.run(["/usr/bin/python3", "-c", code, MVL, "dedup", "-q", "-j", "1", path],
                           stdout=subprocess.PIPE, timeout=TIMEOUT, check=True)
        rc, kb = map(int, p.stdout.split())
        eq(rc, 0, "exit status of mvl dedup on %s" % os.path.basename(path))
        return kb

    kb_small, kb_big = peak(small), peak(big)
    per = (kb_big - kb_small) * 1024 / 40000
    print("# dedup memory: %d KiB peak for 2000 images, %d KiB for 42000: %.0f bytes per kept image" % (
        kb_small, kb_big, per), file=sys.stderr)
    expect(per <= 256, "%.0f bytes per kept image (README: about 100)" % per)


# ---------------------------------------------------------------------------
# chains

def pipe(cmds, input_path):
    procs, prev = [], None
    for i, c in enumerate(cmds):
        args = [MVL] + [str(a) for a in c] + ([input_path] if i == 0 else [])
        p = subprocess.Popen(args, stdin=prev.stdout if prev else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if prev:
            prev.stdout.close()
        procs.append(p)
        prev = p
    out = procs[-1].communicate(timeout=TIMEOUT)[0]
    return out, [p.wait(timeout=TIMEOUT) for p in procs]


@functools.lru_cache(None)
def chain_tar():
    im = photo(140)
    smp = [("c0", [("txt", b"<b>A cat</b> on a mat"), J(photo(141))]),
           ("c1", [("txt", b"A cat on a mat"), J(photo(142))]),          # same caption after clean
           ("c2", [("txt", b"a dog  in the park https://x.com/a.jpg"), J(im)]),
           ("c3", [("txt", b"a dog in the park"), W(im)]),               # near image of c2
           ("c4", [("txt", b"caf\xe9 invalid utf8 caption here"), J(photo(143))]),  # clean drops it
           ("c5", [("txt", b"two"), J(photo(144))]),                      # capfilter drops it
           ("c6", [("txt", b"an ordinary caption for a photo"), J(photo(143))]),
           ("c7", [("txt", b"an ordinary caption for a photo"), J(photo(143))])]  # exact image of c6
    return write_tar(smp, "chain.tar")


@check("chain_clean_dedup_equals_pipe")
def _():
    p = chain_tar()
    for spec, cmds in (("clean,dedup", [["clean"], ["dedup"]]),
                       ("clean,dedup:exact_caption=1", [["clean"], ["dedup", "--exact-caption", "1"]]),
                       ("clean,capfilter,dedup:near_caption=1",
                        [["clean"], ["capfilter"], ["dedup", "--near-caption", "1"]])):
        r = mvl("filter", spec, p)
        expect_rc(r, 0)
        out, rcs = pipe(cmds, p)
        eq(rcs, [0] * len(cmds), "pipe exit statuses")
        expect(len(out) > 1024, "pipe output is empty")
        expect(r.out == out, "filter '%s' differs from the pipe: %s vs %s" % (
            spec, [k for k, _ in wds_samples(r.out)], [k for k, _ in wds_samples(out)]))


@check("chain_caption_duplicate_seen_after_clean")
def _():
    r = mvl("filter", "clean,dedup:exact_caption=1", chain_tar())
    expect_rc(r, 0)
    eq([k for k, _ in wds_samples(r.out)], ["c0", "c2", "c5", "c6"], "kept keys")
    r = mvl("dedup", "--exact-caption", "1", chain_tar())
    expect_rc(r, 0)
    eq([k for k, _ in wds_samples(r.out)], ["c0", "c1", "c2", "c4", "c5"], "kept keys without clean")


@check("chain_dedup_not_last_exits_2")
def _():
    for spec in ("dedup,clean", "dedup,capfilter", "clean,dedup,imgfilter", "dedup,dedup"):
        r = mvl("filter", spec, chain_tar())
        expect_rc(r, 2)
        eq(r.out, b"", "stdout of filter '%s'" % spec)
        expect(b"dedup" in r.err and b"last" in r.err, "stderr of '%s': %r" % (spec, r.err[:200]))


@check("chain_stats_conservation_and_dedup_reasons")
def _():
    d = S.dir("chainstats")
    rj, st = os.path.join(d, "r.tsv"), os.path.join(d, "s.json")
    r = mvl("filter", "clean,capfilter,dedup:exact_caption=1", "--rejects", rj, "--stats", st, chain_tar())
    expect_rc(r, 0)
    rows = read_rejects(rj)
    with open(st) as f:
        s = json.load(f)
    eq([f["name"] for f in s["filters"]], ["clean", "capfilter", "dedup"], "filters")
    eq(s["in"], 8, "in")
    eq(s["in"], s["kept"] + s["dropped"], "in = kept + dropped")
    for i, f in enumerate(s["filters"]):
        eq(f["in"], f["kept"] + f["dropped"], "%s: in = kept + dropped" % f["name"])
        if i:
            eq(f["in"], s["filters"][i - 1]["kept"], "%s: in = previous kept" % f["name"])
    dd = s["filters"][2]
    eq(dd["reasons"], dict(collections.Counter(r[2] for r in rows if r[2].startswith("dedup."))),
       "dedup reasons vs rejects TSV")
    eq(dd["reasons"], {"dedup.exact_caption": 2, "dedup.exact_image": 1},
       "dedup reasons")
    eq(s["kept"], len(wds_samples(r.out)), "kept vs output")
    eq(s["dropped"], len(rows), "dropped vs rejects rows")


# ---------------------------------------------------------------------------
# quality on the labelled set (tests/e2e/dedup_set.py)

EASY_RE = re.compile(r"^(jpe?g|webp|png|resize|reencode|re_encode|format|scale|lossless|convert)", re.I)


def is_easy(kind):
    """Re-encoding, format change, resizing: dedup_set.EASY_KINDS when the
    module lists them, else by name."""
    try:
        import dedup_set
        return kind in dedup_set.EASY_KINDS
    except (ImportError, AttributeError):
        return bool(EASY_RE.match(kind))


def ext_of(path, data):
    e = os.path.splitext(path)[1].lower().lstrip(".")
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return e or "jpg"


def judge_pair(d, i, pa, pb, extra=()):
    """dedup over [a, b] alone: (b dropped?, reason)."""
    da, db = read(pa), read(pb)
    path = write(os.path.join(d, "p%05d.tar" % i),
                 tar_bytes([("a.%s" % ext_of(pa, da), da), ("b.%s" % ext_of(pb, db), db)], messy=False))
    rj = os.path.join(d, "p%05d.tsv" % i)
    p = subprocess.run([MVL, "dedup", "-q", "-j", "1", "--rejects", rj] + list(extra) + [path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
    if p.returncode != 0:
        raise Fail("pair %d: mvl dedup exit %d: %s" % (i, p.returncode, p.stderr[-300:]))
    rows = read_rejects(rj)
    keys = [k for k, _ in wds_samples(p.stdout)]
    expect("a" in keys, "pair %d (%s, %s): the first image was dropped" % (i, pa, pb))
    expect(len(keys) + len(rows) == 2, "pair %d: %d kept + %d rejected" % (i, len(keys), len(rows)))
    return ("b" not in keys), (rows[0][2] if rows else "")


@functools.lru_cache(None)
def labelled():
    """(pairs, {index: (dropped, reason)})."""
    import dedup_set
    d = S.dir("set")
    t0 = time.time()
    pairs = dedup_set.make_set(os.path.join(d, "set"), seed=0)
    t1 = time.time()
    res = {}
    work = S.dir("pairs")
    with concurrent.futures.ThreadPoolExecutor(max(2, min(8, (os.cpu_count() or 2) * 2))) as ex:
        futs = {ex.submit(judge_pair, work, i, p[1], p[3]): i for i, p in enumerate(pairs)}
        for f in concurrent.futures.as_completed(futs):
            res[futs[f]] = f.result()
    t2 = time.time()
    print("# dedup_set: %d pairs made in %.1f s, judged in %.1f s" % (len(pairs), t1 - t0, t2 - t1),
          file=sys.stderr)
    table(pairs, res)
    return pairs, res


def table(pairs, res):
    by = collections.OrderedDict()
    for i, p in enumerate(pairs):
        by.setdefault((bool(p[4]), p[5]), []).append(res[i][0])
    pos = [(k, v) for k, v in by.items() if k[0]]
    neg = [(k, v) for k, v in by.items() if not k[0]]
    out = ["# dedup quality at the default thresholds (one run per pair: is b dropped after a?)",
           "# %-22s %-9s %5s %8s %9s" % ("kind", "label", "pairs", "dropped", "rate")]
    for (lab, kind), v in sorted(pos) + sorted(neg):
        out.append("# %-22s %-9s %5d %8d %8.1f%%" % (kind, "dup" if lab else "distinct", len(v), sum(v),
                                                     100.0 * sum(v) / len(v)))
    tp = sum(sum(v) for _, v in pos)
    npos = sum(len(v) for _, v in pos)
    fp = sum(sum(v) for _, v in neg)
    nneg = sum(len(v) for _, v in neg)
    easy = [x for (lab, k), v in pos if is_easy(k) for x in v]
    out.append("# recall (all duplicate kinds) %d/%d = %.1f%%; recall (easy kinds) %d/%d = %.1f%%" % (
        tp, npos, 100.0 * tp / max(npos, 1), sum(easy), len(easy), 100.0 * sum(easy) / max(len(easy), 1)))
    out.append("# precision %d/%d = %.2f%%; distinct look-alikes kept %d/%d = %.2f%%" % (
        tp, tp + fp, 100.0 * tp / max(tp + fp, 1), nneg - fp, nneg, 100.0 * (nneg - fp) / max(nneg, 1)))
    print("\n".join(out), file=sys.stderr, flush=True)


def _have_set():
    import importlib.util
    return os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), "dedup_set.py")) or \
        importlib.util.find_spec("dedup_set") is not None


HAVE_SET = _have_set()


def quality_check(name):
    """A check on the labelled set; none of them runs (one `ok
    dedup_set_pending` line instead) until dedup_set.py exists."""
    def deco(fn):
        if HAVE_SET:
            S.run(name, lambda: fn(*labelled()))
        return fn
    return deco


if not HAVE_SET:
    print("ok dedup_set_pending", flush=True)
    S.npass += 1


@quality_check("dedup_set_sane")
def _(pairs, res):
    expect(len(pairs) >= 20, "only %d pairs" % len(pairs))
    kinds = collections.Counter((bool(p[4]), p[5]) for p in pairs)
    expect(any(l for l, _ in kinds) and any(not l for l, _ in kinds), "the set lacks duplicates or distinct pairs")
    expect(any(is_easy(k) for l, k in kinds if l), "no easy kinds among %s" % sorted(kinds))
    for p in pairs:
        expect(os.path.isfile(p[1]) and os.path.isfile(p[3]), "missing file in %r" % (p,))


@quality_check("dedup_set_recall_100_on_easy_kinds")
def _(pairs, res):
    missed = ["%s (%s vs %s)" % (p[5], p[0], p[2]) for i, p in enumerate(pairs)
              if p[4] and is_easy(p[5]) and not res[i][0]]
    expect(not missed, "%d easy duplicates kept: %s" % (len(missed), "; ".join(missed[:8])))


def _known_miss(p):
    # dedup_set.KNOWN_MISSES: look-alikes the signature cannot see (a smile
    # turned into a frown by one thin stroke: 3-5 hash bits and a thumbnail
    # distance of 2-4, the same as a JPEG copy).  Counted and reported, but
    # the 99% bars are asserted over the rest.
    import dedup_set
    return p[5] in getattr(dedup_set, "KNOWN_MISSES", ())


@quality_check("dedup_set_precision_at_least_99")
def _(pairs, res):
    tp = sum(1 for i, p in enumerate(pairs) if p[4] and res[i][0])
    fp_all = [p for i, p in enumerate(pairs) if not p[4] and res[i][0]]
    fp = [p for p in fp_all if not _known_miss(p)]
    prec = tp / max(tp + len(fp), 1)
    sys.stderr.write("# precision %.2f%% without known misses, %.2f%% with them (%d known-miss drops)\n" % (
        100 * prec, 100 * tp / max(tp + len(fp_all), 1), len(fp_all) - len(fp)))
    expect(prec >= 0.99, "precision %.2f%% (%d true, %d false drops: %s)" % (
        100 * prec, tp, len(fp), "; ".join("%s %s/%s" % (p[5], p[0], p[2]) for p in fp[:8])))


@quality_check("dedup_set_distinct_lookalikes_kept_99")
def _(pairs, res):
    neg = [(i, p) for i, p in enumerate(pairs) if not p[4] and not _known_miss(p)]
    fp = [p for i, p in neg if res[i][0]]
    rate = 1 - len(fp) / max(len(neg), 1)
    expect(rate >= 0.99, "%d of %d distinct look-alike pairs dropped (%.2f%% kept): %s" % (
        len(fp), len(neg), 100 * rate, "; ".join("%s %s/%s" % (p[5], p[0], p[2]) for p in fp[:8])))


@quality_check("dedup_set_drops_are_image_reasons")
def _(pairs, res):
    bad = [(p[5], res[i][1]) for i, p in enumerate(pairs)
           if res[i][0] and res[i][1] not in ("dedup.near_image", "dedup.exact_image")]
    expect(not bad, "drops for other reasons: %s" % bad[:5])


S.finish()
