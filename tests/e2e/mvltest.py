"""mvltest: shared helpers for mvl's end-to-end tests.

Protocol (tests/run.sh): each check prints exactly one line, `ok NAME` or
`not ok NAME: REASON`; the script exits 1 when any check failed.  An
exception inside a check is reported as that check's failure and the next
check runs.  Everything is made in a temporary directory from real bytes
(PIL-encoded images, tarfile-written tars); only the standard library, PIL
and numpy are used.
"""
import gzip
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import zlib
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MVL = os.environ.get("MVL") or os.path.join(ROOT, "build", "mvl")
TIMEOUT = 60


class Fail(Exception):
    """A check's expectation did not hold."""


def oneline(s, limit=400):
    s = " ".join(str(s).split())
    return s if len(s) <= limit else s[:limit] + "..."


def short(v, limit=160):
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "..."


def expect(cond, msg):
    if not cond:
        raise Fail(msg)


def eq(actual, expected, what):
    if actual != expected:
        raise Fail("%s: expected %s, got %s" % (what, short(expected), short(actual)))


def near(actual, expected, tol, what):
    """Every component of actual within tol of expected."""
    a = list(actual) if hasattr(actual, "__iter__") else [actual]
    e = list(expected) if hasattr(expected, "__iter__") else [expected]
    if len(a) != len(e) or any(abs(float(x) - float(y)) > tol for x, y in zip(a, e)):
        raise Fail("%s: expected %s (+-%s), got %s" % (
            what, [round(float(y), 1) for y in e], tol, [round(float(x), 1) for x in a]))


# ---------------------------------------------------------------------------
# the suite

class Suite:
    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="mvl-e2e-%s-" % name)
        self.npass = 0
        self.nfail = 0
        self._n = 0

    def dir(self, label="d"):
        """A fresh empty directory inside the suite's temporary folder."""
        self._n += 1
        d = os.path.join(self.tmp, "%03d-%s" % (self._n, re.sub(r"[^A-Za-z0-9_.-]", "_", label)))
        os.makedirs(d)
        return d

    def check(self, name):
        """Decorator: runs the function now as check NAME."""
        def deco(fn):
            self.run(name, fn)
            return fn
        return deco

    def run(self, name, fn):
        # MVL_TEST_ONLY=REGEX: run only the matching checks (a developer's
        # shortcut; make test never sets it)
        only = os.environ.get("MVL_TEST_ONLY")
        if only and not re.search(only, name):
            return
        t0 = time.time()
        try:
            fn()
        except Fail as e:
            self.nfail += 1
            print("not ok %s: %s" % (name, oneline(e)), flush=True)
        except subprocess.TimeoutExpired as e:
            self.nfail += 1
            print("not ok %s: timed out: %s" % (name, oneline(e)), flush=True)
        except Exception as e:  # a broken check is a failed check
            self.nfail += 1
            print("not ok %s: %s: %s" % (name, type(e).__name__, oneline(e)), flush=True)
            traceback.print_exc(file=sys.stderr)
        else:
            self.npass += 1
            print("ok %s" % name, flush=True)
        dt = time.time() - t0
        if dt > 5:
            print("# %s took %.1f s" % (name, dt), file=sys.stderr, flush=True)

    def finish(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        sys.stdout.flush()
        sys.exit(1 if self.nfail else 0)


# ---------------------------------------------------------------------------
# running mvl

class Result:
    def __init__(self, args, rc, out, err, elapsed, maxrss_kb=None):
        self.args, self.rc, self.out, self.err = args, rc, out, err
        self.elapsed = elapsed
        self.maxrss_kb = maxrss_kb

    @property
    def errtext(self):
        return self.err.decode("utf-8", "replace")

    def __repr__(self):
        return "mvl %s -> rc %s, stderr %s" % (" ".join(self.args), self.rc,
                                                oneline(self.errtext, 300))


def _sane(r):
    """A crash or a sanitizer report is a failure whatever the check says."""
    if r.rc < 0:
        raise Fail("mvl %s: killed by signal %d; stderr: %s" % (
            " ".join(r.args), -r.rc, oneline(r.errtext, 300)))
    t = r.errtext
    for marker in ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer",
                   "runtime error:", "Segmentation fault", "double free"):
        if marker in t:
            i = t.find("ERROR:") if "ERROR:" in t else t.find(marker)
            raise Fail("mvl %s: %s in stderr: %s" % (" ".join(r.args), marker,
                                                     oneline(t[i:], 400)))
    return r


def mvl(*args, input=None, cwd=None, timeout=TIMEOUT, rusage=False):
    """Runs mvl with args; stdin is `input` (bytes) or /dev/null."""
    args = [str(a) for a in args]
    t0 = time.time()
    if not rusage:
        p = subprocess.run([MVL] + args, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           cwd=cwd, timeout=timeout)
        return _sane(Result(args, p.returncode, p.stdout, p.stderr, time.time() - t0))
    # with the child's own resource usage (peak memory)
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe, \
            tempfile.TemporaryFile() as fi:
        if input is not None:
            fi.write(input)
            fi.seek(0)
        p = subprocess.Popen([MVL] + args, stdin=fi if input is not None else subprocess.DEVNULL,
                             stdout=fo, stderr=fe, cwd=cwd)
        deadline = time.time() + timeout
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.time() > deadline:
                p.kill()
                os.wait4(p.pid, 0)
                raise subprocess.TimeoutExpired([MVL] + args, timeout)
            time.sleep(0.01)
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        return _sane(Result(args, p.returncode, fo.read(), fe.read(), time.time() - t0,
                            ru.ru_maxrss))


def expect_rc(r, rc):
    if r.rc != rc:
        raise Fail("mvl %s: exit %d, expected %d; stderr: %s" % (
            " ".join(r.args), r.rc, rc, oneline(r.errtext, 300)))


SUMMARY_RE = re.compile(
    r"^mvl (\w+(?: \w+)?): (\d+) in, (\d+) kept, (\d+) rejected(?: \((.*)\))?$")


def summary(r):
    """The end-of-run line `mvl CMD: N in, N kept, N rejected (reason N, ...)`
    as a dict; exactly one such line must be on stderr."""
    lines = [l for l in r.errtext.splitlines() if SUMMARY_RE.match(l)]
    if len(lines) != 1:
        raise Fail("expected one summary line on stderr, found %d: %s" % (
            len(lines), oneline(r.errtext, 300)))
    m = SUMMARY_RE.match(lines[0])
    reasons = {}
    if m.group(5):
        for part in m.group(5).split(", "):
            name, _, n = part.rpartition(" ")
            expect(name and n.isdigit(), "bad reason list in %r" % lines[0])
            reasons[name] = int(n)
    expect(sum(reasons.values()) == int(m.group(4)),
           "reason counts do not add up to the rejected total: %r" % lines[0])
    return {"cmd": m.group(1), "in": int(m.group(2)), "kept": int(m.group(3)),
            "rejected": int(m.group(4)), "reasons": reasons, "line": lines[0]}


def expect_summary(r, cmd, nin, kept, reasons=None):
    s = summary(r)
    reasons = reasons or {}
    got = (s["cmd"], s["in"], s["kept"], s["rejected"], s["reasons"])
    want = (cmd, nin, kept, sum(reasons.values()), reasons)
    eq(got, want, "summary (cmd, in, kept, rejected, reasons) from %r" % s["line"])
    return s


def read_rejects(path):
    """The rejects TSV as a list of (key, source, reason, detail).  Keys
    and details come from member names and messages, not always UTF-8:
    bytes that are not stay as surrogate escapes (as tarfile decodes
    names), so they compare with wds_samples' keys."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    eq(lines[0], "key\tsource\treason\tdetail", "rejects TSV header")
    expect(text.endswith("\n"), "rejects TSV does not end with a newline")
    rows = []
    for l in lines[1:-1]:
        cols = l.split("\t")
        expect(len(cols) == 4, "rejects TSV row without 4 columns: %r" % l)
        rows.append(tuple(cols))
    return rows


def tmp_leftovers(d):
    """Files under d that look like unfinished temporary outputs."""
    out = []
    for root, _, files in os.walk(d):
        out += [os.path.join(root, f) for f in files if ".tmp" in f]
    return out


# ---------------------------------------------------------------------------
# compression

def have_zstd_cli():
    return shutil.which("zstd") is not None


def zstd_compress(data):
    if have_zstd_cli():
        return subprocess.run(["zstd", "-q", "-c", "--check", "-3"], input=data,
                              stdout=subprocess.PIPE, check=True).stdout
    # fall back on mvl itself (a weaker, not independent fixture)
    r = mvl("cat", "--compress", "zst", input=data)
    expect_rc(r, 0)
    return r.out


def zstd_decompress(data):
    if have_zstd_cli():
        p = subprocess.run(["zstd", "-q", "-d", "-c"], input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.returncode != 0:
            raise Fail("zstd -d failed: %s" % oneline(p.stderr))
        return p.stdout
    r = mvl("cat", input=data)
    expect_rc(r, 0)
    return r.out


def gzip_compress(data):
    return gzip.compress(data, mtime=0)


ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


def decompress(data):
    if data[:4] == ZSTD_MAGIC:
        return zstd_decompress(data)
    if data[:2] == GZIP_MAGIC:
        return gzip.decompress(data)
    return data


# ---------------------------------------------------------------------------
# tars

def write(path, data):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tar_bytes(members, fmt=tarfile.PAX_FORMAT, messy=True):
    """A tar from members: (name, bytes) pairs or dicts with name, data and
    optionally type (tarfile.*TYPE), linkname.  messy: varied mtime, owner
    and mode, as real shards have (mvl must normalise them)."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=fmt) as tf:
        for i, m in enumerate(members):
            if not isinstance(m, dict):
                m = {"name": m[0], "data": m[1]}
            ti = tarfile.TarInfo(m["name"])
            ti.type = m.get("type", tarfile.REGTYPE)
            if messy:
                ti.mtime = 1600000000 + 37 * i
                ti.uid, ti.gid = 1000 + i % 3, 100 + i % 2
                ti.uname, ti.gname = "user%d" % (i % 3), "grp"
                ti.mode = (0o600, 0o644, 0o755)[i % 3]
            if "linkname" in m:
                ti.linkname = m["linkname"]
            if ti.type == tarfile.CHRTYPE:
                ti.devmajor, ti.devminor = 1, 3
            data = m.get("data", b"")
            if ti.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                ti.size = 0
                tf.addfile(ti)
    return bio.getvalue()


def samples_to_members(samples):
    """[(key, [(ext, bytes), ...])] -> [(name, bytes)] in the given order."""
    return [("%s.%s" % (k, e), d) for k, ms in samples for e, d in ms]


def split_name(name):
    """WebDataset's rule: key = path up to the first dot of the file name,
    extension = the rest, lower-cased."""
    d, slash, base = name.rpartition("/")
    i = base.find(".")
    if i <= 0:
        return None, None
    return d + slash + base[:i], base[i + 1:].lower()


def wds_samples(data):
    """A tiny reference reader with the Python webdataset conventions:
    regular members, grouped consecutively by key.  Returns
    [(key, [(ext, bytes), ...])] in stream order."""
    data = decompress(data)
    if not data.strip(b"\0"):
        return []
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf:
            if not m.isfile():
                continue
            key, ext = split_name(m.name)
            if key is None:
                raise Fail("member %r has no extension" % m.name)
            blob = tf.extractfile(m).read()
            if out and out[-1][0] == key:
                out[-1][1].append((ext, blob))
            else:
                out.append((key, [(ext, blob)]))
    return out


def as_dicts(samples):
    """[(key, {ext: bytes})] (member order ignored)."""
    return [(k, dict(ms)) for k, ms in samples]


def describe_diff(got, want):
    """First difference between two sample lists, in words."""
    if len(got) != len(want):
        return "%d samples (%s), expected %d (%s)" % (
            len(got), short([k for k, _ in got], 120), len(want), short([k for k, _ in want], 120))
    for i, ((k1, m1), (k2, m2)) in enumerate(zip(got, want)):
        m1, m2 = dict(m1), dict(m2)
        if k1 != k2:
            return "sample %d key %r, expected %r" % (i, k1, k2)
        if sorted(m1) != sorted(m2):
            return "sample %r members %s, expected %s" % (k1, sorted(m1), sorted(m2))
        for e, b in m2.items():
            if m1[e] != b:
                return "sample %r member %r differs (%d bytes, expected %d)" % (
                    k1, e, len(m1[e]), len(b))
    return "no difference"


def expect_samples(got, want, what="samples"):
    g, w = as_dicts(got), as_dicts(want)
    if g != w:
        raise Fail("%s: %s" % (what, describe_diff(g, w)))


def tar_names(data):
    data = decompress(data)
    if not data.strip(b"\0"):
        return []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        return [m.name for m in tf]


def raw_headers(data):
    """Parses the tar headers by hand: list of dicts with the raw fields of
    every header block (pax 'x' blocks included)."""
    out = []
    off = 0
    while off + 512 <= len(data):
        h = data[off:off + 512]
        if h == b"\0" * 512:
            break
        def octal(a, b):
            f = h[a:b].split(b"\0")[0].strip()
            return int(f, 8) if f else 0
        chk = octal(148, 156)
        calc = sum(h[:148]) + 8 * 32 + sum(h[156:])
        size = octal(124, 136)
        out.append({"name": h[0:100].split(b"\0")[0], "mode": octal(100, 108),
                    "uid": octal(108, 116), "gid": octal(116, 124), "size": size,
                    "mtime": octal(136, 148), "type": h[156:157], "magic": h[257:265],
                    "prefix": h[345:500].split(b"\0")[0], "checksum_ok": chk == calc,
                    "offset": off})
        off += 512 + (size + 511) // 512 * 512
    return out


# ---------------------------------------------------------------------------
# images

def _np():
    import numpy
    return numpy


def gradient(w, h, seed=0):
    """An RGB array with structure (so JPEG/WebP encode something real)."""
    np = _np()
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1) + seed * 40) % 256
    g = (y * 255 // max(h - 1, 1) + seed * 70) % 256
    b = ((x + y) * 3 + seed * 90) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def pil_image(w, h, seed=0, mode="RGB"):
    from PIL import Image
    im = Image.fromarray(gradient(w, h, seed), "RGB")
    return im.convert(mode) if mode != "RGB" else im


def encode(im, fmt, **kw):
    bio = io.BytesIO()
    im.save(bio, fmt, **kw)
    return bio.getvalue()


def jpeg(w, h, seed=0, quality=90, **kw):
    return encode(pil_image(w, h, seed), "JPEG", quality=quality, **kw)


def png(w, h, seed=0, mode="RGB"):
    return encode(pil_image(w, h, seed, mode), "PNG")


def webp(w, h, seed=0, lossless=False, quality=80):
    return encode(pil_image(w, h, seed), "WEBP", lossless=lossless, quality=quality)


def decode(data):
    from PIL import Image
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + \
        struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)


def png_header_bomb(w=60000, h=60000):
    """A PNG whose IHDR claims w x h RGB (valid CRCs) with a tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + png_chunk(b"IEND", b""))


def region_mean(im, box):
    """Mean RGB of im (PIL) over box = (x0, y0, x1, y1)."""
    np = _np()
    a = np.asarray(im.convert("RGB").crop(box), dtype=np.float64)
    return [float(a[..., c].mean()) for c in range(3)]


def smart_resize(height, width, factor=28, min_pixels=3136, max_pixels=1003520):
    """Qwen2.5-VL's reference (qwen_vl_utils / transformers)."""
    import math
    if max(height, width) / min(height, width) > 200:
        raise ValueError("aspect ratio")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar
