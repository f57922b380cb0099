"""End-to-end tests of mvl's stream commands: the command table, cat,
shard and ls (issue 2).  Run by tests/run.sh with MVL=path to the binary."""
import sys
sys.dont_write_bytecode = True

import functools
import io
import os
import pty
import random
import select
import shutil
import subprocess
import tarfile

from mvltest import (
    Fail, MVL, Suite, as_dicts, decompress, eq, expect, expect_rc, expect_samples,
    expect_summary, gzip_compress, jpeg, mvl, png, raw_headers, read, read_rejects,
    samples_to_members, summary, tar_bytes, tar_names, tmp_leftovers, wds_samples,
    webp, write, zstd_compress, ZSTD_MAGIC, GZIP_MAGIC, encode, pil_image,
)

S = Suite("stream")
check = S.check


def rnd(n, seed):
    return random.Random(seed).randbytes(n)


# ---------------------------------------------------------------------------
# fixtures (built lazily, once)

@functools.lru_cache(None)
def fx_dir():
    return S.dir("fixtures")


@functools.lru_cache(None)
def basic_samples():
    """Samples with members in unsorted order, varied types and sizes."""
    return (
        ("img/000001", (("txt", "a cat on a mat".encode()), ("jpg", jpeg(40, 30, 1)),
                        ("json", b'{"url": "http://example.com/1.jpg"}'))),
        ("img/000002", (("png", png(20, 10, 2)), ("txt", b"two"), ("cls", b"3"))),
        ("img/000003", (("webp", webp(16, 16, 3)), ("txt", "\u65e5\u672c\u8a9e".encode()))),
        ("noimg", (("txt", b"only text"),)),
        ("x", (("seg.png", png(8, 8, 4)), ("png", png(8, 8, 5)), ("json", b"{}"))),
        ("a/b/x01", (("jpg", jpeg(12, 12, 6)), ("txt", b""), ("bin", rnd(5000, 1)))),
    )


@functools.lru_cache(None)
def basic_tar():
    return write(os.path.join(fx_dir(), "basic.tar"),
                 tar_bytes(samples_to_members(basic_samples())))


@functools.lru_cache(None)
def basic_out():
    """mvl cat basic.tar: the reference output."""
    r = mvl("cat", basic_tar())
    expect_rc(r, 0)
    return r


def n_samples(prefix, n, size=200, seed=0):
    return tuple(("%s%02d" % (prefix, i), (("txt", ("caption %s %d" % (prefix, i)).encode()),
                                            ("bin", rnd(size, seed * 1000 + i)))) for i in range(n))


def write_tar(d, name, samples, **kw):
    return write(os.path.join(d, name), tar_bytes(samples_to_members(samples), **kw))


# ---------------------------------------------------------------------------
# the command table

@check("version_prints_semver")
def _():
    r = mvl("--version")
    expect_rc(r, 0)
    import re
    expect(re.fullmatch(rb"mvl \d+\.\d+\.\d+\n", r.out), "got %r" % r.out)


@check("help_lists_every_command")
def _():
    r = mvl("help")
    expect_rc(r, 0)
    import re
    for c in ("cat", "shard", "ls", "ingest"):
        expect(re.search(rb"(?m)^\s*%s\b" % c.encode(), r.out),
               "'mvl help' does not list %s: %r" % (c, r.out[:300]))


@check("help_cat_shows_usage_options_defaults")
def _():
    r = mvl("help", "cat")
    expect_rc(r, 0)
    t = r.out.decode()
    expect(t.startswith("usage: mvl cat"), "starts with %r" % t[:40])
    for opt in ("--rejects", "-o", "--maxcount", "--maxsize", "--compress", "--strict",
                "-q", "--max-member-size"):
        expect(opt in t, "usage lacks %s" % opt)
    expect("(default: " in t, "usage shows no default")
    expect("none|zst|gz" in t or ("zst" in t and "gz" in t), "usage lacks --compress choices")


@check("cat_dash_help_equals_help_cat")
def _():
    a, b = mvl("cat", "--help"), mvl("help", "cat")
    expect_rc(a, 0)
    eq(a.out, b.out, "mvl cat --help vs mvl help cat")


@check("help_shard_shows_defaults")
def _():
    r = mvl("shard", "--help")
    expect_rc(r, 0)
    t = r.out.decode()
    expect(t.startswith("usage: mvl shard"), "starts with %r" % t[:40])
    for s in ("-o", "--maxcount", "--maxsize", "(default: 10000)", "(default: 3GB)"):
        expect(s in t, "usage lacks %r" % s)


@check("help_ls_usage")
def _():
    r = mvl("help", "ls")
    expect_rc(r, 0)
    expect(r.out.startswith(b"usage: mvl ls"), "starts with %r" % r.out[:40])


@check("unknown_command_exits_2")
def _():
    r = mvl("frobnicate")
    expect_rc(r, 2)
    expect(b"frobnicate" in r.err, "stderr does not name the command: %r" % r.err)
    eq(r.out, b"", "stdout")


@check("unknown_option_exits_2_and_names_it")
def _():
    r = mvl("cat", "--bogus", basic_tar())
    expect_rc(r, 2)
    expect(b"--bogus" in r.err, "stderr does not mention --bogus: %r" % r.err)
    eq(r.out, b"", "stdout")


@check("bad_option_values_exit_2")
def _():
    for args in (("--maxcount", "abc"), ("--compress", "bz2"), ("--maxsize", "lots"),
                 ("--maxcount",)):
        r = mvl("cat", *args, basic_tar()) if len(args) == 2 else mvl("cat", basic_tar(), *args)
        expect_rc(r, 2)
        expect(r.err.strip(), "no message for %s" % (args,))


@check("shard_without_o_exits_2")
def _():
    r = mvl("shard", basic_tar())
    expect_rc(r, 2)
    expect(r.err.strip(), "no message on stderr")


@check("cat_refuses_to_write_to_terminal")
def _():
    master, slave = pty.openpty()
    try:
        p = subprocess.run([MVL, "cat", basic_tar()], stdin=subprocess.DEVNULL, stdout=slave,
                           stderr=subprocess.PIPE, timeout=30)
        os.close(slave)
        slave = None
        expect(p.returncode > 0, "exit status %d writing to a terminal" % p.returncode)
        expect(b"terminal" in p.stderr.lower(), "stderr does not say why: %r" % p.stderr)
        got = b""
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            got += chunk
        expect(b"ustar" not in got and len(got) < 512, "%d bytes reached the terminal" % len(got))
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)


# ---------------------------------------------------------------------------
# cat: copying, grouping, reproducible bytes

@check("cat_round_trip_same_samples")
def _():
    r = basic_out()
    expect_samples(wds_samples(r.out), basic_samples(), "mvl cat output")


@check("cat_members_in_sorted_extension_order")
def _():
    got = [(k, [e for e, _ in ms]) for k, ms in wds_samples(basic_out().out)]
    want = [(k, sorted(e for e, _ in ms)) for k, ms in basic_samples()]
    eq(got, want, "member order")
    eq(tar_names(basic_out().out)[-3:], ["a/b/x01.bin", "a/b/x01.jpg", "a/b/x01.txt"],
       "last sample's member names")


@check("cat_headers_ustar_0644_root_mtime0")
def _():
    hs = raw_headers(basic_out().out)
    files = [h for h in hs if h["type"] in (b"0", b"\0")]
    eq(len(files), sum(len(ms) for _, ms in basic_samples()), "regular file headers")
    for h in hs:
        expect(h["checksum_ok"], "bad header checksum at %d" % h["offset"])
    for h in files:
        name = h["name"].decode()
        eq(h["magic"], b"ustar\x0000", "magic+version of %s" % name)
        eq(h["mode"] & 0o7777, 0o644, "mode of %s" % name)
        eq((h["uid"], h["gid"]), (0, 0), "uid/gid of %s" % name)
        eq(h["mtime"], 0, "mtime of %s" % name)
    with tarfile.open(fileobj=io.BytesIO(basic_out().out)) as tf:
        for m in tf:
            eq((m.mode, m.uid, m.gid, m.mtime, m.type), (0o644, 0, 0, 0, tarfile.REGTYPE),
               "tarfile's view of %s (mode, uid, gid, mtime, type)" % m.name)


@check("cat_summary_line_on_stderr")
def _():
    expect_summary(basic_out(), "cat", 6, 6)


@check("cat_quiet_is_silent_without_rejects")
def _():
    r = mvl("cat", "-q", basic_tar())
    expect_rc(r, 0)
    eq(r.err, b"", "stderr with -q")
    eq(r.out, basic_out().out, "output with -q")


@check("cat_same_input_same_bytes")
def _():
    r = mvl("cat", basic_tar())
    expect_rc(r, 0)
    expect(r.out == basic_out().out, "two runs differ")


@check("cat_output_ignores_input_metadata_and_member_order")
def _():
    d = S.dir("meta")
    # same samples, members reversed, no owner/mtime noise, GNU format
    rev = tuple((k, tuple(reversed(ms))) for k, ms in basic_samples())
    p = write_tar(d, "rev.tar", rev, fmt=tarfile.GNU_FORMAT, messy=False)
    r = mvl("cat", p)
    expect_rc(r, 0)
    expect(r.out == basic_out().out, "output depends on input member order / metadata")


@check("cat_is_idempotent")
def _():
    r = mvl("cat", input=basic_out().out)
    expect_rc(r, 0)
    expect(r.out == basic_out().out, "cat of cat output differs (%d vs %d bytes)" % (
        len(r.out), len(basic_out().out)))


@check("reference_reader_sees_input_samples")
def _():
    # A webdataset-style reader (split at the first dot of the basename,
    # group consecutively) sees exactly the input's keys and ext -> bytes.
    got = as_dicts(wds_samples(basic_out().out))
    want = [(k, dict(ms)) for k, ms in basic_samples()]
    eq([k for k, _ in got], [k for k, _ in want], "keys")
    eq(got, want, "samples")


@check("cat_key_rules_dirs_and_case")
def _():
    d = S.dir("keys")
    j = jpeg(10, 10, 3)
    p = write(os.path.join(d, "k.tar"), tar_bytes([
        ("a/b/x01.JPG", j), ("a/b/x01.Txt", b"upper"),
        ("x.seg.png", b"SEG"), ("x.png", b"PNG"),
        ("v1.2.json", b"{}"), ("v1.2.TXT", b"dots"),
    ]))
    r = mvl("cat", p)
    expect_rc(r, 0)
    got = [(k, [e for e, _ in ms]) for k, ms in wds_samples(r.out)]
    eq(got, [("a/b/x01", ["jpg", "txt"]), ("x", ["png", "seg.png"]), ("v1", ["2.json", "2.txt"])],
       "keys and extensions")
    eq(tar_names(r.out), ["a/b/x01.jpg", "a/b/x01.txt", "x.png", "x.seg.png",
                          "v1.2.json", "v1.2.txt"], "member names")
    eq(dict(wds_samples(r.out)[0][1])["jpg"], j, "jpg bytes")


@check("cat_long_names_round_trip")
def _():
    d = S.dir("long")
    k150 = "d" * 40 + "/" + "e" * 50 + "/" + "f" * 58
    k120 = "k" * 120
    assert len(k150) == 150 and len(k120) == 120
    smp = ((k150, (("jpg", jpeg(8, 8)), ("txt", b"deep"))), (k120, (("txt", b"wide"),)),
           ("short", (("txt", b"s"),)))
    for fmt, name in ((tarfile.PAX_FORMAT, "pax"), (tarfile.GNU_FORMAT, "gnu")):
        p = write_tar(d, name + ".tar", smp, fmt=fmt)
        r = mvl("cat", p)
        expect_rc(r, 0)
        expect_samples(wds_samples(r.out), smp, "%s input" % name)
        names = [k150 + ".jpg", k150 + ".txt", k120 + ".txt", "short.txt"]
        eq(tar_names(r.out), names, "names from %s input" % name)
        t = subprocess.run(["tar", "-tf", "-"], input=r.out, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        eq(t.returncode, 0, "GNU tar -tf exit status (%s)" % t.stderr[:200])
        eq(t.stdout.decode().splitlines(), names, "GNU tar's listing (%s input)" % name)
        r2 = mvl("cat", input=r.out)
        expect(r2.out == r.out, "long names: cat is not idempotent")


@check("cat_unicode_keys_round_trip")
def _():
    d = S.dir("uni")
    smp = (("\u65e5\u672c/\u732b\u306e\u5199\u771f", (("txt", b"neko"), ("jpg", jpeg(8, 8)))),
           ("caf\u00e9-\U0001f600", (("txt", b"smile"),)))
    p = write_tar(d, "u.tar", smp)
    r = mvl("cat", p)
    expect_rc(r, 0)
    expect_samples(wds_samples(r.out), smp, "unicode keys")


@check("cat_strips_leading_dot_slash")
def _():
    d = S.dir("dotslash")
    p = write(os.path.join(d, "ds.tar"), tar_bytes([("./s1.txt", b"one"), ("./s1.jpg", b"J"),
                                                     ("./sub/s2.txt", b"two")]))
    r = mvl("cat", p)
    expect_rc(r, 0)
    eq(tar_names(r.out), ["s1.jpg", "s1.txt", "sub/s2.txt"], "member names")
    expect_summary(r, "cat", 2, 2)


@check("cat_skips_directory_entries_silently")
def _():
    d = S.dir("dirs")
    p = write(os.path.join(d, "dirs.tar"), tar_bytes([
        {"name": "top", "type": tarfile.DIRTYPE},
        ("top/a.txt", b"A"), ("top/a.jpg", b"J"),
        {"name": "top/sub", "type": tarfile.DIRTYPE},
        ("top/sub/b.txt", b"B"),
    ]))
    r = mvl("cat", p)
    expect_rc(r, 0)
    eq(tar_names(r.out), ["top/a.jpg", "top/a.txt", "top/sub/b.txt"], "member names")
    expect_summary(r, "cat", 2, 2)


@check("cat_groups_only_consecutive_members")
def _():
    d = S.dir("consec")
    p = write(os.path.join(d, "c.tar"), tar_bytes([("k.txt", b"1"), ("o.txt", b"2"), ("k.jpg", b"3")]))
    r = mvl("cat", p)
    expect_rc(r, 0)
    eq([(k, [e for e, _ in ms]) for k, ms in wds_samples(r.out)],
       [("k", ["txt"]), ("o", ["txt"]), ("k", ["jpg"])], "samples")
    expect_summary(r, "cat", 3, 3)


@check("cat_reads_stdin_without_input")
def _():
    r = mvl("cat", input=read(basic_tar()))
    expect_rc(r, 0)
    expect(r.out == basic_out().out, "stdin output differs from file output")


@check("cat_reads_stdin_for_dash_between_files")
def _():
    d = S.dir("dash")
    a = write_tar(d, "a.tar", n_samples("a", 2))
    b = write_tar(d, "b.tar", n_samples("b", 2))
    mid = tar_bytes(samples_to_members(n_samples("m", 3)))
    r = mvl("cat", a, "-", b, input=mid)
    expect_rc(r, 0)
    expect_samples(wds_samples(r.out), n_samples("a", 2) + n_samples("m", 3) + n_samples("b", 2),
                   "a, stdin, b")


# ---------------------------------------------------------------------------
# compression: detected from content, written on request

@check("cat_detects_gzip_by_content")
def _():
    d = S.dir("gz")
    p = write(os.path.join(d, "looks-plain.tar"), gzip_compress(read(basic_tar())))
    r = mvl("cat", p)
    expect_rc(r, 0)
    expect(r.out == basic_out().out, "gzip input named .tar: output differs")


@check("cat_detects_zstd_by_content")
def _():
    d = S.dir("zst")
    p = write(os.path.join(d, "data.bin"), zstd_compress(read(basic_tar())))
    r = mvl("cat", p)
    expect_rc(r, 0)
    expect(r.out == basic_out().out, "zstd input named .bin: output differs")


@check("cat_concatenates_plain_gz_zst_inputs")
def _():
    d = S.dir("mixed")
    a = write_tar(d, "a.tar", n_samples("a", 3))
    b = write(os.path.join(d, "b.tar.gz"), gzip_compress(tar_bytes(samples_to_members(n_samples("b", 2)))))
    c = write(os.path.join(d, "c.tar.zst"), zstd_compress(tar_bytes(samples_to_members(n_samples("c", 4)))))
    r = mvl("cat", c, a, b)
    expect_rc(r, 0)
    expect_samples(wds_samples(r.out), n_samples("c", 4) + n_samples("a", 3) + n_samples("b", 2),
                   "concatenation")
    expect_summary(r, "cat", 9, 9)


@check("cat_compress_zst_stdout")
def _():
    r = mvl("cat", "--compress", "zst", basic_tar())
    expect_rc(r, 0)
    eq(r.out[:4], ZSTD_MAGIC, "zstd magic")
    expect(decompress(r.out) == basic_out().out, "decompressed output differs from plain output")
    r2 = mvl("cat", "--compress", "zst", basic_tar())
    expect(r2.out == r.out, "zstd output not reproducible")


@check("cat_compress_gz_stdout")
def _():
    r = mvl("cat", "--compress", "gz", basic_tar())
    expect_rc(r, 0)
    eq(r.out[:2], GZIP_MAGIC, "gzip magic")
    import gzip
    expect(gzip.decompress(r.out) == basic_out().out, "decompressed output differs")
    r2 = mvl("cat", "--compress", "gz", basic_tar())
    expect(r2.out == r.out, "gzip output not reproducible")


@check("cat_compress_none_is_plain")
def _():
    r = mvl("cat", "--compress", "none", basic_tar())
    expect_rc(r, 0)
    expect(r.out == basic_out().out, "--compress none differs from default")


# ---------------------------------------------------------------------------
# inputs: globs and brace ranges

@check("cat_glob_expands_sorted")
def _():
    d = S.dir("glob")
    for name in ("c", "a", "b"):
        write_tar(d, name + ".tar", n_samples(name, 1))
    write(os.path.join(d, "notes.md"), b"not matched")
    r = mvl("cat", os.path.join(d, "*.tar"))
    expect_rc(r, 0)
    eq([k for k, _ in wds_samples(r.out)], ["a00", "b00", "c00"], "keys")


@check("cat_brace_range_keeps_zero_padding")
def _():
    d = S.dir("brace")
    for i in range(4):
        write_tar(d, "shard-%03d.tar" % i, n_samples("s%d_" % i, 2))
    write_tar(d, "shard-004.tar", n_samples("extra", 1))
    r = mvl("cat", os.path.join(d, "shard-{000..003}.tar"))
    expect_rc(r, 0)
    want = sum((n_samples("s%d_" % i, 2) for i in range(4)), ())
    expect_samples(wds_samples(r.out), want, "brace range")
    expect_summary(r, "cat", 8, 8)


@check("cat_brace_range_missing_shard_exit_1")
def _():
    d = S.dir("brace2")
    for i in range(4):
        write_tar(d, "shard-%02d.tar" % i, n_samples("s%d_" % i, 1))
    r = mvl("cat", os.path.join(d, "shard-{00..04}.tar"))
    expect_rc(r, 1)
    expect(b"shard-04.tar" in r.err, "stderr does not name the missing shard: %r" % r.err)
    want = sum((n_samples("s%d_" % i, 1) for i in range(4)), ())
    expect_samples(wds_samples(r.out), want, "the shards that exist")


# ---------------------------------------------------------------------------
# -o PATTERN and mvl shard

def shard_files(d):
    out = []
    for root, _, files in os.walk(d):
        out += [os.path.relpath(os.path.join(root, f), d) for f in files]
    return sorted(out)


@check("cat_o_pattern_creates_dirs_and_shards")
def _():
    d = S.dir("cato")
    src = write_tar(d, "in.tar", n_samples("k", 5))
    out = os.path.join(d, "out")
    r = mvl("cat", "-o", os.path.join(out, "a/b/shard-%03d.tar"), "--maxcount", "2", src)
    expect_rc(r, 0)
    eq(r.out, b"", "stdout with -o")
    eq(shard_files(out), ["a/b/shard-000.tar", "a/b/shard-001.tar", "a/b/shard-002.tar"], "files")
    counts = [len(wds_samples(read(os.path.join(out, "a/b/shard-%03d.tar" % i)))) for i in range(3)]
    eq(counts, [2, 2, 1], "samples per shard")
    allsmp = sum((wds_samples(read(os.path.join(out, "a/b/shard-%03d.tar" % i))) for i in range(3)), [])
    expect_samples(allsmp, n_samples("k", 5), "shards concatenated")


@check("cat_o_compression_from_extension")
def _():
    d = S.dir("catoz")
    src = write_tar(d, "in.tar", n_samples("k", 3))
    plain = mvl("cat", src).out
    for sub, ext, magic in (("z", ".tar.zst", ZSTD_MAGIC), ("g", ".tar.gz", GZIP_MAGIC),
                            ("p", ".tar", b"k00")):
        r = mvl("cat", "-o", os.path.join(d, sub, "s-%d" + ext), src)
        expect_rc(r, 0)
        f = os.path.join(d, sub, "s-0" + ext)
        expect(os.path.exists(f), "%s not written (have %s)" % (f, shard_files(d)))
        data = read(f)
        eq(data[:len(magic)], magic, "start of %s" % os.path.basename(f))
        expect(decompress(data) == plain, "%s content differs from stdout output" % ext)
    eq(tmp_leftovers(d), [], "temporary files left")


@check("cat_o_pattern_without_conversion_fails")
def _():
    d = S.dir("catobad")
    src = write_tar(d, "in.tar", n_samples("k", 2))
    r = mvl("cat", "-o", os.path.join(d, "out", "fixed.tar"), src)
    expect(r.rc != 0, "exit 0 for a pattern without %d")
    expect(r.err.strip(), "no message")
    expect(not os.path.exists(os.path.join(d, "out", "fixed.tar")), "wrote fixed.tar")


@check("shard_maxcount_counts_and_order")
def _():
    d = S.dir("shardc")
    smp = n_samples("k", 10)
    src = write_tar(d, "in.tar", smp)
    r = mvl("shard", "-o", os.path.join(d, "out", "s-%02d.tar"), "--maxcount", "3", src)
    expect_rc(r, 0)
    eq(r.out, b"", "stdout")
    eq(shard_files(os.path.join(d, "out")), ["s-00.tar", "s-01.tar", "s-02.tar", "s-03.tar"], "files")
    per = [wds_samples(read(os.path.join(d, "out", "s-%02d.tar" % i))) for i in range(4)]
    eq([len(p) for p in per], [3, 3, 3, 1], "samples per shard")
    expect_samples(sum(per, []), smp, "shards concatenated")
    expect_summary(r, "shard", 10, 10)


@check("shard_maxsize_never_exceeded")
def _():
    d = S.dir("shards")
    # each sample: 512 + 3072 (bin) + 512 + 512 (txt) = 4608 tar bytes
    smp = n_samples("k", 10, size=3000)
    src = write_tar(d, "in.tar", smp)
    r = mvl("shard", "-o", os.path.join(d, "out", "%d.tar"), "--maxsize", "12000", src)
    expect_rc(r, 0)
    files = shard_files(os.path.join(d, "out"))
    eq(files, ["%d.tar" % i for i in range(5)], "files")
    per = [wds_samples(read(os.path.join(d, "out", f))) for f in files]
    eq([len(p) for p in per], [2] * 5, "samples per shard")
    for f in files:
        sz = os.path.getsize(os.path.join(d, "out", f))
        expect(sz <= 12000, "%s is %d bytes > --maxsize 12000" % (f, sz))
    expect_samples(sum(per, []), smp, "shards concatenated")


@check("shard_maxsize_counts_uncompressed_bytes")
def _():
    d = S.dir("shardz")
    # compressible samples: 4608 tar bytes each, a few dozen once compressed
    smp = tuple(("k%02d" % i, (("bin", b"\0" * 3000), ("txt", b"caption %02d" % i))) for i in range(10))
    src = write_tar(d, "in.tar", smp)
    r = mvl("shard", "-o", os.path.join(d, "out", "%d.tar.zst"), "--maxsize", "12000", src)
    expect_rc(r, 0)
    files = shard_files(os.path.join(d, "out"))
    eq(files, ["%d.tar.zst" % i for i in range(5)], "files")
    for f in files:
        raw = decompress(read(os.path.join(d, "out", f)))
        expect(len(raw) <= 12000, "%s holds %d tar bytes > --maxsize 12000" % (f, len(raw)))
        eq(len(wds_samples(raw)), 2, "samples in %s" % f)


@check("shard_maxsize_oversized_sample_alone")
def _():
    d = S.dir("shardbig")
    smp = n_samples("a", 1, size=3000) + (("huge", (("bin", rnd(20000, 9)),)),) + n_samples("b", 2, size=3000)
    src = write_tar(d, "in.tar", smp)
    r = mvl("shard", "-o", os.path.join(d, "out", "%d.tar"), "--maxsize", "12000", src)
    expect_rc(r, 0)
    files = shard_files(os.path.join(d, "out"))
    per = [[k for k, _ in wds_samples(read(os.path.join(d, "out", f)))] for f in files]
    eq(per, [["a00"], ["huge"], ["b00", "b01"]], "keys per shard")


@check("shard_default_limits_one_shard")
def _():
    d = S.dir("sharddef")
    smp = n_samples("k", 25)
    src = write_tar(d, "in.tar", smp)
    r = mvl("shard", "-o", os.path.join(d, "out", "x-%06d.tar.zst"), src)
    expect_rc(r, 0)
    eq(shard_files(os.path.join(d, "out")), ["x-000000.tar.zst"], "files")
    expect_samples(wds_samples(read(os.path.join(d, "out", "x-000000.tar.zst"))), smp, "content")


@check("shard_output_reproducible")
def _():
    d = S.dir("shardrep")
    src = write_tar(d, "in.tar", n_samples("k", 7))
    for run in ("r1", "r2"):
        expect_rc(mvl("shard", "-o", os.path.join(d, run, "%d.tar.gz"), "--maxcount", "3", src), 0)
    f1, f2 = shard_files(os.path.join(d, "r1")), shard_files(os.path.join(d, "r2"))
    eq(f1, ["0.tar.gz", "1.tar.gz", "2.tar.gz"], "files")
    eq(f2, f1, "second run's files")
    for f in f1:
        expect(read(os.path.join(d, "r1", f)) == read(os.path.join(d, "r2", f)), "%s differs" % f)
    eq(tmp_leftovers(d), [], "temporary files left")


# ---------------------------------------------------------------------------
# rejections

GOOD = lambda i: ("g%02d" % i, (("jpg", b"\xff\xd8fake%d" % i), ("txt", b"good %d" % i)))

# (members of the bad group, key in the TSV or None, reason)
BAD_GROUPS = [
    ("abs", [("/abs/evil.txt", b"x")], "/abs/evil", "unsafe_path"),
    ("dotdot", [("../up.txt", b"x")], "../up", "unsafe_path"),
    ("dotdot_mid", [("a/../b.txt", b"x"), ("a/../b.jpg", b"y")], "a/../b", "unsafe_path"),
    ("symlink", [("sl.jpg", b"img"), {"name": "sl.txt", "type": tarfile.SYMTYPE,
                                       "linkname": "/etc/passwd"}], "sl", "not_regular_file"),
    ("hardlink", [{"name": "hl.txt", "type": tarfile.LNKTYPE, "linkname": "g00.txt"}],
     "hl", "not_regular_file"),
    ("chardev", [{"name": "dev.txt", "type": tarfile.CHRTYPE}], "dev", "not_regular_file"),
    ("fifo", [{"name": "ff.txt", "type": tarfile.FIFOTYPE}], "ff", "not_regular_file"),
    ("noext", [("README", b"no extension")], None, "bad_name"),
    ("dotfile", [(".hidden.txt", b"dot")], None, "bad_name"),
    ("dup", [("dup.txt", b"1"), ("dup.txt", b"2")], "dup", "duplicate_member"),
    ("dupcase", [("dc.jpg", b"1"), ("dc.JPG", b"2")], "dc", "duplicate_member"),
    ("too_large", [("big.txt", b"t"), ("big.bin", rnd(2000, 5))], "big", "member_too_large"),
]
EDGE = ("edge", (("bin", rnd(1000, 6)),))  # exactly --max-member-size: kept


@functools.lru_cache(None)
def reject_fixture():
    members, goods = [], []
    for i, (_, bad, _, _) in enumerate(BAD_GROUPS):
        goods.append(GOOD(i))
        members += samples_to_members([GOOD(i)])
        members += bad
    goods += [GOOD(len(BAD_GROUPS)), EDGE]
    members += samples_to_members([GOOD(len(BAD_GROUPS)), EDGE])
    d = S.dir("rejects")
    return d, write(os.path.join(d, "bad.tar"), tar_bytes(members)), tuple(goods)


@functools.lru_cache(None)
def reject_run():
    d, p, goods = reject_fixture()
    tsv = os.path.join(d, "rejects.tsv")
    r = mvl("cat", "--rejects", tsv, "--max-member-size", "1000", p)
    return r, read_rejects(tsv) if os.path.exists(tsv) else None


@check("reject_run_exit_0")
def _():
    expect_rc(reject_run()[0], 0)


@check("reject_run_keeps_exactly_the_good_samples")
def _():
    r, _ = reject_run()
    expect_samples(wds_samples(r.out), reject_fixture()[2], "kept samples")


@check("reject_run_summary_counts")
def _():
    r, _ = reject_run()
    reasons = {}
    for _, _, _, why in BAD_GROUPS:
        reasons[why] = reasons.get(why, 0) + 1
    ngood = len(reject_fixture()[2])
    expect_summary(r, "cat", ngood + len(BAD_GROUPS), ngood, reasons)


@check("reject_tsv_one_row_per_rejected_sample")
def _():
    r, rows = reject_run()
    expect(rows is not None, "--rejects file not written")
    eq(len(rows), len(BAD_GROUPS), "rows")
    src = reject_fixture()[1]
    for row in rows:
        eq(row[1], src, "source column of %r" % (row,))
    got = sorted((k if why != "bad_name" else "(any)", why) for k, _, why, _ in rows)
    want = sorted((k if k is not None else "(any)", why) for _, _, k, why in BAD_GROUPS)
    eq(got, want, "(key, reason) rows")


def reject_case(label):
    for name, bad, key, why in BAD_GROUPS:
        if name == label:
            break
    r, rows = reject_run()
    expect(rows is not None, "--rejects file not written")
    if key is not None:
        hit = [row for row in rows if row[0] == key]
        eq([row[2] for row in hit], [why], "rejects rows for key %r" % key)
    else:
        eq(sum(1 for row in rows if row[2] == why), 2, "%s rows" % why)
    names = set(tar_names(r.out))
    for m in bad:
        n = m["name"] if isinstance(m, dict) else m[0]
        expect(n not in names and n.lstrip("/") not in names, "%r was copied" % n)


for _label in [b[0] for b in BAD_GROUPS]:
    S.run("reject_%s" % _label, functools.partial(reject_case, _label))


@check("reject_member_at_limit_is_kept")
def _():
    r, _ = reject_run()
    got = dict(as_dicts(wds_samples(r.out)))
    expect("edge" in got, "1000-byte member with --max-member-size 1000 was not kept")
    eq(got["edge"]["bin"], EDGE[1][0][1], "edge.bin bytes")


@check("reject_strict_exits_1")
def _():
    d, p, goods = reject_fixture()
    r = mvl("cat", "--strict", "--max-member-size", "1000", p)
    expect_rc(r, 1)


@check("strict_without_rejects_exits_0")
def _():
    r = mvl("cat", "--strict", basic_tar())
    expect_rc(r, 0)
    expect(r.out == basic_out().out, "output differs with --strict")


@check("quiet_still_reports_rejects")
def _():
    d, p, goods = reject_fixture()
    r = mvl("cat", "-q", "--max-member-size", "1000", p)
    expect_rc(r, 0)
    s = summary(r)
    eq(s["rejected"], len(BAD_GROUPS), "rejected in the -q summary")


@check("rejects_source_is_dash_for_stdin")
def _():
    d, p, goods = reject_fixture()
    tsv = os.path.join(S.dir("rjstdin"), "r.tsv")
    r = mvl("cat", "--rejects", tsv, "--max-member-size", "1000", input=read(p))
    expect_rc(r, 0)
    rows = read_rejects(tsv)
    eq(len(rows), len(BAD_GROUPS), "rows")
    eq(sorted(set(row[1] for row in rows)), ["-"], "source column")


@check("rejects_source_is_expanded_glob_path")
def _():
    d = S.dir("rjglob")
    write_tar(d, "a.tar", n_samples("a", 2))
    write(os.path.join(d, "b.tar"), tar_bytes(samples_to_members(n_samples("b", 1)) + [("../esc.txt", b"x")]))
    tsv = os.path.join(d, "out", "r.tsv")
    os.makedirs(os.path.dirname(tsv))
    r = mvl("cat", "--rejects", tsv, os.path.join(d, "*.tar"))
    expect_rc(r, 0)
    eq([row[:3] for row in read_rejects(tsv)], [("../esc", os.path.join(d, "b.tar"), "unsafe_path")],
       "rows (key, source, reason)")
    eq(tmp_leftovers(d), [], "temporary files left")


@check("rejects_tsv_header_only_when_nothing_rejected")
def _():
    tsv = os.path.join(S.dir("rjnone"), "r.tsv")
    r = mvl("cat", "--rejects", tsv, basic_tar())
    expect_rc(r, 0)
    eq(read(tsv), b"key\tsource\treason\tdetail\n", "rejects file")


# ---------------------------------------------------------------------------
# broken and unusual inputs

def cut_in_member(data, member_name, into):
    """data cut `into` bytes into member_name's content."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for m in tf:
            if m.name == member_name:
                return data[:m.offset_data + into], m.offset
    raise Fail("no member %s" % member_name)


@functools.lru_cache(None)
def trunc_fixture():
    d = S.dir("trunc")
    smp = n_samples("s", 5, size=3000)
    full = tar_bytes(samples_to_members(smp), fmt=tarfile.USTAR_FORMAT)
    cut, _ = cut_in_member(full, "s03.bin", 1000)
    p = write(os.path.join(d, "cut.tar"), cut)
    q = write_tar(d, "next.tar", n_samples("n", 2))
    tsv = os.path.join(d, "r.tsv")
    r = mvl("cat", "--rejects", tsv, p, q)
    return d, p, q, smp, r, tsv


@check("truncated_tar_exit_1_and_names_file")
def _():
    d, p, q, smp, r, tsv = trunc_fixture()
    expect_rc(r, 1)
    expect(p.encode() in r.err or b"cut.tar" in r.err, "stderr does not name cut.tar: %r" % r.err[:300])


@check("truncated_tar_keeps_samples_before_break_and_next_input")
def _():
    d, p, q, smp, r, tsv = trunc_fixture()
    expect_samples(wds_samples(r.out), smp[:3] + n_samples("n", 2), "output samples")


@check("truncated_tar_partial_sample_rejected")
def _():
    d, p, q, smp, r, tsv = trunc_fixture()
    rows = read_rejects(tsv)
    eq([row[:3] for row in rows], [("s03", p, "truncated_shard")], "rejects rows")
    expect_summary(r, "cat", 6, 5, {"truncated_shard": 1})


@check("truncated_tar_inside_header_conserves_samples")
def _():
    d = S.dir("trunchdr")
    smp = n_samples("s", 5, size=3000)
    full = tar_bytes(samples_to_members(smp), fmt=tarfile.USTAR_FORMAT)
    _, hdr = cut_in_member(full, "s03.txt", 0)
    p = write(os.path.join(d, "cuthdr.tar"), full[:hdr + 100])
    tsv = os.path.join(d, "r.tsv")
    r = mvl("cat", "--rejects", tsv, p)
    expect_rc(r, 1)
    got = wds_samples(r.out)
    keys = [k for k, _ in got]
    expect(keys[:2] == ["s00", "s01"] and set(keys) <= {"s00", "s01", "s02"}, "kept keys %s" % keys)
    expect_samples(got, smp[:len(got)], "kept samples")
    s = summary(r)
    eq(s["in"], s["kept"] + s["rejected"], "in = kept + rejected (%s)" % s["line"])
    eq(s["kept"], len(got), "kept count vs samples written")
    rows = read_rejects(tsv)
    eq(len(rows), s["rejected"], "rejects rows")
    for row in rows:
        eq(row[2], "truncated_shard", "reason of %r" % (row,))


@check("not_a_tar_exit_1_others_processed")
def _():
    d = S.dir("notatar")
    t = write(os.path.join(d, "notes.tar"), b"this is just a text file\n" * 40)
    a = write_tar(d, "a.tar", n_samples("a", 2))
    r = mvl("cat", t, a)
    expect_rc(r, 1)
    expect(b"notes.tar" in r.err, "stderr does not name notes.tar: %r" % r.err[:300])
    expect_samples(wds_samples(r.out), n_samples("a", 2), "samples of the good input")


@check("zero_byte_input_is_empty_archive")
def _():
    d = S.dir("zero")
    z = write(os.path.join(d, "empty.tar"), b"")
    r = mvl("cat", z)
    expect_rc(r, 0)
    eq(wds_samples(r.out), [], "samples")
    expect_summary(r, "cat", 0, 0)
    a = write_tar(d, "a.tar", n_samples("a", 1))
    r = mvl("cat", z, a, z)
    expect_rc(r, 0)
    expect_samples(wds_samples(r.out), n_samples("a", 1), "with a real input between")


@check("missing_input_exit_1_others_processed")
def _():
    d = S.dir("missing")
    a = write_tar(d, "a.tar", n_samples("a", 2))
    b = write_tar(d, "b.tar", n_samples("b", 1))
    r = mvl("cat", a, os.path.join(d, "nope.tar"), b)
    expect_rc(r, 1)
    expect(b"nope.tar" in r.err, "stderr does not name nope.tar: %r" % r.err[:300])
    expect_samples(wds_samples(r.out), n_samples("a", 2) + n_samples("b", 1), "samples")


def text_samples(n):
    words = ["alpha", "beta", "gamma", "delta", "image", "caption", "photo", "of", "a", "dog"]
    rng = random.Random(3)
    return tuple(("t%03d" % i, (("txt", " ".join(rng.choice(words) for _ in range(400)).encode()),
                                ("json", b'{"i": %d}' % i))) for i in range(n))


@check("zstd_flipped_byte_exit_1_no_crash")
def _():
    d = S.dir("zflip")
    z = bytearray(zstd_compress(tar_bytes(samples_to_members(text_samples(40)))))
    z[len(z) // 2] ^= 0xFF
    p = write(os.path.join(d, "flip.tar.zst"), bytes(z))
    a = write_tar(d, "after.tar", n_samples("a", 2))
    r = mvl("cat", p, a)
    expect_rc(r, 1)
    expect(b"flip.tar.zst" in r.err, "stderr does not name the file: %r" % r.err[:300])
    got = wds_samples(r.out)
    eq([k for k, _ in got[-2:]], ["a00", "a01"], "the next input's samples at the end")
    s = summary(r)
    eq(s["in"], s["kept"] + s["rejected"], "in = kept + rejected (%s)" % s["line"])


@check("zstd_truncated_exit_1")
def _():
    d = S.dir("ztrunc")
    z = zstd_compress(tar_bytes(samples_to_members(n_samples("s", 20, size=4000))))
    p = write(os.path.join(d, "cut.tar.zst"), z[:len(z) * 6 // 10])
    r = mvl("cat", p)
    expect_rc(r, 1)
    expect(b"cut.tar.zst" in r.err, "stderr does not name the file: %r" % r.err[:300])
    got = wds_samples(r.out)
    expect_samples(got, n_samples("s", 20, size=4000)[:len(got)], "samples before the break")
    expect(len(got) < 20, "all 20 samples from a cut stream")


@check("gzip_truncated_exit_1")
def _():
    d = S.dir("gtrunc")
    z = gzip_compress(tar_bytes(samples_to_members(n_samples("s", 20, size=4000))))
    p = write(os.path.join(d, "cut.tar.gz"), z[:len(z) // 2])
    r = mvl("cat", p)
    expect_rc(r, 1)
    expect(b"cut.tar.gz" in r.err, "stderr does not name the file: %r" % r.err[:300])
    got = wds_samples(r.out)
    expect_samples(got, n_samples("s", 20, size=4000)[:len(got)], "samples before the break")


@check("full_disk_on_stdout_exit_1")
def _():
    expect(os.path.exists("/dev/full"), "/dev/full is missing")
    with open("/dev/full", "wb") as full:
        p = subprocess.run([MVL, "cat", basic_tar()], stdin=subprocess.DEVNULL, stdout=full,
                           stderr=subprocess.PIPE, timeout=30)
    expect(p.returncode == 1, "exit status %d writing to a full disk" % p.returncode)
    expect(p.stderr.strip(), "no message about the write error")


# ---------------------------------------------------------------------------
# mvl ls

def exif_jpeg(w, h, orientation):
    from PIL import Image
    ex = Image.Exif()
    ex[274] = orientation
    return encode(pil_image(w, h, 7), "JPEG", quality=90, exif=ex.tobytes())


@functools.lru_cache(None)
def ls_fixture():
    from PIL import Image
    rgba = Image.new("RGBA", (19, 7), (10, 20, 30, 100))
    smp = (
        ("s1", (("jpg", jpeg(64, 48)), ("txt", "h\u00e9llo w\u00f6rld".encode()), ("json", b"{}")),
         "jpeg", "64x48", "11"),
        ("s2", (("png", png(33, 17)), ("txt", "\u65e5\u672c\u8a9e".encode())), "png", "33x17", "3"),
        ("s3", (("webp", webp(20, 10)),), "webp", "20x10", "-"),
        ("s4", (("webp", webp(21, 13, lossless=True)), ("txt", "\U0001f642ok".encode())),
         "webp", "21x13", "3"),
        ("s5", (("webp", encode(rgba, "WEBP", quality=80)), ("txt", b"")), "webp", "19x7", "0"),
        ("s6", (("txt", b"abc"),), "-", "-", "3"),
        ("s7", (("jpg", b"not an image at all, just text"), ("txt", b"x")), "invalid", "-", "1"),
        ("s8", (("txt", b"12345"), ("png", png(5, 6)), ("json", b"{}")), "png", "5x6", "5"),
        ("s9", (("png", jpeg(10, 20)), ("txt", b"ab")), "jpeg", "10x20", "2"),
        ("s10", (("jpg", exif_jpeg(40, 20, 6)),), "jpeg", "40x20", "-"),
        ("s11", (("json", b"{}"), ("cls", b"1")), "-", "-", "-"),
    )
    d = S.dir("ls")
    p = write_tar(d, "ls.tar", [(k, ms) for k, ms, *_ in smp])
    lines = ["%s\t%s\t%s\t%s\t%s" % (k, ",".join(e for e, _ in ms), f, wh, cc)
             for k, ms, f, wh, cc in smp]
    r = mvl("ls", p)
    return p, lines, r


def ls_line(key):
    p, lines, r = ls_fixture()
    expect_rc(r, 0)
    got = [l for l in r.out.decode().splitlines() if l.split("\t")[0] == key]
    want = [l for l in lines if l.split("\t")[0] == key]
    eq(got, want, "ls line for %s" % key)


@check("ls_exact_lines")
def _():
    p, lines, r = ls_fixture()
    expect_rc(r, 0)
    eq(r.out.decode().split("\n"), lines + [""], "ls output")


for _name, _key in (("ls_jpeg_size_and_caption_code_points", "s1"),
                    ("ls_png_size_cjk_caption", "s2"),
                    ("ls_webp_lossy_no_caption", "s3"),
                    ("ls_webp_lossless_emoji_caption", "s4"),
                    ("ls_webp_vp8x_alpha_empty_caption", "s5"),
                    ("ls_no_image_dashes", "s6"),
                    ("ls_invalid_image_bytes", "s7"),
                    ("ls_members_in_stream_order", "s8"),
                    ("ls_format_from_content_not_name", "s9"),
                    ("ls_exif_size_as_stored", "s10"),
                    ("ls_no_image_no_caption", "s11")):
    S.run(_name, functools.partial(ls_line, _key))


@check("ls_reads_zstd_stdin")
def _():
    p, lines, r = ls_fixture()
    r2 = mvl("ls", input=zstd_compress(read(p)))
    expect_rc(r2, 0)
    eq(r2.out.decode().split("\n"), lines + [""], "ls of zstd stdin")


@check("ls_agrees_with_reference_reader")
def _():
    r = mvl("ls", input=basic_out().out)
    expect_rc(r, 0)
    got = [(l.split("\t")[0], l.split("\t")[1].split(",")) for l in r.out.decode().splitlines()]
    want = [(k, [e for e, _ in ms]) for k, ms in wds_samples(basic_out().out)]
    eq(got, want, "(key, members) from ls vs the reference reader")


@check("ls_has_no_stream_output")
def _():
    r = mvl("ls", "-o", os.path.join(S.dir("lso"), "%d.tar"), basic_tar())
    expect_rc(r, 2)
    eq(r.out, b"", "stdout")


S.finish()
