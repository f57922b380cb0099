"""test_pack.py: `mvl pack` on real bytes, read back with an independent
reader written from mixers/PACK_FORMAT.md alone (struct + numpy).

Fixtures are made here: caption samples with JPEG / PNG / WebP images of
assorted sizes (tiny, non-multiples of 28, EXIF-rotated, grayscale, alpha),
LLaVA conversations with and without "<image>", text-only samples, over-long
samples, and samples that must be rejected (corrupt or truncated image, no
caption, a caption holding "<|endoftext|>", an image larger than a sequence,
an aspect ratio smart_resize refuses, malformed conversations).  The ids
each segment should hold are rebuilt here from chat.h's template with
`mvl tok encode --special-mode ordinary` on the plain-text pieces; the
tokenizer is cl100k_base's rank file, exported from the npm tiktoken
package exactly as test_tok.py does (scripts/tok/export_ranks.js)."""
import io
import json
import os
import random
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mvltest import (MVL, ROOT, Fail, Suite, encode, eq, expect, expect_rc,  # noqa: E402
                     jpeg, mvl, pil_image, png, read, read_rejects, smart_resize,
                     summary, tar_bytes, tmp_leftovers, write)

import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

S = Suite("pack")
check = S.check

MIN_PIXELS, MAX_PIXELS = 3136, 1003520  # mvl pack's defaults (Qwen2.5-VL's)
VS, PAD, VE, IMS, IME, EOT = ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>",
                              "<|im_start|>", "<|im_end|>", "<|endoftext|>")
SPECIAL_NAMES = (VS, PAD, VE, IMS, IME, EOT)

# ---------------------------------------------------------------------------
# the pack reader, from mixers/PACK_FORMAT.md only


class PackError(Fail):
    """The bytes break PACK_FORMAT.md."""


def align8(n):
    return (n + 7) & ~7


class Seg:
    __slots__ = ("start", "len", "flags", "key")

    def __init__(self, start, n, flags, key):
        self.start, self.len, self.flags, self.key = start, n, flags, key


class Img:
    __slots__ = ("segment", "token", "h", "w", "offset", "px")

    def __init__(self, segment, token, h, w, offset, px):
        self.segment, self.token, self.h, self.w, self.offset, self.px = segment, token, h, w, offset, px


class Seq:
    __slots__ = ("ntok", "nseg", "nimg", "ids", "pos", "seg", "loss", "segs", "imgs", "offset", "size")


class Pack:
    __slots__ = ("L", "seqs", "size")

    def segments(self):
        """(sequence, segment index from 0, Seg) for every segment."""
        for s in self.seqs:
            for k, g in enumerate(s.segs):
                yield s, k, g

    def keys(self):
        return [g.key for _, _, g in self.segments()]

    def tokens(self):
        return sum(s.ntok for s in self.seqs)

    def padding(self):
        cap = len(self.seqs) * self.L
        return 1 - self.tokens() / cap if cap else 0.0


def read_pack(data):
    """Parses a whole pack file; raises PackError on anything the format
    forbids (wrong magic or version, index not at the end, records that
    do not tile the file, tables or pixels outside their record, non-zero
    padding bytes)."""
    def bad(msg):
        raise PackError("pack: " + msg)
    size = len(data)
    if size < 64:
        bad("%d bytes, shorter than the 64-byte header" % size)
    magic, version, L, nseq, index_off, hsize = struct.unpack_from("<8sIIQQI", data, 0)
    if magic != b"MVLPACK1":
        bad("magic %r" % magic)
    if version != 1:
        bad("version %d" % version)
    if hsize != 64:
        bad("header size %d" % hsize)
    if any(data[36:64]):
        bad("reserved header bytes are not zero")
    if L == 0:
        bad("sequence length 0")
    if index_off < 64 or index_off + 8 * nseq != size:
        bad("index_offset %d + 8 * %d sequences != file size %d" % (index_off, nseq, size))
    index = list(struct.unpack_from("<%dQ" % nseq, data, index_off))
    if nseq and index[0] != 64:
        bad("record 0 at %d, not 64" % index[0])
    if not nseq and index_off != 64:
        bad("no sequences but the index is at %d" % index_off)
    pk = Pack()
    pk.L, pk.size, pk.seqs = L, size, []
    arrays_end = 24 + 13 * L
    for i in range(nseq):
        off = index[i]
        end = index[i + 1] if i + 1 < nseq else index_off
        what = "record %d" % i

        def rbad(msg):
            bad("%s (at %d): %s" % (what, off, msg))
        if off % 8 or end <= off:
            rbad("offset not 8-aligned or records out of order (next at %d)" % end)
        if end - off < align8(arrays_end):
            rbad("%d bytes, less than the arrays need" % (end - off))
        rmagic, ntok, nseg, nimg, rsize = struct.unpack_from("<IIIIQ", data, off)
        if rmagic != 0x31514553:
            rbad("record magic %#x" % rmagic)
        if rsize != end - off or rsize % 8:
            rbad("record size %d, its span is %d" % (rsize, end - off))
        if ntok > L:
            rbad("ntok %d > L %d" % (ntok, L))
        s = Seq()
        s.offset, s.size, s.ntok, s.nseg, s.nimg = off, rsize, ntok, nseg, nimg
        s.ids = np.frombuffer(data, "<u4", L, off + 24).astype(np.int64)
        s.pos = np.frombuffer(data, "<u4", L, off + 24 + 4 * L).astype(np.int64)
        s.seg = np.frombuffer(data, "<u4", L, off + 24 + 8 * L).astype(np.int64)
        s.loss = np.frombuffer(data, "u1", L, off + 24 + 12 * L).astype(np.int64)
        zero = [(arrays_end, align8(arrays_end))]  # byte ranges (record-relative) that must be 0
        A = align8(arrays_end)
        if A + 16 * nseg > rsize:
            rbad("segment table (%d entries) past the record" % nseg)
        ents = [struct.unpack_from("<4I", data, off + A + 16 * k) for k in range(nseg)]
        kp = A + 16 * nseg
        s.segs = []
        for k, (st, n, flags, keylen) in enumerate(ents):
            if kp + keylen > rsize:
                rbad("key of segment %d past the record" % (k + 1))
            key = bytes(data[off + kp:off + kp + keylen])
            try:
                key = key.decode("utf-8")
            except UnicodeDecodeError:
                rbad("key of segment %d is not UTF-8: %r" % (k + 1, key))
            s.segs.append(Seg(st, n, flags, key))
            kp += keylen
        I = align8(kp)
        zero.append((kp, I))
        if I + 24 * nimg > rsize:
            rbad("image table (%d entries) past the record" % nimg)
        P = align8(I + 24 * nimg)
        zero.append((I + 24 * nimg, P))
        s.imgs = []
        at = P
        for k in range(nimg):
            sg, tok, h, w, po = struct.unpack_from("<4IQ", data, off + I + 24 * k)
            n = h * w * 3
            if po % 8 or po < at or po + n > rsize:
                rbad("image %d: pixels at %d (+%d bytes) not 8-aligned, overlapping or past the "
                     "record (%d bytes, next free %d)" % (k, po, n, rsize, at))
            zero.append((at, po))
            px = np.frombuffer(data, "u1", n, off + po).reshape(h, w, 3) if n else None
            s.imgs.append(Img(sg, tok, h, w, po, px))
            at = po + n
        zero.append((at, rsize))
        for a, b in zero:
            if a < b and any(data[off + a:off + b]):
                rbad("bytes %d..%d should be zero padding" % (a, b))
        pk.seqs.append(s)
    return pk


def read_pack_file(path):
    return read_pack(read(path))


# ---------------------------------------------------------------------------
# structure every pack must have (returns problems, empty when fine)


def structure_problems(pk, ids=None, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, limit=8):
    """ids: the special ids (name -> id) when known, for the pad/loss rules."""
    out = []
    L = pk.L
    eot = ids[EOT] if ids else None
    seen = {}
    for i, s in enumerate(pk.seqs):
        w = "seq %d" % i
        if s.nseg != len(s.segs) or s.nseg < 1:
            out.append("%s: %d segments" % (w, s.nseg))
        want_seg = np.zeros(L, dtype=np.int64)
        want_pos = np.zeros(L, dtype=np.int64)
        t = 0
        for k, g in enumerate(s.segs):
            if g.start != t or g.len < 1 or g.start + g.len > L:
                out.append("%s segment %d (%s): start %d len %d, expected to start at %d within %d"
                           % (w, k + 1, g.key, g.start, g.len, t, L))
                break
            want_seg[g.start:g.start + g.len] = k + 1
            want_pos[g.start:g.start + g.len] = np.arange(g.len)
            t += g.len
            if g.flags & ~1:
                out.append("%s segment %d (%s): unknown flags %#x" % (w, k + 1, g.key, g.flags))
            if g.key in seen:
                out.append("key %r in %s and %s" % (g.key, seen[g.key], w))
            seen[g.key] = w
            if s.loss[g.start]:
                out.append("%s segment %d (%s): loss on its first token" % (w, k + 1, g.key))
        if t != s.ntok:
            out.append("%s: ntok %d but the segments cover %d" % (w, s.ntok, t))
        if not np.array_equal(s.seg, want_seg):
            j = int(np.nonzero(s.seg != want_seg)[0][0])
            out.append("%s: seg[%d] = %d, the segment table says %d" % (w, j, s.seg[j], want_seg[j]))
        if not np.array_equal(s.pos, want_pos):
            j = int(np.nonzero(s.pos != want_pos)[0][0])
            out.append("%s: pos[%d] = %d, expected %d (restart at 0 per segment, 0 in padding)"
                       % (w, j, s.pos[j], want_pos[j]))
        if ((s.loss != 0) & (s.loss != 1)).any():
            out.append("%s: loss values other than 0/1" % w)
        tail = slice(s.ntok, L)
        if s.loss[tail].any():
            out.append("%s: loss in the padding" % w)
        if eot is not None and (s.ids[tail] != eot).any():
            out.append("%s: padding ids are not <|endoftext|>" % w)
        if ids:
            nolearn = np.isin(s.ids, [ids[PAD], ids[VS], ids[VE]])
            if (s.loss[nolearn] != 0).any():
                out.append("%s: loss on image pad / vision_start / vision_end tokens" % w)
        # images
        if s.nimg != len(s.imgs):
            out.append("%s: nimg %d, table %d" % (w, s.nimg, len(s.imgs)))
        pads_by_seg = {}
        for m in s.imgs:
            what = "%s image of segment %d" % (w, m.segment)
            if not 1 <= m.segment <= len(s.segs):
                out.append("%s: segment out of range" % what)
                continue
            g = s.segs[m.segment - 1]
            n = (m.h // 28) * (m.w // 28)
            if m.h % 28 or m.w % 28 or m.h == 0 or m.w == 0:
                out.append("%s (%s): %dx%d not multiples of 28" % (what, g.key, m.w, m.h))
            if not min_pixels <= m.h * m.w <= max_pixels:
                out.append("%s (%s): %dx%d = %d pixels outside [%d, %d]"
                           % (what, g.key, m.w, m.h, m.h * m.w, min_pixels, max_pixels))
            if not (g.start + 1 <= m.token and m.token + n + 1 <= g.start + g.len):
                out.append("%s (%s): pads %d..%d (+vision start/end) not inside the segment %d..%d"
                           % (what, g.key, m.token, m.token + n, g.start, g.start + g.len))
                continue
            pads_by_seg[m.segment] = pads_by_seg.get(m.segment, 0) + n
            if ids:
                if s.ids[m.token - 1] != ids[VS] or s.ids[m.token + n] != ids[VE] or \
                        (s.ids[m.token:m.token + n] != ids[PAD]).any():
                    out.append("%s (%s): not <|vision_start|> %d x <|image_pad|> <|vision_end|> at %d"
                               % (what, g.key, n, m.token))
        if ids:
            for k, g in enumerate(s.segs):
                span = s.ids[g.start:g.start + g.len]
                npad = int((span == ids[PAD]).sum())
                if npad != pads_by_seg.get(k + 1, 0):
                    out.append("%s segment %d (%s): %d image pads, its images account for %d"
                               % (w, k + 1, g.key, npad, pads_by_seg.get(k + 1, 0)))
                nvs = int((span == ids[VS]).sum())
                nimg = sum(1 for m in s.imgs if m.segment == k + 1)
                if nvs != nimg:
                    out.append("%s segment %d (%s): %d vision blocks, %d images"
                               % (w, k + 1, g.key, nvs, nimg))
        if len(out) >= limit:
            break
    return out[:limit]


def expect_structure(pk, ids=None, **kw):
    p = structure_problems(pk, ids, **kw)
    expect(not p, "; ".join(p))


# ---------------------------------------------------------------------------
# the tokenizer (cl100k_base, exported from the npm tiktoken package)

RANKS = S.dir("ranks")
TOK = os.path.join(RANKS, "cl100k_base.tiktoken")
TOKMETA = {}


@check("cl100k_ranks_exported")
def _():
    p = subprocess.run(["node", "scripts/tok/export_ranks.js", RANKS, "--encodings", "cl100k_base",
                        "--quiet"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=120)
    expect(p.returncode == 0 and os.path.exists(TOK),
           "node scripts/tok/export_ranks.js failed: %s" % p.stderr.decode()[-300:])
    TOKMETA.update(json.load(open(os.path.join(RANKS, "cl100k_base.json"))))
    eq(TOKMETA["special_tokens"][EOT], 100257, "cl100k <|endoftext|>")


def encode_chunks(chunks):
    """{text: [ids]} for plain-text chunks, by one `mvl tok encode --stream`
    (special tokens in them read as ordinary text)."""
    chunks = sorted(set(c for c in chunks if c))
    d = S.dir("chunks")
    keys = ["c%06d" % i for i in range(len(chunks))]
    write(os.path.join(d, "chunks.tar"),
          tar_bytes([(k + ".txt", c.encode("utf-8")) for k, c in zip(keys, chunks)], messy=False))
    r = mvl("tok", "encode", "--tiktoken", TOK, "--encoding", "cl100k_base", "--special-mode", "ordinary",
            "--stream", "--format", "jsonl", "-j1", os.path.join(d, "chunks.tar"), timeout=120)
    expect_rc(r, 0)
    got = {}
    for line in r.out.decode().splitlines():
        o = json.loads(line)
        got[o["key"]] = o["ids"]
    out = {"": []}
    for k, c in zip(keys, chunks):
        expect(k in got, "mvl tok encode gave no ids for chunk %r" % c)
        out[c] = got[k]
    return out


def tok_decode(ids):
    r = mvl("tok", "decode", "--tiktoken", TOK, "--encoding", "cl100k_base",
            input=(" ".join(str(int(i)) for i in ids) + "\n").encode())
    expect_rc(r, 0)
    return r.out


# ---------------------------------------------------------------------------
# fixtures

WORDS = ("the a of and to in is on with for at by from red green blue yellow cat dog house tree "
         "river mountain city street car light dark small large old new morning evening people child "
         "woman man boat sky cloud water field road window door table chair book picture photo view "
         "close wide top bottom left right front back bright quiet busy market bridge garden flower "
         "stone wall roof train station beach sand wave forest path hill snow winter summer").split()


def words(rng, n):
    t = " ".join(rng.choice(WORDS) for _ in range(n))
    return t[:1].upper() + t[1:] + "."


def jpeg_exif(w, h, orientation, seed=0):
    ex = Image.Exif()
    ex[0x0112] = orientation
    return encode(pil_image(w, h, seed), "JPEG", quality=92, exif=ex.tobytes())


def png_mode(w, h, mode, seed=0):
    im = pil_image(w, h, seed)
    if mode == "L":
        im = im.convert("L")
    elif mode == "RGBA":
        a = ((np.arange(w)[None, :] * 255 // max(w - 1, 1)) * np.ones((h, 1))).astype(np.uint8)
        im = im.convert("RGBA")
        im.putalpha(Image.fromarray(a, "L"))
    return encode(im, "PNG")


def reference_rgb(data):
    """The image as the model should see it: EXIF orientation applied,
    alpha composited on white, RGB."""
    im = Image.open(io.BytesIO(data))
    im.load()
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return im.convert("RGB")


def conv_json(turns, extra=None):
    o = {"conversations": [{"from": f, "value": v} for f, v in turns]}
    if extra:
        o.update(extra)
    return json.dumps(o).encode()


class Fx:
    """One fixture sample: its members, what it is, and what should happen."""

    def __init__(self, key, members, kind, text=None, turns=None, image=None, fate="kept"):
        self.key, self.members, self.kind = key, members, kind
        self.text, self.turns, self.image = text, turns, image  # image: the encoded bytes
        self.fate = fate  # kept | truncated | a reject reason


def main_fixture():
    rng = random.Random(11)
    fx = []

    def cap(key, img_ext, img, text, fate="kept"):
        m = ([(img_ext, img)] if img is not None else []) + [("txt", text.encode("utf-8"))]
        fx.append(Fx(key, m, "caption", text=text, image=img, fate=fate))

    def conv(key, img_ext, img, turns, fate="kept", extra=None):
        m = ([(img_ext, img)] if img is not None else []) + [("json", conv_json(turns, extra))]
        fx.append(Fx(key, m, "conv", turns=turns, image=img, fate=fate))

    cap("cap-jpeg-300x200", "jpg", jpeg(300, 200, 1), "A gradient of red and green, photographed at dusk.")
    cap("cap-jpeg-28x28", "jpg", jpeg(28, 28, 2), "A tiny square.")
    cap("cap-jpeg-10x7", "jpg", jpeg(10, 7, 3), "Smaller than one patch.")
    cap("cap-png-123x457", "png", png(123, 457, 4), "A tall PNG, not a multiple of 28 either way.")
    cap("cap-png-exact-112x56", "png", png(112, 56, 5), "Exactly four by two merged patches.")
    cap("cap-jpeg-exif6-240x120", "jpg", jpeg_exif(240, 120, 6, 6), "Stored sideways, EXIF says rotate 90.")
    cap("cap-jpeg-exif3-150x100", "jpg", jpeg_exif(150, 100, 3, 7), "Upside down until EXIF is applied.")
    cap("cap-jpeg-exif8-97x203", "jpg", jpeg_exif(97, 203, 8, 8), "Rotated the other way.")
    cap("cap-png-gray-200x150", "png", png_mode(200, 150, "L", 9), "A grayscale picture.")
    cap("cap-png-alpha-90x60", "png", png_mode(90, 60, "RGBA", 10), "Fading out to white on the right.")
    cap("cap-jpeg-wide-1000x30", "jpg", jpeg(1000, 30, 11), "A very wide strip.")
    cap("cap-jpeg-640x480", "jpg", jpeg(640, 480, 12), words(rng, 40))
    cap("cap-webp-150x150", "webp", encode(pil_image(150, 150, 13), "WEBP", quality=90), "A WebP square.")
    cap("sub/dir/cap-nested-key", "jpg", jpeg(64, 96, 14), "A key with directories in it.")
    cap("txt-plain", None, None, "Just text, no image at all.")
    cap("txt-unicode", None, None, "Caf\u00e9 \u2615 na\u00efve \u2014 \u6771\u4eac\u306e\u591c\u666f \U0001F44D\U0001F3FD ok")
    cap("txt-short", None, None, "Hi")
    conv("conv-img-placeholder", "png", png(180, 120, 15),
         [("human", "<image>\nWhat colours are in this picture?"), ("gpt", "Red, green and blue gradients.")])
    conv("conv-img-noplaceholder", "jpg", jpeg(200, 260, 16),
         [("human", "Describe the image."), ("gpt", "A smooth colour ramp.")])
    conv("conv-img-midtext", "jpg", jpeg(100, 100, 17),
         [("human", "Look at this: <image>\nwhat is it?"), ("gpt", "A square gradient.")])
    conv("conv-multiturn", "jpg", jpeg(333, 222, 18),
         [("human", "<image>\nHow many colours?"), ("gpt", "Three channels vary."),
          ("human", "Which one wraps around?"), ("gpt", "The blue one wraps every so often.")])
    # chat.h: the image replaces "<image>" or opens the first *user* turn
    conv("conv-system-img", "jpg", jpeg(150, 90, 27),
         [("system", "You describe images."), ("human", "Describe it."), ("gpt", "A ramp.")])
    conv("conv-system-img-placeholder", "png", png(70, 130, 28),
         [("system", "You describe images."), ("human", "<image>\nWhat is this?"), ("gpt", "A tall ramp.")])
    conv("conv-system-text", None, None,
         [("system", "You are terse."), ("human", "Name a colour."), ("gpt", "Teal.")])
    conv("conv-role-names", None, None, [("user", "Say yes."), ("assistant", "Yes.")])
    # over-long (L = 1024)
    cap("long-txt", None, None, words(rng, 1400), fate="truncated")
    cap("long-cap-img", "jpg", jpeg(640, 480, 19), words(rng, 900), fate="truncated")
    conv("long-conv-answer", "jpg", jpeg(120, 90, 20),
         [("human", "<image>\nTell me everything."), ("gpt", words(rng, 1300))], fate="truncated")
    conv("long-conv-question", None, None,
         [("human", words(rng, 1300)), ("gpt", "Too late to learn this.")], fate="no_target")
    cap("huge-image-1200x1000", "jpg", jpeg(1200, 1000, 21), "More image pads than a sequence holds.",
        fate="too_long")
    # rejected
    good = jpeg(120, 80, 22)
    cap("bad-corrupt-image", "jpg", b"\xff\xd8\xff\xe0" + bytes(rng.randrange(256) for _ in range(300)),
        "The image is noise.", fate="bad_image")
    # decoding fails: the reason is img_decode's own word (image.h)
    cap("bad-truncated-image", "jpg", good[:len(good) // 2], "Half a JPEG.", fate="corrupt_image")
    cap("bad-aspect-1x300", "png", png(300, 1, 23), "Aspect ratio 300.", fate="bad_image")
    fx.append(Fx("no-caption", [("jpg", jpeg(80, 80, 24))], "caption", fate="no_text"))
    fx.append(Fx("empty-caption", [("jpg", jpeg(80, 80, 25)), ("txt", b"")], "caption", fate="no_text"))
    cap("special-in-caption", "jpg", jpeg(80, 80, 26), "A caption with <|endoftext|> inside.",
        fate="special_token")
    fx.append(Fx("bad-conv-not-list", [("json", b'{"conversations": "hello"}')], "conv",
                 fate="bad_conversation"))
    # an image and no user turn to put it in (layout.h)
    conv("bad-conv-img-no-user-turn", "jpg", jpeg(100, 100, 29), [("gpt", "An answer alone.")],
         fate="bad_conversation")
    fx.append(Fx("bad-conv-role", [("json", conv_json([("robot", "beep"), ("gpt", "boop")]))], "conv",
                 fate="bad_conversation"))
    return fx


def fixture_tar(fx):
    return tar_bytes([("%s.%s" % (f.key, e), d) for f in fx for e, d in f.members])


L_MAIN = 1024
FX = main_fixture()
FXD = {f.key: f for f in FX}
MAIN_DIR = S.dir("main")
MAIN_TAR = write(os.path.join(MAIN_DIR, "in.tar"), fixture_tar(FX))
MAIN = {}  # filled by the first pack check


def pack(inputs, out, seq_len, *extra, timeout=120):
    args = ["pack", "--tokenizer", TOK, "--encoding", "cl100k_base", "--seq-len", seq_len, "-o", out]
    return mvl(*(args + list(extra) + list(inputs)), timeout=timeout)


def main_pack():
    if not MAIN:
        raise Fail("the main pack was not made (see pack_runs)")
    return MAIN


@check("pack_runs")
def _():
    out = os.path.join(MAIN_DIR, "main.pack")
    rj = os.path.join(MAIN_DIR, "rejects.tsv")
    st = os.path.join(MAIN_DIR, "stats.json")
    r = pack([MAIN_TAR], out, L_MAIN, "-j2", "--rejects", rj, "--stats", st)
    expect_rc(r, 0)
    MAIN.update(path=out, data=read(out), rejects=read_rejects(rj), summary=summary(r),
                stats=json.load(open(st)), r=r)
    MAIN["pack"] = read_pack(MAIN["data"])
    eq(MAIN["pack"].L, L_MAIN, "header L")
    expect(tmp_leftovers(MAIN_DIR) == [], "temporary files left: %s" % tmp_leftovers(MAIN_DIR))


@check("every_sample_once_kept_or_rejected")
def _():
    m = main_pack()
    keys = m["pack"].keys()
    rej = [row[0] for row in m["rejects"]]
    eq(len(keys), len(set(keys)), "segments (a key packed twice?)")
    eq(len(rej), len(set(rej)), "rejects rows (a key rejected twice?)")
    expect(not set(keys) & set(rej), "keys both packed and rejected: %s" % sorted(set(keys) & set(rej)))
    eq(set(keys) | set(rej), set(FXD), "packed + rejected keys")
    s = m["summary"]
    eq((s["in"], s["kept"], s["rejected"]), (len(FX), len(keys), len(rej)), "summary in / kept / rejected")
    eq(s["in"], s["kept"] + s["rejected"], "in == kept + rejected")


@check("rejects_have_the_right_reasons")
def _():
    m = main_pack()
    got = {row[0]: row[2] for row in m["rejects"]}
    want = {f.key: f.fate for f in FX if f.fate not in ("kept", "truncated")}
    eq(got, want, "rejected key -> reason")
    for row in m["rejects"]:
        expect(row[1] and row[3], "rejects row without a source or detail: %r" % (row,))
    want_counts = {}
    for v in want.values():
        want_counts[v] = want_counts.get(v, 0) + 1
    eq(m["summary"]["reasons"], want_counts, "summary reasons")


@check("structure_segments_positions_padding")
def _():
    m = main_pack()
    expect_structure(m["pack"])  # without special ids: segments, pos, seg, padding loss
    for s in m["pack"].seqs:
        expect((s.ids[s.ntok:] == 100257).all(), "padding is not <|endoftext|> (100257)")


# --- the special ids: learned from the pack, then held to everywhere

SPECIAL = {}
CHUNK_IDS = {}


def template(f, h, w):
    """chat.h's layout of a fixture as pieces: (special name, 0) or
    (text, loss).  Text pieces are encoded on their own, as a Hugging Face
    chat template's text between special tokens is."""
    out = []
    img = [(VS, 0)] + [(PAD, 0)] * ((h // 28) * (w // 28)) + [(VE, 0)] if h else []
    if f.kind == "caption":
        return img + [(f.text, 1), (EOT, 1)]
    placed = not h
    for frm, v in f.turns:
        role = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                "system": "system"}[frm]
        asst = role == "assistant"
        out.append((IMS, 0))
        out.append((role + "\n", 0))
        if not placed and role == "user":
            i = v.find("<image>")
            if i < 0:
                out += img
            else:
                out.append((v[:i], 0))
                out += img
                v = v[i + 7:]
                if v.startswith("\n"):
                    v = v[1:]
            placed = True
        out.append((v, int(asst)))
        out.append((IME, int(asst)))
        out.append(("\n", 0))
    return out


def expand(pieces):
    """pieces -> (list of ids or special names, list of loss)."""
    toks, loss = [], []
    for p, l in pieces:
        if p in SPECIAL_NAMES:
            toks.append(p)
            loss.append(l)
        else:
            ids = CHUNK_IDS[p]
            toks += ids
            loss += [l] * len(ids)
    if loss:
        loss[0] = 0  # a segment's first token is never a target
    return toks, loss


def kept_segments():
    """{key: (seq, segment index, Seg, image or None)} of the main pack."""
    out = {}
    for s, k, g in main_pack()["pack"].segments():
        imgs = [m for m in s.imgs if m.segment == k + 1]
        out[g.key] = (s, k, g, imgs[0] if imgs else None)
    return out


@check("special_token_ids_consistent")
def _():
    kept = kept_segments()
    chunks = []
    for key, (s, k, g, im) in kept.items():
        f = FXD.get(key)
        expect(f is not None, "unknown key %r in the pack" % key)
        expect(len([m for m in s.imgs if m.segment == k + 1]) <= 1, "%s: more than one image" % key)
        chunks += [p for p, _ in template(f, im.h if im else 0, im.w if im else 0) if p not in SPECIAL_NAMES]
    CHUNK_IDS.update(encode_chunks(chunks))
    # learned where a segment's ordinary ids all match the template
    seen = {}
    for key, (s, k, g, im) in kept.items():
        toks, _ = expand(template(FXD[key], im.h if im else 0, im.w if im else 0))
        got = s.ids[g.start:g.start + g.len]
        n = g.len if g.flags & 1 else len(toks)
        if n != g.len or any(not isinstance(t, str) and t != got[i] for i, t in enumerate(toks[:n])):
            continue
        for i, t in enumerate(toks[:n]):
            if isinstance(t, str):
                seen.setdefault(t, set()).add(int(got[i]))
    for name in SPECIAL_NAMES:
        expect(len(seen.get(name, ())) == 1, "%s appears as ids %s" % (name, sorted(seen.get(name, ()))))
        SPECIAL[name] = seen[name].pop()
    eq(SPECIAL[EOT], 100257, "<|endoftext|> id")
    eq(len(set(SPECIAL.values())), 6, "distinct special ids %s" % SPECIAL)
    cl = set(TOKMETA["special_tokens"].values())
    for name in (VS, PAD, VE, IMS, IME):
        i = SPECIAL[name]
        expect(i >= TOKMETA["n_ranks"] and i not in cl,
               "%s = %d is an ordinary or another special cl100k token" % (name, i))


def specials():
    if len(SPECIAL) != 6:
        raise Fail("special ids not known (see special_token_ids_consistent)")
    return SPECIAL


@check("structure_with_special_ids")
def _():
    expect_structure(main_pack()["pack"], specials())


def show_ids(ids):
    names = {v: k for k, v in SPECIAL.items()}
    return "[%s]" % " ".join(names.get(int(i), str(int(i))) for i in ids)


SYSTEM_IMG = ("conv-system-img", "conv-system-img-placeholder")


def template_mismatches(keys):
    sp = specials()
    bad = []
    kept = kept_segments()
    for key in keys:
        s, k, g, im = kept[key]
        f = FXD[key]
        toks, loss = expand(template(f, im.h if im else 0, im.w if im else 0))
        want = np.array([sp[t] if isinstance(t, str) else t for t in toks], dtype=np.int64)
        wloss = np.array(loss, dtype=np.int64)
        got, gloss = s.ids[g.start:g.start + g.len], s.loss[g.start:g.start + g.len]
        if f.fate == "truncated":
            want, wloss = want[:L_MAIN], wloss[:L_MAIN]
        if len(got) != len(want) or not np.array_equal(got, want):
            n = min(len(got), len(want))
            j = int(np.nonzero(got[:n] != want[:n])[0][0]) if (got[:n] != want[:n]).any() else n
            bad.append("%s: %d ids, expected %d; first difference at %d: got %s, expected %s"
                       % (key, len(got), len(want), j, show_ids(got[j:j + 6]), show_ids(want[j:j + 6])))
        elif not np.array_equal(gloss, wloss):
            j = int(np.nonzero(gloss != wloss)[0][0])
            bad.append("%s: loss[%d] = %d, expected %d" % (key, j, gloss[j], wloss[j]))
    return bad


@check("segment_ids_and_loss_equal_the_chat_template")
def _():
    keys = sorted(k for k in kept_segments() if k not in SYSTEM_IMG)
    expect(len(keys) >= 25, "only %d segments" % len(keys))
    bad = template_mismatches(keys)
    expect(not bad, "; ".join(bad[:6]))


@check("image_opens_the_first_user_turn_not_the_system_turn")
def _():
    # chat.h: the image block replaces "<image>" (or opens the first user
    # turn when there is none) -- a system turn before it changes nothing
    bad = template_mismatches(SYSTEM_IMG)
    expect(not bad, "; ".join(bad))


@check("caption_loss_tokens_decode_to_caption_and_endoftext")
def _():
    sp = specials()
    n = 0
    for key, (s, k, g, im) in sorted(kept_segments().items()):
        f = FXD[key]
        if f.kind != "caption" or f.fate != "kept":
            continue
        span = slice(g.start, g.start + g.len)
        ids, loss = s.ids[span], s.loss[span]
        if im:
            # every caption token and <|endoftext|> is a target (the image block is first)
            got = tok_decode(ids[loss == 1])
        else:
            # text-only: its first token opens the segment, so carries no loss
            expect(ids[0] != sp[EOT], "%s starts with <|endoftext|>" % key)
            got = tok_decode([ids[0]] + list(ids[1:][loss[1:] == 1]))
            eq(int(loss[1:].sum()), g.len - 1, "%s: targets of a text-only caption" % key)
        eq(got, f.text.encode("utf-8") + b"<|endoftext|>", "%s: decoded targets" % key)
        n += 1
    expect(n >= 14, "only %d caption samples checked" % n)


@check("caption_ids_from_tok_encode_ordinary")
def _():
    # independent of the template code above: one caption rebuilt by hand
    sp = specials()
    key = "cap-jpeg-300x200"
    s, k, g, im = kept_segments()[key]
    r = mvl("tok", "encode", "--tiktoken", TOK, "--encoding", "cl100k_base", "--special-mode", "ordinary",
            input=FXD[key].text.encode())
    expect_rc(r, 0)
    cap_ids = [int(x) for x in r.out.split()]
    h, w = smart_resize(200, 300)
    want = [sp[VS]] + [sp[PAD]] * ((h // 28) * (w // 28)) + [sp[VE]] + cap_ids + [100257]
    eq(list(map(int, s.ids[g.start:g.start + g.len])), want, key + " ids")
    eq(list(map(int, s.loss[g.start:g.start + g.len])),
       [0] * ((h // 28) * (w // 28) + 2) + [1] * (len(cap_ids) + 1), key + " loss")


@check("conversation_loss_only_on_answers")
def _():
    sp = specials()
    for key in ("conv-multiturn", "conv-system-text", "conv-img-midtext"):
        s, k, g, im = kept_segments()[key]
        ids = list(map(int, s.ids[g.start:g.start + g.len]))
        loss = s.loss[g.start:g.start + g.len]
        # split into turns at <|im_start|>; the role is the next token(s) up to "\n"
        starts = [i for i, t in enumerate(ids) if t == sp[IMS]]
        eq(len(starts), len(FXD[key].turns), "%s: turns" % key)
        for ti, (a, (frm, text)) in enumerate(zip(starts, FXD[key].turns)):
            b = starts[ti + 1] if ti + 1 < len(starts) else len(ids)
            tl = loss[a:b]
            if frm in ("gpt", "assistant"):
                ans = [t for t, l in zip(ids[a:b], tl) if l]
                expect(ans and ans[-1] == sp[IME], "%s turn %d: targets do not end in <|im_end|>" % (key, ti))
                eq(tok_decode(ans[:-1]), text.encode(), "%s turn %d: decoded targets" % (key, ti))
                eq(ids[b - 1], CHUNK_IDS["\n"][0], "%s turn %d: turn ends in \\n" % (key, ti))
                expect(tl[-1] == 0, "%s turn %d: loss on the newline after <|im_end|>" % (key, ti))
            else:
                expect(not tl.any(), "%s turn %d (%s): loss on a %s turn" % (key, ti, frm, frm))


@check("image_sizes_follow_smart_resize_of_the_oriented_original")
def _():
    bad = []
    n = 0
    for key, (s, k, g, im) in sorted(kept_segments().items()):
        f = FXD[key]
        if f.image is None:
            expect(im is None, "%s has no image but an image entry" % key)
            continue
        expect(im is not None, "%s lost its image" % key)
        ref = reference_rgb(f.image)
        W, H = ref.size
        want = smart_resize(H, W)
        if (im.h, im.w) != want:
            bad.append("%s: %dx%d (w x h) oriented, stored %dx%d, smart_resize says %dx%d"
                       % (key, W, H, im.w, im.h, want[1], want[0]))
        n += 1
    expect(not bad, "; ".join(bad))
    expect(n >= 20, "only %d images checked" % n)


@check("image_pixels_match_a_resize_of_the_original")
def _():
    bad = []
    for key, (s, k, g, im) in sorted(kept_segments().items()):
        f = FXD[key]
        if f.image is None:
            continue
        ref = np.asarray(reference_rgb(f.image).resize((im.w, im.h), Image.BICUBIC), dtype=np.float64)
        d = float(np.abs(im.px.astype(np.float64) - ref).mean())
        if d >= 8:
            bad.append("%s: mean abs diff %.1f" % (key, d))
    expect(not bad, "; ".join(bad))


@check("image_pixels_exact_at_native_size_png")
def _():
    s, k, g, im = kept_segments()["cap-png-exact-112x56"]
    eq((im.h, im.w), (56, 112), "size")
    ref = np.asarray(Image.open(io.BytesIO(FXD["cap-png-exact-112x56"].image)).convert("RGB"))
    expect(np.array_equal(im.px, ref), "pixels differ from the PNG (max diff %d)"
           % int(np.abs(im.px.astype(int) - ref.astype(int)).max()))


@check("exif_orientation_applied")
def _():
    # stored W x H, shown (after EXIF) W' x H'
    for key, (w, h) in (("cap-jpeg-exif6-240x120", (120, 240)), ("cap-jpeg-exif8-97x203", (203, 97))):
        s, k, g, im = kept_segments()[key]
        eq((im.h, im.w), smart_resize(h, w), "%s stored size (h, w)" % key)
    # orientation 3 (180 degrees): the same size, so only the pixels tell
    s, k, g, im = kept_segments()["cap-jpeg-exif3-150x100"]
    raw = Image.open(io.BytesIO(FXD["cap-jpeg-exif3-150x100"].image)).convert("RGB")
    right = np.asarray(reference_rgb(FXD["cap-jpeg-exif3-150x100"].image).resize((im.w, im.h), Image.BICUBIC),
                       dtype=float)
    wrong = np.asarray(raw.resize((im.w, im.h), Image.BICUBIC), dtype=float)
    px = im.px.astype(float)
    dr, dw = np.abs(px - right).mean(), np.abs(px - wrong).mean()
    expect(dr < dw / 3, "pixels are closer to the unrotated image (%.1f vs %.1f)" % (dr, dw))


@check("truncated_samples_fill_one_sequence_flagged")
def _():
    kept = kept_segments()
    trunc = {f.key for f in FX if f.fate == "truncated"}
    for key, (s, k, g, im) in kept.items():
        if key in trunc:
            expect(g.flags & 1, "%s: truncated but flag bit 0 is clear" % key)
            eq(g.len, L_MAIN, "%s: segment length" % key)
            eq((s.nseg, s.ntok), (1, L_MAIN), "%s: its sequence (segments, tokens)" % key)
        else:
            eq(g.flags, 0, "%s: flags" % key)
    # the image of a truncated sample is whole
    s, k, g, im = kept["long-cap-img"]
    expect(im is not None and im.token + (im.h // 28) * (im.w // 28) < L_MAIN, "long-cap-img image cut")
    st = main_pack()["stats"]
    eq(st["truncated"], len(trunc), "--stats truncated")


@check("no_truncate_rejects_too_long")
def _():
    d = S.dir("notrunc")
    rj = os.path.join(d, "rejects.tsv")
    r = pack([MAIN_TAR], os.path.join(d, "p.pack"), L_MAIN, "-j2", "--no-truncate", "--rejects", rj)
    expect_rc(r, 0)
    pk = read_pack_file(os.path.join(d, "p.pack"))
    expect_structure(pk, specials())
    got = {row[0]: row[2] for row in read_rejects(rj)}
    want = {f.key: f.fate for f in FX if f.fate not in ("kept", "truncated")}
    for f in FX:
        if f.fate in ("truncated", "no_target"):
            want[f.key] = "too_long"
    eq(got, want, "rejected key -> reason with --no-truncate")
    eq(sorted(pk.keys()), sorted(f.key for f in FX if f.fate == "kept"), "packed keys")
    expect(not any(g.flags for _, _, g in pk.segments()), "a truncated segment with --no-truncate")
    # the same samples, the same ids, as in the truncating pack
    main = kept_segments()
    for s, k, g in pk.segments():
        ms, mk, mg, _ = main[g.key]
        expect(np.array_equal(s.ids[g.start:g.start + g.len], ms.ids[mg.start:mg.start + mg.len]),
               "%s: ids differ between the two packs" % g.key)


@check("image_larger_than_a_sequence_is_rejected_not_split")
def _():
    d = S.dir("bigimg")
    f = FXD["huge-image-1200x1000"]
    h, w = smart_resize(1000, 1200)
    expect((h // 28) * (w // 28) + 2 > L_MAIN, "fixture: the image should not fit")
    rj = os.path.join(d, "rejects.tsv")
    r = pack([write(os.path.join(d, "in.tar"), fixture_tar([f, FXD["txt-plain"]]))], os.path.join(d, "p.pack"),
             L_MAIN, "--rejects", rj)
    expect_rc(r, 0)
    eq([(row[0], row[2]) for row in read_rejects(rj)], [(f.key, "too_long")], "rejects")
    pk = read_pack_file(os.path.join(d, "p.pack"))
    eq(pk.keys(), ["txt-plain"], "packed keys")
    eq(sum(s.nimg for s in pk.seqs), 0, "images in the pack")


@check("custom_min_max_pixels")
def _():
    d = S.dir("pixels")
    lo, hi = 12544, 50176  # 112^2, 224^2
    fx = [FXD[k] for k in ("cap-jpeg-10x7", "cap-jpeg-640x480", "cap-png-123x457", "cap-jpeg-exif6-240x120",
                           "cap-jpeg-wide-1000x30")]
    r = pack([write(os.path.join(d, "in.tar"), fixture_tar(fx))], os.path.join(d, "p.pack"), L_MAIN,
             "--min-pixels", lo, "--max-pixels", hi)
    expect_rc(r, 0)
    pk = read_pack_file(os.path.join(d, "p.pack"))
    expect_structure(pk, specials(), min_pixels=lo, max_pixels=hi)
    n = 0
    for s, k, g in pk.segments():
        im = [m for m in s.imgs if m.segment == k + 1][0]
        W, H = reference_rgb(FXD[g.key].image).size
        eq((im.h, im.w), smart_resize(H, W, min_pixels=lo, max_pixels=hi), "%s size (h, w)" % g.key)
        n += 1
    eq(n, len(fx), "images packed")


@check("stats_json_agrees_with_the_file")
def _():
    m = main_pack()
    st, pk = m["stats"], m["pack"]
    eq((st["samples"], st["sequences"], st["seq_len"], st["tokens"], st["images"], st["rejected"]),
       (len(pk.keys()), len(pk.seqs), pk.L, pk.tokens(), sum(s.nimg for s in pk.seqs), len(m["rejects"])),
       "stats (samples, sequences, seq_len, tokens, images, rejected)")
    expect(abs(st["padding"] - pk.padding()) < 1e-6, "stats padding %s, file %s" % (st["padding"], pk.padding()))
    eq(st["packer"], "bfd-window", "stats packer")


@check("deterministic_same_input_same_bytes")
def _():
    d = S.dir("det")
    a, b, c = (os.path.join(d, n) for n in ("a.pack", "b.pack", "c.pack"))
    expect_rc(pack([MAIN_TAR], a, L_MAIN, "-j2"), 0)
    expect_rc(pack([MAIN_TAR], b, L_MAIN, "-j2"), 0)
    expect_rc(pack([MAIN_TAR], c, L_MAIN, "-j1"), 0)
    expect(read(a) == main_pack()["data"], "a second -j2 run differs from the first")
    expect(read(b) == read(a), "a third -j2 run differs")
    expect(read(c) == read(a), "-j1 differs from -j2")


# --- packing quality on length mixes

def mixed_fixture(seed, n_caption, n_sft, img_every=1):
    """Caption-like samples (~30-120 tokens: a small image and 15-90 words)
    mixed with SFT-like conversations (~300-1500 tokens)."""
    rng = random.Random(seed)
    fx = []
    small = {}
    for i in range(n_caption + n_sft):
        if rng.random() < n_sft / float(n_caption + n_sft):
            nw = rng.randint(280, 1450)
            a = rng.randint(20, nw - 200)
            turns = [("human", "<image>\n" + words(rng, 20)), ("gpt", words(rng, a)),
                     ("human", words(rng, 10)), ("gpt", words(rng, nw - a - 30))]
            side = rng.choice((112, 140, 168))
            img = small.setdefault(("s", side), jpeg(side, side, 3))
            fx.append(Fx("sft-%05d" % i, [("jpg", img), ("json", conv_json(turns))], "conv", turns=turns))
        else:
            text = words(rng, rng.randint(15, 90))
            m = [("txt", text.encode())]
            if i % img_every == 0:
                wh = rng.choice(((56, 56), (84, 56), (56, 84), (84, 84)))
                m.insert(0, ("jpg", small.setdefault(wh, jpeg(wh[0], wh[1], 1))))
            fx.append(Fx("cap-%05d" % i, m, "caption", text=text))
    return fx


MIX_DIR = S.dir("mix")
MIX = {}


def mix_tar():
    if "tar" not in MIX:
        MIX["fx"] = mixed_fixture(3, 1600, 160)
        MIX["tar"] = write(os.path.join(MIX_DIR, "mix.tar"), fixture_tar(MIX["fx"]))
    return MIX["tar"]


@check("window_packer_padding_under_2pct_on_caption_sft_mix")
def _():
    t = mix_tar()
    out = os.path.join(MIX_DIR, "window.pack")
    rj = os.path.join(MIX_DIR, "rejects.tsv")
    r = pack([t], out, 2048, "-j2", "--rejects", rj)
    expect_rc(r, 0)
    eq(read_rejects(rj), [], "rejects")
    pk = read_pack_file(out)
    MIX["window"] = pk
    expect_structure(pk, specials())
    eq(sorted(pk.keys()), sorted(f.key for f in MIX["fx"]), "packed keys")
    expect(pk.padding() < 0.02, "padding %.2f%% over %d sequences of 2048 (goal < 2%%)"
           % (100 * pk.padding(), len(pk.seqs)))


@check("greedy_pads_at_least_as_much_as_the_window_packer")
def _():
    t = mix_tar()
    out = os.path.join(MIX_DIR, "greedy.pack")
    r = pack([t], out, 2048, "-j2", "--greedy")
    expect_rc(r, 0)
    g = read_pack_file(out)
    expect_structure(g, specials())
    eq(sorted(g.keys()), sorted(f.key for f in MIX["fx"]), "packed keys (greedy)")
    w = MIX.get("window")
    expect(w is not None, "no window pack to compare with")
    print("# caption+SFT mix at 2048: %d sequences, padding window %.2f%%, greedy %.2f%%"
          % (len(w.seqs), 100 * w.padding(), 100 * g.padding()), file=sys.stderr)
    expect(g.padding() >= w.padding(), "greedy padding %.2f%% < window %.2f%%"
           % (100 * g.padding(), 100 * w.padding()))
    # greedy keeps the arrival order
    eq(g.keys(), [f.key for f in MIX["fx"]], "greedy segment order")
    # and on a short/long mix at a tighter length
    rng = random.Random(5)
    fx = []
    for i in range(300):
        n = rng.randint(10, 60) if rng.random() < 0.65 else rng.randint(250, 700)
        text = words(rng, n)
        fx.append(Fx("m%04d" % i, [("txt", text.encode())], "caption", text=text))
    d = S.dir("shortlong")
    tt = write(os.path.join(d, "in.tar"), fixture_tar(fx))
    pads = {}
    for name, extra in (("window", ()), ("greedy", ("--greedy",))):
        o = os.path.join(d, name + ".pack")
        expect_rc(pack([tt], o, 1024, "-j2", *extra), 0)
        pk = read_pack_file(o)
        expect_structure(pk, specials())
        eq(sorted(pk.keys()), sorted(f.key for f in fx), "%s: packed keys" % name)
        pads[name] = pk.padding()
    print("# short/long at 1024: padding window %.2f%%, greedy %.2f%%"
          % (100 * pads["window"], 100 * pads["greedy"]), file=sys.stderr)
    expect(pads["greedy"] >= pads["window"], "short/long at 1024: greedy %.2f%% < window %.2f%%"
           % (100 * pads["greedy"], 100 * pads["window"]))


@check("deterministic_j1_j2_on_the_mix")
def _():
    t = mix_tar()
    a, b = os.path.join(MIX_DIR, "j1.pack"), os.path.join(MIX_DIR, "j2.pack")
    expect_rc(pack([t], a, 2048, "-j1"), 0)
    expect_rc(pack([t], b, 2048, "-j2"), 0)
    expect(read(a) == read(b), "-j1 and -j2 packs differ")
    expect(read(b) == read(os.path.join(MIX_DIR, "window.pack")), "a second -j2 run differs")


# --- mvl ls, and refusing broken files

@check("ls_lists_one_line_per_sequence_with_keys")
def _():
    m = main_pack()
    r = mvl("ls", m["path"])
    expect_rc(r, 0)
    lines = r.out.decode().splitlines()
    pk = m["pack"]
    eq(len(lines), len(pk.seqs), "lines")
    for i, (line, s) in enumerate(zip(lines, pk.seqs)):
        cols = line.split("\t")
        expect(len(cols) == 5, "line %d: %r" % (i, line))
        eq(cols[:4], [str(i), "%d/%d" % (s.ntok, pk.L), str(s.nseg), str(s.nimg)], "line %d fields" % i)
        want = [g.key + ("~" if g.flags & 1 else "") for g in s.segs]
        eq(cols[4].split(","), want, "line %d keys" % i)


def refused(path, words_any):
    r = mvl("ls", path)
    expect_rc(r, 1)
    t = r.errtext
    expect(os.path.basename(path) in t and any(w in t for w in words_any),
           "unclear message for %s: %r" % (os.path.basename(path), t.strip()[:300]))
    expect(not r.out.strip(), "mvl ls printed sequences of a broken file: %r" % r.out[:200])


@check("truncated_and_non_pack_files_refused")
def _():
    d = S.dir("broken")
    data = main_pack()["data"]
    cases = {
        "cut-last-byte.pack": data[:-1],
        "cut-last-9.pack": data[:-9],
        "cut-half.pack": data[:len(data) // 2],
        "header-only.pack": data[:64],
    }
    for name, blob in cases.items():
        p = write(os.path.join(d, name), blob)
        try:
            read_pack(blob)
        except PackError:
            pass
        else:
            raise Fail("the test's reader accepts %s" % name)
        refused(p, ("truncated", "does not fit", "not finished"))
    p = write(os.path.join(d, "magic-only.pack"), b"MVLPACK1")
    refused(p, ("not a pack", "truncated", "header"))
    v2 = bytearray(data)
    v2[8] = 2
    refused(write(os.path.join(d, "version2.pack"), bytes(v2)), ("version",))
    noise = bytes(random.Random(1).randrange(256) for _ in range(4096))
    refused(write(os.path.join(d, "noise.pack"), noise), ("not a pack", "not a tar"))


@check("damaged_record_refused")
def _():
    d = S.dir("damaged")
    data = bytearray(main_pack()["data"])
    pk = main_pack()["pack"]
    off = pk.seqs[-1].offset
    data[off] ^= 0xFF  # record magic
    p = write(os.path.join(d, "magic.pack"), bytes(data))
    try:
        read_pack(bytes(data))
    except PackError:
        pass
    else:
        raise Fail("the test's reader accepts a bad record magic")
    r = mvl("ls", p)
    expect_rc(r, 1)
    expect("sequence %d" % (len(pk.seqs) - 1) in r.errtext, "message: %r" % r.errtext.strip()[-300:])
    # a segment table entry pointing past the sequence
    data = bytearray(main_pack()["data"])
    s0 = pk.seqs[0]
    A = align8(24 + 13 * pk.L)
    struct.pack_into("<I", data, s0.offset + A + 4, pk.L + 5)  # len of segment 1
    r = mvl("ls", write(os.path.join(d, "seglen.pack"), bytes(data)))
    expect_rc(r, 1)
    expect("sequence 0" in r.errtext, "message: %r" % r.errtext.strip()[-300:])


@check("empty_pack_when_every_sample_is_rejected")
def _():
    d = S.dir("empty")
    out = os.path.join(d, "e.pack")
    r = pack([write(os.path.join(d, "in.tar"), fixture_tar([FXD["bad-corrupt-image"]]))], out, 64)
    expect_rc(r, 0)
    pk = read_pack_file(out)
    eq((len(pk.seqs), pk.size), (0, 64), "(sequences, bytes)")
    r = mvl("ls", out)
    expect_rc(r, 0)
    eq(r.out, b"", "ls output")


# --- the file appears only complete

@check("written_as_tmp_pid_then_renamed")
def _():
    d = S.dir("atomic")
    out = os.path.join(d, "a.pack")
    data = read(MAIN_TAR)
    p = subprocess.Popen([MVL, "pack", "--tokenizer", TOK, "--seq-len", str(L_MAIN), "-j1", "-q", "-o", out],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        p.stdin.write(data[:4096])
        p.stdin.flush()
        tmp = "%s.tmp.%d" % (out, p.pid)
        deadline = time.time() + 20
        while not os.path.exists(tmp) and time.time() < deadline and p.poll() is None:
            time.sleep(0.02)
        expect(os.path.exists(tmp), "no %s while mvl pack runs (dir: %s)" % (os.path.basename(tmp), os.listdir(d)))
        expect(not os.path.exists(out), "a.pack exists before the run is complete")
        p.stdin.write(data[4096:])
        p.stdin.close()
        rc = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    eq(rc, 0, "exit status (stderr %r)" % p.stderr.read()[-300:])
    expect(os.path.exists(out) and not os.path.exists(tmp), "after the run: %s" % os.listdir(d))
    eq(read(out), main_pack()["data"], "the pack made from stdin")
    # killed half way: no a.pack
    out2 = os.path.join(d, "killed.pack")
    p = subprocess.Popen([MVL, "pack", "--tokenizer", TOK, "--seq-len", str(L_MAIN), "-j1", "-q", "-o", out2],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p.stdin.write(data[:4096])
    p.stdin.flush()
    tmp = "%s.tmp.%d" % (out2, p.pid)
    deadline = time.time() + 20
    while not os.path.exists(tmp) and time.time() < deadline and p.poll() is None:
        time.sleep(0.02)
    p.kill()
    p.wait()
    expect(not os.path.exists(out2), "killed.pack exists after SIGKILL")
    if os.path.exists(tmp):
        os.unlink(tmp)


def failed_run_leaves_nothing(d, inputs, what, previous=None):
    out = os.path.join(d, "out.pack")
    if previous is not None:
        write(out, previous)
    r = pack(inputs, out, L_MAIN, "-j2")
    expect_rc(r, 1)
    if previous is None:
        if os.path.exists(out):
            raise Fail("%s: mvl pack exited 1 but left out.pack (%d bytes, %d sequences)"
                       % (what, os.path.getsize(out), len(read_pack_file(out).seqs)))
    else:
        expect(read(out) == previous, "%s: mvl pack exited 1 and replaced the previous out.pack" % what)
    expect(not tmp_leftovers(d), "%s: temporary files left: %s" % (what, tmp_leftovers(d)))
    return r


@check("failed_run_missing_input_leaves_no_pack")
def _():
    d = S.dir("missing1")
    r = failed_run_leaves_nothing(d, [os.path.join(d, "missing.tar")], "only input missing")
    expect("missing.tar" in r.errtext, "stderr does not name the missing input: %r" % r.errtext[-300:])
    d = S.dir("missing2")
    failed_run_leaves_nothing(d, [MAIN_TAR, os.path.join(d, "missing.tar")], "second input missing")


@check("failed_run_truncated_input_leaves_no_pack")
def _():
    d = S.dir("trunc-in")
    data = read(MAIN_TAR)
    cut = write(os.path.join(d, "cut.tar"), data[:len(data) // 2 + 100])
    failed_run_leaves_nothing(d, [MAIN_TAR, cut], "a truncated shard")


@check("failed_run_keeps_the_previous_pack")
def _():
    d = S.dir("prev")
    failed_run_leaves_nothing(d, [MAIN_TAR, os.path.join(d, "missing.tar")], "second input missing",
                              previous=b"previous pack bytes")


@check("unwritable_output_refused")
def _():
    d = S.dir("unwritable")
    r = pack([MAIN_TAR], os.path.join(d, "no", "such", "dir", "x.pack"), L_MAIN)
    expect_rc(r, 1)
    expect("x.pack" in r.errtext, "stderr does not name the output: %r" % r.errtext[-300:])


S.finish()
