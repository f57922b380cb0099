"""End-to-end tests of `mvl ingest` (issue 2): folders, JSONL, img2dataset
output and shards in; validated, normalized samples out.  Run by
tests/run.sh with MVL=path to the binary."""
import sys
sys.dont_write_bytecode = True

import functools
import io
import json
import os
import re

from mvltest import (
    Fail, Suite, decode, encode, eq, expect, expect_rc, expect_summary, jpeg, mvl, near,
    pil_image, png, png_header_bomb, read, read_rejects, region_mean, samples_to_members,
    smart_resize, summary, tar_bytes, tmp_leftovers, wds_samples, webp, write, zstd_compress,
    GZIP_MAGIC,
)

S = Suite("ingest")
check = S.check

EXT_OF = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
NAME_OF = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp"}
HEX32 = re.compile(r"[0-9a-f]{32}")


def write_tar(d, name, samples, **kw):
    return write(os.path.join(d, name), tar_bytes(samples_to_members(samples), **kw))


def out_samples(r):
    """mvl's output as {key: {ext: bytes}} plus the key order."""
    smp = wds_samples(r.out)
    keys = [k for k, _ in smp]
    expect(len(set(keys)) == len(keys), "duplicate keys in output: %s" % keys)
    return {k: dict(ms) for k, ms in smp}, keys


def image_of(ms):
    """The one image member of an output sample: (ext, bytes)."""
    imgs = [(e, b) for e, b in ms.items() if e in ("jpg", "jpeg", "png", "webp")]
    eq(len(imgs), 1, "image members in %s" % sorted(ms))
    return imgs[0]


def meta_of(ms):
    expect("json" in ms, "no json member (members %s)" % sorted(ms))
    j = json.loads(ms["json"].decode("utf-8"))
    expect(isinstance(j, dict), "KEY.json is not an object")
    return j


def check_normalized(key, ms):
    """The invariants of every kept sample: one image named by its real
    format, KEY.json width/height/format describing it, a 32-hex source
    hash, valid UTF-8 caption."""
    ext, data = image_of(ms)
    im = decode(data)
    eq(ext, EXT_OF.get(im.format), "%s: image extension vs real format %s" % (key, im.format))
    j = meta_of(ms)
    eq((j.get("width"), j.get("height")), im.size, "%s: json width/height vs image" % key)
    eq(j.get("format"), NAME_OF[im.format], "%s: json format" % key)
    expect(isinstance(j.get("source_xxh128"), str) and HEX32.fullmatch(j["source_xxh128"]),
           "%s: source_xxh128 %r" % (key, j.get("source_xxh128")))
    for f in ("original_width", "original_height"):
        expect(isinstance(j.get(f), int) and j[f] > 0, "%s: %s %r" % (key, f, j.get(f)))
    expect("source" in j, "%s: no source in json" % key)
    if "txt" in ms:
        ms["txt"].decode("utf-8")
    return im, j


def ingest(*args, **kw):
    return mvl("ingest", *args, **kw)


# ---------------------------------------------------------------------------
# the command line

@check("ingest_help_lists_options_and_defaults")
def _():
    r = mvl("help", "ingest")
    expect_rc(r, 0)
    t = r.out.decode()
    expect(t.startswith("usage: mvl ingest"), "starts with %r" % t[:40])
    for opt in ("--rejects", "-o", "--resize", "--max-side", "--min-pixels", "--resize-max-pixels",
                "--max-pixels", "--encode", "--quality", "--background", "--validate", "--utf8",
                "--max-caption-bytes", "--allow-no-image", "--allow-no-caption", "-j"):
        expect(opt in t, "usage lacks %s" % opt)
    for dflt in ("512", "3136", "1003520", "178956970", "90"):
        expect("(default: %s)" % dflt in t, "usage lacks (default: %s)" % dflt)
    eq(mvl("ingest", "--help").out, r.out, "mvl ingest --help vs mvl help ingest")


@check("ingest_bad_option_values_exit_2")
def _():
    for args in (("--resize", "huge"), ("--encode", "gif"), ("--validate", "maybe"),
                 ("--utf8", "ignore"), ("--background", "xyz"), ("--max-side", "big"),
                 ("--frobnicate",)):
        r = ingest(*args, input=b"")
        expect_rc(r, 2)
        expect(r.err.strip(), "no message for %s" % (args,))


# ---------------------------------------------------------------------------
# a folder of image + caption files

@functools.lru_cache(None)
def folder_fixture():
    d = S.dir("folder")
    root = os.path.join(d, "data")
    f = {
        "a/0001.jpg": jpeg(64, 48, 1), "a/0001.txt": b"first caption",
        "a/0001.json": b'{"url": "http://example.com/1.jpg", "score": 0.25}',
        "a/0002.png": png(30, 20, 2), "a/0002.txt": "second \u00e9".encode(),
        "b/x.webp": webp(24, 16, 3), "b/x.txt": b"third",
        "b/Y.JPG": jpeg(20, 20, 4), "b/Y.txt": b"upper-case extension",
        "c/z.txt": b"a caption without an image",
        "r1.jpg": jpeg(16, 12, 5), "r1.txt": b"root level",
        # skipped: dotfiles, img2dataset stats, parquet
        ".hidden.jpg": jpeg(8, 8, 6), ".hidden.txt": b"hidden",
        "a/.DS_Store": b"\0\0\0\1Bud1", "junk_stats.json": b'{"successes": 9}',
        "meta.parquet": b"PAR1 not really",
    }
    for name, data in f.items():
        write(os.path.join(root, name), data)
    tsv = os.path.join(d, "rejects.tsv")
    r = ingest("--rejects", tsv, root)
    return root, f, r, tsv


@check("folder_exit_0_and_summary")
def _():
    root, f, r, tsv = folder_fixture()
    expect_rc(r, 0)
    expect_summary(r, "ingest", 6, 5, {"missing_image": 1})


@check("folder_keys_sorted_relative_paths")
def _():
    root, f, r, tsv = folder_fixture()
    out, keys = out_samples(r)
    eq(keys, ["a/0001", "a/0002", "b/Y", "b/x", "r1"], "keys")


@check("folder_members_named_by_real_format")
def _():
    root, f, r, tsv = folder_fixture()
    out, keys = out_samples(r)
    got = {k: sorted(ms) for k, ms in out.items()}
    eq(got, {"a/0001": ["jpg", "json", "txt"], "a/0002": ["json", "png", "txt"],
             "b/Y": ["jpg", "json", "txt"], "b/x": ["json", "txt", "webp"],
             "r1": ["jpg", "json", "txt"]}, "members")


@check("folder_images_kept_byte_identical")
def _():
    root, f, r, tsv = folder_fixture()
    out, keys = out_samples(r)
    for k, src in (("a/0001", "a/0001.jpg"), ("a/0002", "a/0002.png"), ("b/x", "b/x.webp"),
                   ("b/Y", "b/Y.JPG"), ("r1", "r1.jpg")):
        expect(image_of(out[k])[1] == f[src], "%s: image bytes changed" % k)


@check("folder_captions_exact")
def _():
    root, f, r, tsv = folder_fixture()
    out, keys = out_samples(r)
    for k in keys:
        src = "b/Y.txt" if k == "b/Y" else k + ".txt"
        eq(out[k].get("txt"), f[src], "%s caption" % k)


@check("folder_json_fields")
def _():
    root, f, r, tsv = folder_fixture()
    out, keys = out_samples(r)
    sizes = {"a/0001": (64, 48, "jpeg"), "a/0002": (30, 20, "png"), "b/x": (24, 16, "webp"),
             "b/Y": (20, 20, "jpeg"), "r1": (16, 12, "jpeg")}
    for k in keys:
        im, j = check_normalized(k, out[k])
        w, h, fmt = sizes[k]
        eq((j["width"], j["height"], j["original_width"], j["original_height"], j["format"]),
           (w, h, w, h, fmt), "%s (width, height, original_width, original_height, format)" % k)
        eq(j["source"], root, "%s source" % k)
        expect("orientation" not in j, "%s: orientation recorded without EXIF" % k)
    j = meta_of(out["a/0001"])
    eq((j.get("url"), j.get("score")), ("http://example.com/1.jpg", 0.25), "fields kept from a/0001.json")
    hashes = [meta_of(out[k])["source_xxh128"] for k in keys]
    eq(len(set(hashes)), len(hashes), "distinct images with equal source_xxh128")


@check("folder_rejects_row")
def _():
    root, f, r, tsv = folder_fixture()
    eq([row[:3] for row in read_rejects(tsv)], [("c/z", root, "missing_image")], "rejects rows")
    eq(tmp_leftovers(os.path.dirname(tsv)), [], "temporary files left")


# ---------------------------------------------------------------------------
# JSONL

@functools.lru_cache(None)
def jsonl_fixture():
    d = S.dir("jsonl")
    imgs = {"a.jpg": jpeg(40, 30, 1), "b.png": png(20, 22, 2), "c.webp": webp(18, 12, 3),
            "d.jpg": jpeg(10, 10, 4), "e.jpg": jpeg(12, 14, 5)}
    for n, b in imgs.items():
        write(os.path.join(d, "sub", "imgs", n), b)
    lines = [
        {"image": "imgs/a.jpg", "caption": "a photo", "url": "http://e.com/a", "score": 0.5},
        {"image": "imgs/b.png", "caption": "b caption", "key": "mykey"},
        {"image": "imgs/c.webp", "caption": "c caption", "id": "id7"},
        None,  # not JSON
        {"image": "imgs/missing.jpg", "caption": "gone"},
        {"image": "imgs/d.jpg"},
        {"image": "imgs/e.jpg", "caption": "caf\u00e9 \u2615"},
    ]
    text = "".join(("this is { not json\n" if l is None else json.dumps(l) + "\n") for l in lines)
    write(os.path.join(d, "sub", "list.jsonl"), text.encode())
    tsv = os.path.join(d, "r.tsv")
    r = ingest("--rejects", tsv, "sub/list.jsonl", cwd=d)
    return d, imgs, r, tsv


@check("jsonl_exit_0_and_summary")
def _():
    d, imgs, r, tsv = jsonl_fixture()
    expect_rc(r, 0)
    expect_summary(r, "ingest", 7, 4, {"bad_json": 1, "missing_file": 1, "missing_caption": 1})


@check("jsonl_keys_line_numbers_key_and_id")
def _():
    d, imgs, r, tsv = jsonl_fixture()
    out, keys = out_samples(r)
    eq(keys, ["000000000", "mykey", "id7", "000000006"], "keys")


@check("jsonl_images_relative_to_jsonl_folder")
def _():
    d, imgs, r, tsv = jsonl_fixture()
    out, keys = out_samples(r)
    for k, n in (("000000000", "a.jpg"), ("mykey", "b.png"), ("id7", "c.webp"), ("000000006", "e.jpg")):
        ext, data = image_of(out[k])
        eq(ext, n.split(".")[1], "%s image extension" % k)
        expect(data == imgs[n], "%s image bytes differ from %s" % (k, n))


@check("jsonl_captions_and_json_fields")
def _():
    d, imgs, r, tsv = jsonl_fixture()
    out, keys = out_samples(r)
    eq([out[k]["txt"].decode() for k in keys],
       ["a photo", "b caption", "c caption", "caf\u00e9 \u2615"], "captions")
    for k in keys:
        im, j = check_normalized(k, out[k])
        eq(j["source"], "sub/list.jsonl", "%s source" % k)
    j = meta_of(out["000000000"])
    eq((j.get("url"), j.get("score")), ("http://e.com/a", 0.5), "fields kept from line 0")
    eq((j["width"], j["height"], j["format"]), (40, 30, "jpeg"), "line 0 image")


@check("jsonl_rejects_rows")
def _():
    d, imgs, r, tsv = jsonl_fixture()
    eq([row[:3] for row in read_rejects(tsv)],
       [("000000003", "sub/list.jsonl", "bad_json"), ("000000004", "sub/list.jsonl", "missing_file"),
        ("000000005", "sub/list.jsonl", "missing_caption")], "rejects rows")


# ---------------------------------------------------------------------------
# img2dataset output

def i2d_sample(key, w, h, seed, caption):
    meta = {"url": "http://example.com/%s.jpg" % key, "key": key, "status": "success",
            "error_message": None, "width": w, "height": h, "original_width": w * 10,
            "original_height": h * 10, "exif": "{}", "sha256": "%064x" % seed}
    return (key, (("jpg", jpeg(w, h, seed)), ("txt", caption.encode()),
                  ("json", json.dumps(meta).encode())))


@functools.lru_cache(None)
def i2d_fixture():
    d = S.dir("i2d")
    out = os.path.join(d, "out")
    s0 = (i2d_sample("000000000", 64, 48, 1, "first"), i2d_sample("000000002", 32, 32, 2, "second"))
    s1 = (i2d_sample("000010000", 40, 20, 3, "third"), i2d_sample("000010001", 20, 40, 4, "fourth"))
    write_tar(out, "00000.tar", s0)
    write_tar(out, "00001.tar", s1)
    write(os.path.join(out, "00000_stats.json"), b'{"count": 3, "successes": 2, "failed_to_download": 1}')
    write(os.path.join(out, "00001_stats.json"), b'{"count": 2, "successes": 2}')
    write(os.path.join(out, "00000.parquet"), b"PAR1 junk")
    r = ingest("-q", out)
    return out, s0 + s1, r


@check("img2dataset_folder_read_in_order")
def _():
    out, smp, r = i2d_fixture()
    expect_rc(r, 0)
    o, keys = out_samples(r)
    eq(keys, [k for k, _ in smp], "keys")
    for k, ms in smp:
        eq(image_of(o[k])[1], dict(ms)["jpg"], "%s jpg bytes" % k)
        eq(o[k]["txt"], dict(ms)["txt"], "%s caption" % k)


@check("img2dataset_quiet_no_note_when_counts_match")
def _():
    out, smp, r = i2d_fixture()
    eq(r.errtext, "", "stderr with -q and matching _stats.json")


@check("img2dataset_json_fields_kept_and_extended")
def _():
    out, smp, r = i2d_fixture()
    o, keys = out_samples(r)
    for k, ms in smp:
        src = json.loads(dict(ms)["json"])
        im, j = check_normalized(k, o[k])
        for f in ("url", "status", "sha256", "key"):
            eq(j.get(f), src[f], "%s field %s" % (k, f))
        eq((j["width"], j["height"]), (src["width"], src["height"]), "%s width/height" % k)
        eq((j["original_width"], j["original_height"]),
           (src["original_width"], src["original_height"]), "%s original size kept" % k)


@check("img2dataset_stats_mismatch_note")
def _():
    d = S.dir("i2dbad")
    out = os.path.join(d, "out")
    write_tar(out, "00000.tar", (i2d_sample("000000000", 16, 16, 1, "a"), i2d_sample("000000001", 16, 16, 2, "b")))
    write(os.path.join(out, "00000_stats.json"), b'{"count": 5, "successes": 3}')
    r = ingest("-q", out)
    expect_rc(r, 0)
    notes = [l for l in r.errtext.splitlines() if l.strip()]
    expect(notes, "no note about 3 successes vs 2 samples read")
    expect(any(("success" in l or "stats" in l) and "3" in l for l in notes),
           "note does not mention the stats count: %r" % notes)
    eq(len(wds_samples(r.out)), 2, "samples written")


# ---------------------------------------------------------------------------
# shards in, rejections

def ok(key, seed, caption=b"a fine caption"):
    return (key, (("jpg", jpeg(32, 24, seed)), ("txt", caption)))


@functools.lru_cache(None)
def rejects_fixture():
    half_jpeg = jpeg(128, 96, 9)
    half_png = png(64, 48, 9)
    cases = [
        # (sample, expected reason or None when kept)
        (ok("ok1", 1), None),
        (("r_missing_image", (("txt", b"no image here"),)), "missing_image"),
        (("r_multi", (("jpg", jpeg(16, 16, 2)), ("png", png(16, 16, 3)), ("txt", b"two images"))),
         "multiple_images"),
        (("r_text_as_jpg", (("jpg", b"hello, this is text and not an image\n" * 3), ("txt", b"x"))),
         "not_an_image"),
        (("r_zero_jpg", (("jpg", b""), ("txt", b"empty file"))), "not_an_image"),
        (("r_trunc_jpg", (("jpg", half_jpeg[:len(half_jpeg) // 2]), ("txt", b"cut"))), "corrupt_image"),
        (("r_trunc_png", (("png", half_png[:len(half_png) // 2]), ("txt", b"cut"))), "corrupt_image"),
        (("r_bomb", (("png", png_header_bomb()), ("txt", b"bomb"))), "too_large"),
        (("r_no_caption", (("jpg", jpeg(16, 16, 4)),)), "missing_caption"),
        (ok("r_empty_caption", 5, b""), "empty_caption"),
        (ok("r_blank_caption", 6, b" \n\t \r\n"), "empty_caption"),
        (ok("r_bad_utf8", 7, b"caf\xe9 au lait"), "invalid_utf8"),
        (ok("r_surrogate", 8, b"\xed\xa0\x80abc"), "invalid_utf8"),
        (ok("r_overlong", 10, b"\xc0\xafabc"), "invalid_utf8"),
        (ok("r_long_caption", 11, b"y" * 101), "caption_too_long"),
        (ok("ok_caption_100", 12, b"z" * 100), None),
        (("ok_png_as_jpg", (("jpg", png(24, 18, 13)), ("txt", b"png bytes named jpg"))), None),
        (ok("ok2", 14, "\u00fcber caption".encode()), None),
    ]
    d = S.dir("rejects")
    p = write_tar(d, "in.tar", [c[0] for c in cases])
    tsv = os.path.join(d, "r.tsv")
    r = ingest("--rejects", tsv, "--max-caption-bytes", "100", p)
    rows = read_rejects(tsv) if os.path.exists(tsv) else None
    return d, p, cases, r, rows


@check("shard_ingest_exit_0")
def _():
    expect_rc(rejects_fixture()[3], 0)


@check("shard_ingest_kept_exactly")
def _():
    d, p, cases, r, rows = rejects_fixture()
    out, keys = out_samples(r)
    eq(keys, [c[0][0] for c in cases if c[1] is None], "kept keys")
    for k in keys:
        im, j = check_normalized(k, out[k])
        eq(j["source"], p, "%s source" % k)
    src = {c[0][0]: dict(c[0][1]) for c in cases}
    eq(image_of(out["ok1"])[1], src["ok1"]["jpg"], "ok1 image bytes")
    eq(out["ok2"]["txt"], src["ok2"]["txt"], "ok2 caption")


@check("shard_ingest_summary_counts")
def _():
    d, p, cases, r, rows = rejects_fixture()
    reasons = {}
    for _, why in cases:
        if why:
            reasons[why] = reasons.get(why, 0) + 1
    kept = sum(1 for _, why in cases if why is None)
    expect_summary(r, "ingest", len(cases), kept, reasons)


def reject_case(key):
    d, p, cases, r, rows = rejects_fixture()
    expect(rows is not None, "--rejects file not written")
    want = [why for (k, _), why in cases if k == key][0]
    got = [row for row in rows if row[0] == key]
    eq([row[1:3] for row in got], [(p, want)], "rejects rows for %s (source, reason)" % key)
    expect(key not in out_samples(r)[0], "%s was written" % key)


REJECT_CASES = [
    ("r_missing_image", "missing_image"), ("r_multi", "multiple_images"),
    ("r_text_as_jpg", "not_an_image"), ("r_zero_jpg", "not_an_image"),
    ("r_trunc_jpg", "corrupt_image"), ("r_trunc_png", "corrupt_image"), ("r_bomb", "too_large"),
    ("r_no_caption", "missing_caption"), ("r_empty_caption", "empty_caption"),
    ("r_blank_caption", "empty_caption"), ("r_bad_utf8", "invalid_utf8"),
    ("r_surrogate", "invalid_utf8"), ("r_overlong", "invalid_utf8"),
    ("r_long_caption", "caption_too_long"),
]
for _key, _why in REJECT_CASES:
    _n = _key[2:]
    S.run("reject_%s" % _n if _n == _why else "reject_%s_is_%s" % (_n, _why),
          functools.partial(reject_case, _key))


@check("caption_at_byte_limit_kept")
def _():
    d, p, cases, r, rows = rejects_fixture()
    out, keys = out_samples(r)
    expect("ok_caption_100" in out, "100-byte caption with --max-caption-bytes 100 rejected")
    eq(out["ok_caption_100"]["txt"], b"z" * 100, "caption")


@check("png_named_jpg_kept_as_png")
def _():
    d, p, cases, r, rows = rejects_fixture()
    out, keys = out_samples(r)
    src = [dict(ms)["jpg"] for (k, ms), _ in cases if k == "ok_png_as_jpg"][0]
    ms = out.get("ok_png_as_jpg", {})
    eq(sorted(ms), ["json", "png", "txt"], "members")
    expect(ms["png"] == src, "PNG bytes were changed")
    eq(meta_of(ms)["format"], "png", "json format")


@check("conservation_rejects_list_missing_keys")
def _():
    d, p, cases, r, rows = rejects_fixture()
    s = summary(r)
    out, keys = out_samples(r)
    eq(s["in"], s["kept"] + s["rejected"], "in = kept + rejected")
    eq(s["kept"], len(keys), "kept vs samples written")
    missing = sorted(set(c[0][0] for c in cases) - set(keys))
    eq(sorted(row[0] for row in rows), missing, "rejected keys vs keys missing from the output")


@check("too_large_rejected_fast_without_allocating")
def _():
    d = S.dir("bomb")
    p = write_tar(d, "bomb.tar", [("bomb", (("png", png_header_bomb()), ("txt", b"boom")))])
    tsv = os.path.join(d, "r.tsv")
    r = ingest("--rejects", tsv, p, rusage=True)
    expect_rc(r, 0)
    eq([row[2] for row in read_rejects(tsv)], ["too_large"], "reasons")
    expect(r.elapsed < 5, "took %.1f s" % r.elapsed)
    expect(r.maxrss_kb < 1024 * 1024, "peak memory %d MB" % (r.maxrss_kb // 1024))


@check("max_pixels_option_bounds_images")
def _():
    d = S.dir("maxpx")
    p = write_tar(d, "in.tar", [ok("big", 1), ("small", (("png", png(32, 31, 2)), ("txt", b"s")))])
    # big is 32x24 = 768 px; small 32x31 = 992
    tsv = os.path.join(d, "r.tsv")
    r = ingest("--rejects", tsv, "--max-pixels", "767", p)
    expect_rc(r, 0)
    eq([(row[0], row[2]) for row in read_rejects(tsv)], [("big", "too_large"), ("small", "too_large")],
       "rows at 767")
    r = ingest("--rejects", tsv, "--max-pixels", "768", p)
    eq([(row[0], row[2]) for row in read_rejects(tsv)], [("small", "too_large")], "rows at 768")
    eq(out_samples(r)[1], ["big"], "kept at 768")


@check("validate_header_trusts_readable_header")
def _():
    d = S.dir("vhdr")
    j = jpeg(128, 96, 9)
    cut = j[:len(j) // 2]
    p = write_tar(d, "in.tar", [("cut", (("jpg", cut), ("txt", b"cut")))])
    r = ingest("--validate", "header", p)
    expect_rc(r, 0)
    out, keys = out_samples(r)
    eq(keys, ["cut"], "kept")
    expect(out["cut"]["jpg"] == cut, "bytes changed")
    r = ingest("--validate", "decode", p)
    eq(out_samples(r)[1], [], "kept with --validate decode")


@check("utf8_repair_keeps_sample_with_replacement_char")
def _():
    d = S.dir("repair")
    p = write_tar(d, "in.tar", [ok("bad", 1, b"caf\xe9 au lait"), ok("good", 2, b"fine")])
    r = ingest("--utf8", "repair", p)
    expect_rc(r, 0)
    out, keys = out_samples(r)
    eq(keys, ["bad", "good"], "kept")
    eq(out["bad"]["txt"].decode("utf-8"), "caf\ufffd au lait", "repaired caption")
    eq(out["good"]["txt"], b"fine", "untouched caption")
    expect_summary(r, "ingest", 2, 2)


@check("allow_no_image_and_no_caption")
def _():
    d = S.dir("allow")
    p = write_tar(d, "in.tar", [("t", (("txt", b"text only"),)), ("i", (("jpg", jpeg(16, 16, 1)),))])
    r = ingest(p)
    expect_summary(r, "ingest", 2, 0, {"missing_image": 1, "missing_caption": 1})
    r = ingest("--allow-no-image", p)
    out, keys = out_samples(r)
    eq(keys, ["t"], "kept with --allow-no-image")
    eq(out["t"]["txt"], b"text only", "caption")
    r = ingest("--allow-no-caption", p)
    out, keys = out_samples(r)
    eq(keys, ["i"], "kept with --allow-no-caption")
    check_normalized("i", out["i"])
    r = ingest("--allow-no-caption", "--allow-no-image", p)
    eq(out_samples(r)[1], ["t", "i"], "kept with both")


# ---------------------------------------------------------------------------
# resizing

def one_run(label, samples, *args):
    d = S.dir(label)
    p = write_tar(d, "in.tar", samples)
    r = ingest(*args, p)
    expect_rc(r, 0)
    return r, out_samples(r)[0]


@functools.lru_cache(None)
def maxside_run():
    m1 = jpeg(640, 480, 1)
    smp = [("m1", (("jpg", m1), ("txt", b"landscape"))),
           ("m2", (("png", png(300, 600, 2)), ("txt", b"portrait png"))),
           ("m3", (("jpg", jpeg(100, 80, 3)), ("txt", b"small"))),
           ("m4", (("jpg", jpeg(1000, 333, 4)), ("txt", b"wide"))),
           ("m5", (("jpg", m1), ("txt", b"same bytes as m1")))]
    return smp, one_run("maxside", smp, "--resize", "max-side", "--max-side", "224")


@check("max_side_landscape_exact")
def _():
    smp, (r, out) = maxside_run()
    im, j = check_normalized("m1", out["m1"])
    eq((im.format, im.size), ("JPEG", (224, 168)), "m1 format and size")
    eq((j["original_width"], j["original_height"], j["format"]), (640, 480, "jpeg"), "m1 json")


@check("max_side_png_reencoded_as_jpeg")
def _():
    smp, (r, out) = maxside_run()
    eq(sorted(out["m2"]), ["jpg", "json", "txt"], "m2 members")
    im, j = check_normalized("m2", out["m2"])
    eq(im.size, (112, 224), "m2 size")
    eq((j["original_width"], j["original_height"]), (300, 600), "m2 original size")


@check("max_side_never_upscales")
def _():
    smp, (r, out) = maxside_run()
    im, j = check_normalized("m3", out["m3"])
    eq(im.size, (100, 80), "m3 size")
    expect(out["m3"]["jpg"] == dict(smp[2][1])["jpg"], "m3 bytes changed although no resize was needed")


@check("max_side_keeps_aspect_within_rounding")
def _():
    smp, (r, out) = maxside_run()
    im, j = check_normalized("m4", out["m4"])
    w, h = im.size
    eq(w, 224, "m4 width")
    expect(abs(h - 333 * 224 / 1000) < 1, "m4 height %d, expected about %.2f" % (h, 333 * 224 / 1000))


@check("source_hash_follows_source_bytes")
def _():
    smp, (r, out) = maxside_run()
    h = {k: meta_of(out[k])["source_xxh128"] for k in out}
    eq(h["m1"], h["m5"], "equal source bytes, source_xxh128")
    eq(len({h["m1"], h["m2"], h["m3"], h["m4"]}), 4, "distinct sources, distinct hashes")
    eq(out["m1"]["jpg"], out["m5"]["jpg"], "equal inputs, equal outputs")


@check("max_side_default_512")
def _():
    r, out = one_run("maxside512", [("a", (("jpg", jpeg(640, 480, 1)), ("txt", b"x")))],
                     "--resize", "max-side")
    eq(decode(image_of(out["a"])[1]).size, (512, 384), "size with the default --max-side")


SMART = [("sm_640x480", 640, 480), ("sm_tie_98x70", 98, 70), ("sm_min_40x30", 40, 30),
         ("sm_max_1600x1200", 1600, 1200), ("sm_tiny_28x28", 28, 28), ("sm_tall_90x700", 90, 700)]


@functools.lru_cache(None)
def smart_run():
    smp = [(k, (("jpg" if i % 2 == 0 else "png", (jpeg if i % 2 == 0 else png)(w, h, i)),
                ("txt", k.encode()))) for i, (k, w, h) in enumerate(SMART)]
    smp.append(("sm_conforming", (("jpg", jpeg(84, 56, 9)), ("txt", b"already multiples"))))
    return smp, one_run("smart", smp, "--resize", "smart")


def smart_case(key, w, h):
    smp, (r, out) = smart_run()
    eh, ew = smart_resize(h, w)
    im, j = check_normalized(key, out[key])
    eq(im.size, (ew, eh), "%s size (reference smart_resize of %dx%d)" % (key, w, h))
    eq((im.size[0] % 28, im.size[1] % 28), (0, 0), "%s sides mod 28" % key)
    eq((j["original_width"], j["original_height"]), (w, h), "%s original size" % key)


for _k, _w, _h in SMART:
    S.run("smart_resize_%s" % _k[3:], functools.partial(smart_case, _k, _w, _h))


@check("smart_resize_640x480_is_644x476")
def _():
    smp, (r, out) = smart_run()
    eq(decode(image_of(out["sm_640x480"])[1]).size, (644, 476), "size")


@check("smart_resize_keeps_conforming_image_bytes")
def _():
    smp, (r, out) = smart_run()
    eq(image_of(out["sm_conforming"])[1], dict(smp[-1][1])["jpg"], "84x56 JPEG bytes")


@check("smart_resize_custom_bounds")
def _():
    r, out = one_run("smartb", [("a", (("jpg", jpeg(640, 480, 1)), ("txt", b"x"))),
                                ("b", (("jpg", jpeg(30, 20, 2)), ("txt", b"y")))],
                     "--resize", "smart", "--min-pixels", "20000", "--resize-max-pixels", "50176")
    for k, w, h in (("a", 640, 480), ("b", 30, 20)):
        eh, ew = smart_resize(h, w, min_pixels=20000, max_pixels=50176)
        eq(decode(image_of(out[k])[1]).size, (ew, eh), "%s size" % k)


# ---------------------------------------------------------------------------
# EXIF orientation

def exif_jpeg(w, h, orientation, seed=0):
    from PIL import Image
    import numpy as np
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (220, 30, 30)     # left half red
    a[:, w // 2:] = (30, 30, 220)      # right half blue
    a[: h // 4, :] = (30, 200, 30)     # top band green
    ex = Image.Exif()
    ex[274] = orientation
    return encode(Image.fromarray(a), "JPEG", quality=95, exif=ex.tobytes())


def expected_oriented(data):
    from PIL import ImageOps
    return ImageOps.exif_transpose(decode(data)).convert("RGB")


def boxes(w, h):
    """Interior sample boxes on a 4x4 grid."""
    out = []
    for gy in range(4):
        for gx in range(4):
            x0, y0 = gx * w // 4, gy * h // 4
            out.append((x0 + w // 16, y0 + h // 16, x0 + 3 * w // 16, y0 + 3 * h // 16))
    return out


@functools.lru_cache(None)
def exif_run():
    smp = [("o6", (("jpg", exif_jpeg(128, 64, 6)), ("txt", b"rotated"))),
           ("o3", (("jpg", exif_jpeg(128, 64, 3)), ("txt", b"upside down"))),
           ("o8", (("jpg", exif_jpeg(128, 64, 8)), ("txt", b"rotated back")))]
    return smp, one_run("exif", smp)


def exif_case(key, orientation):
    smp, (r, out) = exif_run()
    src = dict(dict(smp)[key])["jpg"]
    want = expected_oriented(src)
    im, j = check_normalized(key, out[key])
    eq(im.size, want.size, "%s size after orientation %d" % (key, orientation))
    eq(j.get("orientation"), orientation, "%s json orientation" % key)
    for b in boxes(*want.size):
        near(region_mean(im, b), region_mean(want, b), 25, "%s pixels in box %s" % (key, b))
    o = im.getexif().get(274)
    expect(o in (None, 1), "%s output still says EXIF orientation %s" % (key, o))


for _k, _o in (("o6", 6), ("o3", 3), ("o8", 8)):
    S.run("exif_orientation_%d_applied" % _o, functools.partial(exif_case, _k, _o))


@check("exif_orientation_then_max_side")
def _():
    r, out = one_run("exifmax", [("o6", (("jpg", exif_jpeg(128, 64, 6)), ("txt", b"x")))],
                     "--resize", "max-side", "--max-side", "16")
    im, j = check_normalized("o6", out["o6"])
    eq(im.size, (8, 16), "size")


# ---------------------------------------------------------------------------
# alpha, colour modes

def rgba_thirds(fmt, **kw):
    from PIL import Image
    import numpy as np
    a = np.zeros((32, 96, 4), np.uint8)
    a[:, :32] = (0, 255, 0, 0)        # fully transparent (green underneath)
    a[:, 32:64] = (255, 0, 0, 255)    # opaque red
    a[:, 64:] = (0, 0, 255, 128)      # half-transparent blue
    return encode(Image.fromarray(a, "RGBA"), fmt, **kw)


THIRDS = [(6, 6, 26, 26), (38, 6, 58, 26), (70, 6, 90, 26)]


@functools.lru_cache(None)
def alpha_run(background):
    from PIL import Image
    pal = Image.new("P", (96, 32), 0)
    pal.putpalette([0, 255, 0, 255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    pal.paste(1, (32, 0, 64, 32))
    pal.paste(2, (64, 0, 96, 32))
    smp = [("png_rgba", (("png", rgba_thirds("PNG")), ("txt", b"a"))),
           ("webp_rgba", (("webp", rgba_thirds("WEBP", lossless=True)), ("txt", b"b"))),
           ("png_trns", (("png", encode(pal, "PNG", transparency=0)), ("txt", b"c")))]
    args = ["--encode", "jpeg", "--quality", "95"] + (["--background", background] if background else [])
    return one_run("alpha" + (background or ""), smp, *args)


def alpha_case(key, background, want):
    r, out = alpha_run(background)
    eq(image_of(out[key])[0], "jpg", "%s output extension" % key)
    im, j = check_normalized(key, out[key])
    eq(im.size, (96, 32), "%s size" % key)
    for box, w in zip(THIRDS, want):
        if w is not None:
            near(region_mean(im, box), w, 12, "%s region %s" % (key, box))


WHITE_BG = [(255, 255, 255), (255, 0, 0), (127, 127, 255)]
BLACK_BG = [(0, 0, 0), (255, 0, 0), (0, 0, 128)]
S.run("alpha_png_composited_on_white", functools.partial(alpha_case, "png_rgba", None, WHITE_BG))
S.run("alpha_webp_composited_on_white", functools.partial(alpha_case, "webp_rgba", None, WHITE_BG))
S.run("alpha_palette_trns_composited_on_white",
      functools.partial(alpha_case, "png_trns", None, [(255, 255, 255), (255, 0, 0), (0, 0, 255)]))
S.run("alpha_png_background_option", functools.partial(alpha_case, "png_rgba", "000000", BLACK_BG))


@functools.lru_cache(None)
def modes_run():
    from PIL import Image
    import numpy as np
    cmyk = Image.new("CMYK", (64, 48), (0, 255, 255, 0))          # red
    cmyk.paste((255, 0, 0, 0), (32, 0, 64, 48))                    # cyan
    gray = Image.new("L", (64, 48), 100)
    gray.paste(200, (32, 0, 64, 48))
    pal = Image.new("P", (64, 48), 0)
    pal.putpalette([0, 200, 0, 0, 0, 200] + [0] * (256 * 3 - 6))
    pal.paste(1, (32, 0, 64, 48))
    a16 = np.full((48, 64), 0x20FF, np.uint16)
    a16[:, 32:] = 0xE010
    i16 = Image.fromarray(a16, "I;16")
    la = Image.new("LA", (64, 48), (60, 255))
    la.paste((180, 255), (32, 0, 64, 48))
    smp = [("cmyk_jpeg", (("jpg", encode(cmyk, "JPEG", quality=95)), ("txt", b"cmyk"))),
           ("gray_jpeg", (("jpg", encode(gray, "JPEG", quality=95)), ("txt", b"gray"))),
           ("gray_png", (("png", encode(gray, "PNG")), ("txt", b"gray png"))),
           ("palette_png", (("png", encode(pal, "PNG")), ("txt", b"palette"))),
           ("png16", (("png", encode(i16, "PNG")), ("txt", b"16 bit"))),
           ("la_png", (("png", encode(la, "PNG")), ("txt", b"gray+alpha")))]
    return smp, one_run("modes", smp, "--resize", "max-side", "--max-side", "32", "--quality", "95")


def mode_case(key, left, right):
    smp, (r, out) = modes_run()
    expect(key in out, "%s was not kept" % key)
    eq(image_of(out[key])[0], "jpg", "%s output extension" % key)
    im, j = check_normalized(key, out[key])
    eq((im.mode, im.size), ("RGB", (32, 24)), "%s mode and size" % key)
    near(region_mean(im, (3, 4, 13, 20)), left, 12, "%s left half" % key)
    near(region_mean(im, (19, 4, 29, 20)), right, 12, "%s right half" % key)


S.run("cmyk_jpeg_to_rgb", functools.partial(mode_case, "cmyk_jpeg", (255, 0, 0), (0, 255, 255)))
S.run("grayscale_jpeg_to_rgb", functools.partial(mode_case, "gray_jpeg", (100,) * 3, (200,) * 3))
S.run("grayscale_png_to_rgb", functools.partial(mode_case, "gray_png", (100,) * 3, (200,) * 3))
S.run("palette_png_to_rgb", functools.partial(mode_case, "palette_png", (0, 200, 0), (0, 0, 200)))
S.run("png_16bit_to_8bit_rgb", functools.partial(mode_case, "png16", (0x20,) * 3, (0xE0,) * 3))
S.run("gray_alpha_png_to_rgb", functools.partial(mode_case, "la_png", (60,) * 3, (180,) * 3))


# ---------------------------------------------------------------------------
# encoding

@check("encode_webp")
def _():
    r, out = one_run("encwebp", [("a", (("jpg", jpeg(64, 48, 1)), ("txt", b"x")))], "--encode", "webp")
    eq(sorted(out["a"]), ["json", "txt", "webp"], "members")
    im, j = check_normalized("a", out["a"])
    eq((im.format, im.size, j["format"]), ("WEBP", (64, 48), "webp"), "format, size, json format")


@check("encode_png_lossless_pixels")
def _():
    src = webp(40, 30, 5, lossless=True)
    r, out = one_run("encpng", [("a", (("webp", src), ("txt", b"x")))], "--encode", "png")
    eq(sorted(out["a"]), ["json", "png", "txt"], "members")
    import numpy as np
    got = np.asarray(decode(out["a"]["png"]).convert("RGB"))
    want = np.asarray(decode(src).convert("RGB"))
    expect(got.shape == want.shape and (got == want).all(), "lossless WebP -> PNG changed pixels")


@check("quality_option_changes_size")
def _():
    smp = [("a", (("jpg", jpeg(256, 192, 1)), ("txt", b"x")))]
    _, lo = one_run("q20", smp, "--resize", "max-side", "--max-side", "200", "--quality", "20")
    _, hi = one_run("q95", smp, "--resize", "max-side", "--max-side", "200", "--quality", "95")
    a, b = len(lo["a"]["jpg"]), len(hi["a"]["jpg"])
    expect(a < b, "quality 20 gives %d bytes, quality 95 %d" % (a, b))


@check("default_quality_is_90")
def _():
    smp = [("a", (("jpg", jpeg(256, 192, 1)), ("txt", b"x")))]
    _, dflt = one_run("qdef", smp, "--resize", "max-side", "--max-side", "200")
    _, q90 = one_run("q90", smp, "--resize", "max-side", "--max-side", "200", "--quality", "90")
    eq(dflt["a"]["jpg"], q90["a"]["jpg"], "default vs --quality 90 output")


# ---------------------------------------------------------------------------
# threads, stdin, outputs

@functools.lru_cache(None)
def mixed_input():
    smp = []
    for i in range(48):
        k = "m%03d" % i
        if i % 7 == 3:
            smp.append((k, (("jpg", b"broken %d" % i), ("txt", b"x"))))
        elif i % 11 == 5:
            smp.append((k, (("png", png(50 + i, 40, i)),)))
        elif i % 2:
            smp.append((k, (("png", png(60 + i, 50 + i % 5, i)), ("txt", ("caption %d" % i).encode()))))
        else:
            smp.append((k, (("jpg", jpeg(70 + i, 40 + i, i)), ("txt", ("caption %d" % i).encode()))))
    d = S.dir("mixed")
    return d, write_tar(d, "in.tar", smp), smp


@functools.lru_cache(None)
def threads_runs():
    d, p, smp = mixed_input()
    runs = []
    for j in ("1", "2"):
        tsv = os.path.join(d, "r%s.tsv" % j)
        r = ingest("-j", j, "--rejects", tsv, "--resize", "max-side", "--max-side", "48", p)
        runs.append((r, read(tsv) if os.path.exists(tsv) else None))
    return runs


@check("threads_1_and_2_byte_identical")
def _():
    (r1, t1), (r2, t2) = threads_runs()
    expect_rc(r1, 0)
    expect_rc(r2, 0)
    expect(len(r1.out) > 10240, "output is only %d bytes" % len(r1.out))
    expect(r1.out == r2.out, "-j 1 and -j 2 outputs differ")
    eq(t1, t2, "rejects files")


@check("threads_output_normalized_and_conserved")
def _():
    d, p, smp = mixed_input()
    (r, tsv), _ = threads_runs()
    out, keys = out_samples(r)
    for k in keys:
        im, j = check_normalized(k, out[k])
        expect(max(im.size) <= 48, "%s is %s" % (k, im.size))
    s = summary(r)
    eq((s["in"], s["kept"]), (len(smp), len(keys)), "in, kept")
    eq(s["in"], s["kept"] + s["rejected"], "in = kept + rejected")
    rows = tsv.decode().split("\n")[1:-1]
    eq(sorted(l.split("\t")[0] for l in rows), sorted(set(k for k, _ in smp) - set(keys)),
       "rejected keys")
    eq(keys, [k for k, _ in smp if k in out], "output order follows input order")


@check("ingest_output_reproducible")
def _():
    d, p, smp = mixed_input()
    r = ingest("--resize", "max-side", "--max-side", "48", p)
    expect(r.out == threads_runs()[1][0].out, "a second run differs")


@check("ingest_reads_stdin_zstd")
def _():
    smp = [ok("s1", 1), ok("s2", 2)]
    data = zstd_compress(tar_bytes(samples_to_members(smp)))
    for args in ((), ("-",)):
        r = ingest(*args, input=data)
        expect_rc(r, 0)
        out, keys = out_samples(r)
        eq(keys, ["s1", "s2"], "keys from stdin %s" % (args,))
        for k in keys:
            im, j = check_normalized(k, out[k])
            eq(j["source"], "-", "%s source" % k)


@check("ingest_o_pattern_shards")
def _():
    d = S.dir("ingo")
    p = write_tar(d, "in.tar", [ok("s%d" % i, i) for i in range(5)])
    r = ingest("-o", os.path.join(d, "out", "i-%03d.tar.gz"), "--maxcount", "2", p)
    expect_rc(r, 0)
    eq(r.out, b"", "stdout")
    files = sorted(os.listdir(os.path.join(d, "out")))
    eq(files, ["i-000.tar.gz", "i-001.tar.gz", "i-002.tar.gz"], "files")
    keys = []
    for f in files:
        data = read(os.path.join(d, "out", f))
        eq(data[:2], GZIP_MAGIC, "%s magic" % f)
        keys += [k for k, _ in wds_samples(data)]
    eq(keys, ["s0", "s1", "s2", "s3", "s4"], "keys across shards")


@check("ingest_mixed_input_kinds_in_one_run")
def _():
    root, f, r0, _ = folder_fixture()
    d, imgs, r1, _ = jsonl_fixture()
    out_i2d, smp, r2 = i2d_fixture()
    r = ingest(root, os.path.join(d, "sub", "list.jsonl"), out_i2d)
    expect_rc(r, 0)
    want = out_samples(r0)[1] + out_samples(r1)[1] + out_samples(r2)[1]
    # (JSONL line 0 and the first img2dataset sample share key 000000000)
    eq([k for k, _ in wds_samples(r.out)], want, "keys (folder, then JSONL, then img2dataset)")
    expect_summary(r, "ingest", 6 + 7 + 4, len(want),
                   {"missing_image": 1, "bad_json": 1, "missing_file": 1, "missing_caption": 1})


S.finish()
