#!/usr/bin/python3
"""make_nasty.py: writes mvl's corpus of hostile inputs into OUT.

    make_nasty.py OUT [--mvl PATH]

Everything is made here, deterministically, from the standard library, PIL
and numpy (tar headers are written by hand where tarfile refuses to write
what is wanted: bad size fields, odd pax records).  OUT then holds:

  tar/NAME.tar        one hostile archive feature each, between two good
                      samples "aa_good_first" and "zz_good_last" where the
                      archive stays readable (CASES says which do)
  tar/NAME.tar.zst, tar/NAME.tar.gz   truncated and corrupt compressed streams
  samples.tar         a readable shard of hostile samples: images (header
                      bombs, truncated scans, bad Huffman tables, CMYK,
                      16-bit, palette, gray+alpha, animated, zero bytes, text
                      named .jpg), KEY.json (deep nesting, duplicate keys,
                      invalid UTF-8, NUL bytes), captions (NUL bytes,
                      overlong UTF-8, encoded surrogates, 10 MB) and samples
                      missing members; SAMPLES lists the keys
  recipe/NAME.yaml    hostile recipes (deep nesting, alias cycles, alias
                      bombs, invalid UTF-8, huge scalars, binary)
  run/                a run directory whose JSON files are hostile
  text/NAME.txt       hostile text for `mvl tok encode`
  cases.json          what the test needs to know: per tar case whether the
                      archive is readable, the keys in samples.tar

The corpus costs a few MB on disk and about a second to make."""
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------
# tar, by hand


def octal(v, width):
    return (b"%0*o" % (width - 1, v)) + b"\0"


def header(name, size=0, typ=b"0", linkname=b"", size_field=None, magic=b"ustar\x0000",
           prefix=b"", mode=0o644):
    """One 512-byte ustar header; size_field (12 raw bytes) overrides size."""
    if isinstance(name, str):
        name = name.encode()
    h = bytearray(512)
    h[0:100] = name[:100].ljust(100, b"\0")
    h[100:108] = octal(mode, 8)
    h[108:116] = octal(1000, 8)
    h[116:124] = octal(1000, 8)
    h[124:136] = size_field if size_field is not None else octal(size, 12)
    h[136:148] = octal(1600000000, 12)
    h[148:156] = b" " * 8
    h[156:157] = typ
    h[157:257] = linkname[:100].ljust(100, b"\0")
    h[257:265] = magic
    h[265:297] = b"user".ljust(32, b"\0")
    h[297:329] = b"grp".ljust(32, b"\0")
    h[345:500] = prefix[:155].ljust(155, b"\0")
    chk = sum(h)
    h[148:156] = b"%06o\0 " % chk
    return bytes(h)


def pad(data):
    return data + b"\0" * ((512 - len(data) % 512) % 512)


def entry(name, data=b"", typ=b"0", **kw):
    return header(name, len(data), typ, **kw) + pad(data)


def pax(records, typ=b"x"):
    """A pax header entry from raw records (bytes, already "LEN k=v\\n")."""
    body = b"".join(records)
    return header(b"./PaxHeaders/x", len(body), typ) + pad(body)


def rec(key, value):
    """A well-formed pax record."""
    kv = b" " + key + b"=" + value + b"\n"
    n = len(kv) + 1
    while len(str(n).encode()) + len(kv) != n:
        n += 1
    return str(n).encode() + kv


def gnu_longname(name):
    return header(b"././@LongLink", len(name) + 1, b"L", magic=b"ustar  \0") + pad(name + b"\0")


END = b"\0" * 1024

# ---------------------------------------------------------------------------
# images


def gradient(w, h, seed=0):
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1) + seed * 40) % 256
    g = (y * 255 // max(h - 1, 1) + seed * 70) % 256
    b = ((x + y) * 3 + seed * 90) % 256
    return np.stack([r, g, b], axis=-1).astype(np.uint8)


def pil(w, h, seed=0):
    return Image.fromarray(gradient(w, h, seed), "RGB")


def save(im, fmt, **kw):
    bio = io.BytesIO()
    im.save(bio, fmt, **kw)
    return bio.getvalue()


def jpeg(w=240, h=220, seed=0):
    return save(pil(w, h, seed), "JPEG", quality=90)


def noise_jpeg(w=240, h=220, seed=0):
    """Noise: a perceptual hash unlike any other image's (dedup keeps it)."""
    a = np.random.RandomState(seed).randint(0, 256, (h // 8, w // 8, 3)).astype(np.uint8)
    return save(Image.fromarray(a, "RGB").resize((w, h), Image.NEAREST), "JPEG", quality=90)


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)


def png_raw(w, h, depth, ctype, rows, extra=b""):
    """A PNG from raw scanlines (filter byte 0 added here)."""
    raw = b"".join(b"\0" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)) +
            extra + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def jpeg_sof_size(data, w, h):
    """A JPEG whose SOF claims w x h (the scan stays the small one)."""
    b = bytearray(data)
    i = 2
    while i < len(b):
        if b[i] != 0xFF:
            raise ValueError("bad marker walk")
        m = b[i + 1]
        n = struct.unpack(">H", b[i + 2:i + 4])[0]
        if m in (0xC0, 0xC1, 0xC2):
            b[i + 5:i + 9] = struct.pack(">HH", h, w)
            return bytes(b)
        i += 2 + n
    raise ValueError("no SOF")


def jpeg_bad_huffman(data):
    """Every DHT's code counts set to 0xFF: tables no decoder can build."""
    b = bytearray(data)
    i = 2
    while i < len(b) and b[i] == 0xFF:
        m = b[i + 1]
        n = struct.unpack(">H", b[i + 2:i + 4])[0]
        if m == 0xC4:
            b[i + 5:i + 21] = b"\xff" * 16
        if m == 0xDA:
            break
        i += 2 + n
    return bytes(b)


def webp_vp8_size(data, w, h):
    """A lossy WebP whose VP8 frame header claims w x h (14-bit fields)."""
    b = bytearray(data)
    i = b.find(b"\x9d\x01\x2a")
    if i < 0:
        raise ValueError("no VP8 start code")
    b[i + 3:i + 7] = struct.pack("<HH", w & 0x3FFF, h & 0x3FFF)
    return bytes(b)


def images():
    """(key, bytes, ext) of hostile and unusual images."""
    base = jpeg(240, 220, 1)
    out = [
        ("img_jpeg_claims_65535", jpeg_sof_size(base, 65535, 65535), "jpg"),
        ("img_jpeg_claims_60000", jpeg_sof_size(base, 60000, 60000), "jpg"),
        ("img_jpeg_claims_12000", jpeg_sof_size(base, 12000, 12000), "jpg"),
        ("img_jpeg_truncated_scan", base[:len(base) // 2], "jpg"),
        ("img_jpeg_no_eoi", base[:-2], "jpg"),
        ("img_jpeg_bad_huffman", jpeg_bad_huffman(base), "jpg"),
        ("img_jpeg_cmyk", save(pil(230, 210, 2).convert("CMYK"), "JPEG", quality=90), "jpg"),
        ("img_jpeg_gray", save(pil(230, 210, 3).convert("L"), "JPEG", quality=90), "jpg"),
        ("img_png_16bit_rgb", png_raw(210, 205, 16, 2, [
            (np.arange(210 * 3, dtype=">u2") * (y + 1)).tobytes() for y in range(205)]), "png"),
        ("img_png_16bit_gray", save(Image.fromarray((np.arange(210 * 205, dtype=np.uint16) * 97)
                                                    .reshape(205, 210), "I;16"), "PNG"), "png"),
        ("img_png_palette", save(pil(220, 210, 4).convert("P", palette=Image.ADAPTIVE), "PNG"), "png"),
        ("img_png_gray_alpha", save(pil(220, 210, 5).convert("LA"), "PNG"), "png"),
        ("img_png_claims_65535", png_bomb(65535, 65535), "png"),
        ("img_png_claims_12000", png_bomb(12000, 12000), "png"),
        ("img_png_zeros_8000", png_zero_bomb(8000, 8000), "png"),
        ("img_png_truncated_scan", trunc_png(), "png"),
        ("img_png_bad_crc", bad_crc_png(), "png"),
        ("img_webp_claims_16383", webp_vp8_size(save(pil(240, 230, 6), "WEBP", quality=80), 16383, 16383), "webp"),
        ("img_webp_truncated", save(pil(240, 230, 7), "WEBP", quality=80)[:300], "webp"),
        ("img_zero_bytes", b"", "jpg"),
        ("img_text_named_jpg", b"<html><body>404 Not Found</body></html>\n", "jpg"),
        ("img_png_named_jpg", save(pil(220, 210, 8), "PNG"), "jpg"),
        ("img_gif_named_png", save(pil(220, 210, 9).convert("P"), "GIF"), "png"),
    ]
    try:
        frames = [pil(220, 210, s) for s in range(3)]
        anim = save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0)
        if b"ANIM" in anim:
            out.append(("img_webp_animated", anim, "webp"))
    except Exception:  # PIL built without animated WebP
        pass
    return out


def png_bomb(w, h):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) +
            chunk(b"IEND", b""))


def png_zero_bomb(w, h):
    """A real, whole w x h gray PNG of zeros: a few KB that decode to w*h*3."""
    row = b"\0" * (w + 1)
    co = zlib.compressobj(9)
    z = b"".join(co.compress(row) for _ in range(h)) + co.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", z) + chunk(b"IEND", b""))


def trunc_png():
    p = save(pil(230, 220, 10), "PNG")
    i = p.find(b"IDAT")
    n = struct.unpack(">I", p[i - 4:i])[0]
    return p[:i + 4 + n // 2]


def bad_crc_png():
    p = bytearray(save(pil(230, 220, 11), "PNG"))
    i = p.find(b"IDAT")
    n = struct.unpack(">I", p[i - 4:i])[0]
    p[i + 4 + n // 2] ^= 0x55   # data changed, CRC not
    return bytes(p)


# ---------------------------------------------------------------------------
# samples.tar: readable, hostile samples


CAPTION = b"a photo of a small red cat sitting on a wooden table"


def sample_members():
    """[(key, [(ext, bytes)])]: the hostile samples, good ones between."""
    s = [("aa_good_first", [("jpg", noise_jpeg(240, 220, 20)),
                            ("txt", b"a sunny beach with palm trees and blue water")])]
    for key, data, ext in images():
        s.append((key, [(ext, data), ("txt", CAPTION + b" " + key.encode())]))
    good = [("jpg", jpeg(236, 212, 21))]
    deep = b"[" * 100000 + b"]" * 100000
    jsons = [
        ("json_deep_100k", deep),
        ("json_deep_object", b'{"a":' * 50000 + b"1" + b"}" * 50000),
        ("json_duplicate_keys", b'{"caption": "one", "caption": "two", "width": 1, "width": "x"}'),
        ("json_invalid_utf8", b'{"source": "caf\xc3\x28 \xff\xfe", "x": 1}'),
        ("json_nul_raw", b'{"source": "a\x00b", "x": 1}'),
        ("json_nul_escaped", b'{"source": "a\\u0000b", "conversations": [{"from": "human", "value": "x\\u0000y"}]}'),
        ("json_not_object", b'[1, 2, 3]'),
        ("json_huge_number", b'{"width": 1e999999, "height": -99999999999999999999999999999}'),
        ("json_lone_surrogate", b'{"source": "\\ud800", "language": "\\udfff"}'),
        ("json_conv_deep", b'{"conversations": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        ("json_conv_duplicate_keys", b'{"conversations": [{"from": "human", "value": "a cat", "value": "a dog"}]}'),
        ("json_conv_wrong_types", b'{"conversations": [1, "x", null, {"from": 5, "value": []}, {"value": "ok"}]}'),
        ("json_empty", b""),
    ]
    for key, js in jsons:
        s.append((key, good + [("json", js), ("txt", CAPTION)]))
    caps = [
        ("cap_nul_bytes", b"a photo of\0 a red\0\0 cat on the mat"),
        ("cap_only_nul", b"\0\0\0\0"),
        ("cap_overlong_utf8", b"a photo of \xc0\xaf a \xe0\x80\xaf cat \xf0\x80\x80\xaf on the mat"),
        ("cap_encoded_surrogate", b"a photo of \xed\xa0\x80 a \xed\xbf\xbf cat on the mat"),
        ("cap_invalid_utf8", b"a photo of \xff\xfe a cat on the mat \x80"),
        ("cap_truncated_utf8", b"a photo of a cat on the mat \xe6\x9d"),
        ("cap_huge_10mb", b"word " * (2 * 1024 * 1024)),
        ("cap_one_long_word", b"x" * (3 * 1024 * 1024)),
        ("cap_whitespace", b" \t\r\n\v\f "),
        ("cap_empty", b""),
        ("cap_special_tokens", b"<|endoftext|><|im_start|>a photo <|image_pad|> of a cat"),
        ("cap_control_chars", b"a photo\x01\x02\x1b[31m of a red cat\x7f on the mat"),
        ("cap_bidi_zero_width", "a photo \u202e of a \u200b\u200b cat \ufeff on the mat".encode()),
    ]
    for key, cap in caps:
        s.append((key, good + [("txt", cap)]))
    s += [
        ("miss_image_only", [("jpg", jpeg(230, 215, 22))]),
        ("miss_caption_only", [("txt", CAPTION)]),
        ("miss_json_only", [("json", b'{"source": "x"}')]),
        ("miss_unknown_ext_only", [("xyz", b"what is this")]),
        ("two_images", [("jpg", jpeg(230, 215, 23)), ("png", save(pil(230, 215, 24), "PNG")), ("txt", CAPTION)]),
    ]
    s.append(("zz_good_last", [("jpg", noise_jpeg(240, 220, 25)),
                               ("txt", b"an old locomotive crossing a stone bridge at night")]))
    return s


def members_tar(samples):
    out = b""
    for key, ms in samples:
        for ext, data in ms:
            out += entry("%s.%s" % (key, ext), data)
    return out + END


# ---------------------------------------------------------------------------
# tar/: one archive feature each

GOOD_FIRST = [("aa_good_first", [("jpg", noise_jpeg(240, 220, 30)),
                                 ("txt", b"a sunny beach with palm trees and blue water")])]
GOOD_LAST = [("zz_good_last", [("jpg", noise_jpeg(240, 220, 31)),
                               ("txt", b"an old locomotive crossing a stone bridge at night")])]


def wrap(middle, end=END):
    return members_tar(GOOD_FIRST)[:-1024] + middle + members_tar(GOOD_LAST)[:-1024] + end


SECOND = b"".join(entry("second_tar_%d.%s" % (i, e), d) for i in range(2)
                 for e, d in (("jpg", noise_jpeg(230, 210, 40 + i)), ("txt", b"a sample of the second archive")))
SECOND += END


GOOD_FIRST_BYTES = members_tar(GOOD_FIRST)[:512]


def tar_cases():
    """name -> (bytes, readable, bad keys).  readable: the reader goes on
    to the end (the bad samples are rejected); not readable: the input
    breaks at the feature (exit 1, a message naming the file)."""
    cap = b"a caption of four words"
    long300 = ("d" * 120 + "/" + "n" * 170 + "_long").encode()
    c = {}
    c["traversal"] = (wrap(entry("../evil.txt", cap) + entry("/etc/abs.txt", cap) +
                           entry("a/../../up.txt", cap) + entry("ok/../../../x.txt", cap)), True,
                      ["../evil", "/etc/abs", "a/../../up", "ok/../../../x"])
    c["links"] = (wrap(entry("sym.jpg", typ=b"2", linkname=b"/etc/passwd") + entry("sym.txt", cap) +
                       entry("hard.txt", typ=b"1", linkname=b"aa_good_first.txt")), True, ["sym", "hard"])
    c["devices"] = (wrap(entry("chr.txt", typ=b"3") + entry("blk.txt", typ=b"4") + entry("fifo.txt", typ=b"6") +
                         entry("cont.txt", cap, typ=b"7")), True, ["chr", "blk", "fifo"])
    c["unknown_type"] = (wrap(entry("weird.txt", cap, typ=b"Z") + entry("sparse.txt", cap, typ=b"S")), True,
                         ["weird", "sparse"])
    c["dirs_and_dots"] = (wrap(entry("adir/", typ=b"5") + entry("./dotslash.txt", cap) + entry(".hidden.txt", cap) +
                               entry("noext", cap) + entry("x.", cap) + entry("dup.txt", cap) +
                               entry("dup.txt", cap)), True, [".hidden.txt", "noext", "x.", "dup"])
    c["gnu_longname"] = (wrap(gnu_longname(long300 + b".jpg") + entry("ignored", noise_jpeg(230, 215, 32)) +
                              gnu_longname(long300 + b".txt") + entry("ignored2", cap)), True, [])
    c["odd_names"] = (wrap(entry(b"bad\xffname.txt", cap) + entry("tab\tname.txt", cap) +
                           entry("nl\nname.txt", cap) + entry("back\\slash.txt", cap) +
                           entry("sp ace.txt", cap) + entry("e\u0301t\u00e9.txt".encode(), cap) +
                           entry("longext." + "x" * 70, cap) + entry("UPPER.TXT", cap)), True, ["longext." + "x" * 70])
    c["gnu_longname_huge"] = (wrap(gnu_longname(b"k" * 20000 + b".txt") + entry("ignored", cap)), True, [])
    c["pax_path"] = (wrap(pax([rec(b"path", long300 + b".txt")]) + entry("ignored.txt", cap) +
                          pax([rec(b"path", b"../pax_escape.txt")]) + entry("fine.txt", cap)), True,
                     ["../pax_escape"])
    c["pax_odd_keys"] = (wrap(pax([rec(b"mtime", b"not-a-time"), rec(b"uid", b"-5"), rec(b"SCHILY.xattr.user.x",
                                                                                          b"\0\xff\x01"),
                                   rec(b"comment", b"\xff\xfe binary \0 here"), rec(b"", b"empty key"),
                                   rec(b"hdrcharset", b"BINARY"), rec(b"linkpath", b"/etc/shadow"),
                                   rec("p\u00e4th".encode(), b"x")]) + entry("odd.txt", cap) +
                              pax([rec(b"path", b"nul\0inside.txt")]) + entry("nul.txt", cap)), True, ["nul"])
    c["pax_global"] = (wrap(pax([rec(b"path", b"global_ignored.txt"), rec(b"comment", b"g")], typ=b"g") +
                            entry("after_global.txt", cap)), True, [])
    c["pax_size_overflow"] = (wrap(pax([rec(b"size", b"99999999999999999999999")]) + entry("ovf.txt", cap)), False, [])
    c["pax_size_negative"] = (wrap(pax([rec(b"size", b"-1")]) + entry("neg.txt", cap)), False, [])
    c["pax_size_huge"] = (wrap(pax([rec(b"size", b"10737418240")]) + entry("huge.txt", cap)), False, [])
    c["pax_bad_length"] = (wrap(pax([b"999 path=x.txt\n"]) + entry("badlen.txt", cap)), False, [])
    c["pax_zero_length"] = (wrap(pax([b"0 =\n"]) + entry("zerolen.txt", cap)), False, [])
    c["pax_no_newline"] = (wrap(pax([b"12 path=abc"]) + entry("nonl.txt", cap)), False, [])
    c["pax_huge_record"] = (wrap(pax([rec(b"comment", b"c" * (17 << 20))]) + entry("hugepax.txt", cap)), False, [])
    c["size_10gb_short"] = (wrap(header("big.txt", 10 << 30) + cap, end=b""), False, ["big"])
    c["size_10gb_base256"] = (wrap(header("big256.txt", size_field=b"\x80" + (10 << 30).to_bytes(11, "big")) + cap,
                                   end=b""), False, ["big256"])
    c["size_negative_octal"] = (wrap(header("neg.txt", size_field=b"-0000000012\0") + pad(cap)), False, [])
    c["size_negative_base256"] = (wrap(header("neg256.txt", size_field=b"\xff" * 12) + pad(cap)), False, [])
    c["size_garbage"] = (wrap(header("garb.txt", size_field=b"12x45\0\0\0\0\0\0\0") + pad(cap)), False, [])
    c["size_900mb_short"] = (wrap(header("big900.txt", 900 << 20) + cap, end=b""), False, ["big900"])
    c["size_max_octal"] = (wrap(header("max.txt", size_field=b"77777777777\0") + pad(cap)), False, ["max"])
    c["bad_checksum"] = (wrap(bytes(bytearray(entry("chk.txt", cap))[:148]) + b"0000000\0" +
                              entry("chk.txt", cap)[156:]), False, [])
    good = wrap(b"")
    c["truncated_mid_member"] = (good[:512 + 700], False, [])
    c["truncated_mid_header"] = (good[:len(good) // 2 // 512 * 512 + 100], False, [])
    c["no_end_blocks"] = (good[:-1024], True, [])
    c["garbage"] = (bytes((i * 7919 + 13) % 251 for i in range(4096)), False, [])
    c["empty"] = (b"", True, [])
    c["zeros_only"] = (b"\0" * 10240, True, [])
    # after the end-of-archive blocks: another archive (cat a.tar b.tar) is
    # read on, garbage is an error, zeros (record padding) are nothing
    c["trailing_garbage"] = (good + b"\x01garbage after the end\n" * 30, False, [])
    c["trailing_zeros_odd"] = (good + b"\0" * 9000, True, [])
    c["concatenated"] = (good + SECOND, True, [])
    return c


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "--check", "-3"], input=data, stdout=subprocess.PIPE,
                          check=True).stdout


def compressed_cases(mvl):
    """name -> (bytes, readable)."""
    import gzip
    # a few hundred kB of text that compresses poorly: many zstd blocks, so a
    # cut stream still decodes its first samples
    import hashlib
    big = members_tar(GOOD_FIRST + [("k%03d" % i, [("txt", hashlib.sha512(b"%d" % i).hexdigest().encode() * 8)])
                                    for i in range(600)] + GOOD_LAST)
    z = zstd(big) if shutil.which("zstd") else subprocess.run(
        [mvl, "cat", "--compress", "zst"], input=big, stdout=subprocess.PIPE, check=True).stdout
    g = gzip.compress(big, mtime=0)
    zc = bytearray(z)
    zc[len(zc) // 2] ^= 0xFF
    zc[len(zc) // 2 + 1] ^= 0x5A
    gc = bytearray(g)
    gc[len(gc) // 2] ^= 0xFF
    gc[len(gc) // 2 + 1] ^= 0x5A
    return {
        "truncated.tar.zst": (z[:len(z) * 2 // 3], False),
        "concatenated.tar.zst": (z + (zstd(SECOND) if shutil.which("zstd") else b""), True),
        "concatenated.tar.gz": (g + gzip.compress(SECOND, mtime=0), True),
        "corrupt_frame.tar.zst": (bytes(zc), False),
        "zst_magic_only.tar.zst": (z[:4], False),
        "zst_trailing_garbage.tar.zst": (z + b"\x00\x01\x02garbage", False),
        "truncated.tar.gz": (g[:len(g) * 2 // 3], False),
        "corrupt.tar.gz": (bytes(gc), False),
        "gz_magic_only.tar.gz": (g[:2], False),
    }


# ---------------------------------------------------------------------------
# recipes, run dir, text

def recipes():
    r = {}
    r["deep_nesting"] = b"a: " + b"[" * 100000 + b"]" * 100000 + b"\n"
    r["deep_block"] = b"".join(b"  " * i + b"k%d:\n" % i for i in range(3000)) + b"  " * 3000 + b"v\n"
    r["alias_cycle"] = b"seed: 1\nsources: &a\n  s: *a\nstages: &b [*b]\n"
    laughs = [b"l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 12):
        laughs.append(b"l%d: &l%d [%s]" % (i, i, b", ".join([b"*l%d" % (i - 1)] * 9)))
    r["alias_bomb"] = b"\n".join(laughs) + b"\nsources: *l11\nstages: *l11\n"
    r["invalid_utf8"] = b"seed: 1\nsources:\n  caps\xff\xfe:\n    kind: captions\n    shards: x.tar\n"
    r["nul_bytes"] = b"seed: 1\0\nsources:\n  a\0b: {}\n"
    r["huge_scalar"] = b"seed: 1\nsources:\n  caps:\n    kind: " + b"c" * (8 << 20) + b"\n"
    r["binary"] = bytes((i * 31 + 7) % 256 for i in range(8192))
    r["empty"] = b""
    r["tabs"] = b"seed: 1\nsources:\n\tcaps:\n\t\tkind: captions\n"
    r["duplicate_keys"] = b"seed: 1\nseed: 2\nsources: {}\nsources: {}\nstages: []\n"
    r["huge_numbers"] = (b"seed: 99999999999999999999999999\nmax_epochs: -1e999\nsources:\n  c:\n    kind: captions\n"
                         b"    shards: x.tar\nstages:\n  - name: s\n    seq_len: 99999999999999\n    tokens: 1e400\n"
                         b"    mix: {c: 1e-400}\n")
    r["many_documents"] = b"---\nseed: 1\n---\nseed: 2\n" * 1000
    r["wrong_types"] = b"seed: [1]\nsources: [a, b]\nstages: {x: 1}\ntokenizer: 5\n"
    return r


def run_dir(out):
    """A run directory whose manifest, stats, rejects and metrics are hostile."""
    d = os.path.join(out, "run")
    deep = b"[" * 100000 + b"]" * 100000
    files = {
        "manifest.json": b'{"recipe": "x", "steps": ' + deep + b', "steps": {"filter": {"inputs": '
                         + b'["/etc/passwd", "../../x", 5, null]}}}',
        "filter/captions.stats.json": b'{"chain": "clean", "in": 1e999, "kept": -5, "chain": "dup", '
                                      b'"filters": [{"name": "\xff\xfe", "reasons": {"a": "x"}}, 5, null]}',
        "filter/captions.rejects.tsv": b"key\tsource\treason\tdetail\n\xff\xfe\t\0\tclean.empty\n" +
                                       b"only-one-column\n" + b"k\t/etc/passwd\tr\td\textra\n" * 3,
        "filter/text.stats.json": b'{"filters": ' + deep + b"}",
        "filter/conv.stats.json": b"",
        "stages/s1/mix.json": b'{"sources": [{"name": "a\\u0000b", "tokens": "many"}], "budget": -1}',
        "stages/s1/pack-1024.json": b'{"samples": 1e308, "sequences": 0, "padding": "NaN", "seq_len": 0}',
        "stages/s1/train-1024/metrics.jsonl": b'{"step": 1, "loss": 2}\n\0\0\0\n{"step": \xff}\n' + deep + b"\n" +
                                              b'{"step": 2, "loss": 1e999}\n',
        "stages/s1/average.json": b'{"weights": [1e999, -1e999, "x"], "inputs": ' + deep + b"}",
        "eval.json": b'{"dev_grid": ' + deep + b', "test": {"a": {"b": {"c": 1}}}}',
        "ablation/eval.json": b"\xff\xfe\x00{",
    }
    for name, data in files.items():
        p = os.path.join(d, name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
    return d


def run_dir_examples(out, sample_keys):
    """A run directory whose filter step read the hostile shards: the
    report's examples decode thumbnails of bombs and broken images."""
    d = os.path.join(out, "run2")
    tar = os.path.join(out, "tar")
    inputs = [os.path.join(out, "samples.tar"), os.path.join(tar, "garbage.tar"),
              os.path.join(tar, "truncated.tar.zst"), os.path.join(tar, "traversal.tar"), "/dev/zero", "/etc",
              os.path.join(tar, "no-such.tar")]
    manifest = {"recipe": "nasty.yaml", "steps": [
        {"name": "filter.captions", "source": "captions", "status": "done", "inputs": inputs,
         "outputs": [os.path.join(d, "filter", "captions.stats.json")]}]}
    rows = ["key\tsource\treason\tdetail"]
    for i, k in enumerate(sample_keys):
        rows.append("%s\t%s\t%s\tdetail %d" % (k, inputs[0], "imgfilter.bad_header" if i % 2 else "clean.empty", i))
    rows.append("../evil\t%s\tunsafe_path\tx" % inputs[3])
    stats = {"chain": "clean,imgfilter", "in": len(sample_keys) + 1, "kept": 0, "dropped": len(sample_keys) + 1,
             "filters": [{"name": "clean", "in": 10, "kept": 5, "dropped": 5, "reasons": {"clean.empty": 5}}]}
    write(os.path.join(d, "manifest.json"), json.dumps(manifest).encode())
    write(os.path.join(d, "filter", "captions.rejects.tsv"), ("\n".join(rows) + "\n").encode())
    write(os.path.join(d, "filter", "captions.stats.json"), json.dumps(stats).encode())
    return d


def ingest_inputs(out):
    """A folder and a JSONL list for `mvl ingest` with hostile entries: a
    FIFO (opening it blocks), a symlink loop, a dangling link, devices and
    directories where files should be, unreadable files."""
    d = os.path.join(out, "folder")
    os.makedirs(os.path.join(d, "sub"), exist_ok=True)
    cap = b"a small house near a quiet lake"
    write(os.path.join(d, "a.jpg"), noise_jpeg(230, 215, 50))
    write(os.path.join(d, "a.txt"), cap)
    write(os.path.join(d, "sub", "c.jpg"), noise_jpeg(230, 215, 51))
    write(os.path.join(d, "sub", "c.txt"), cap)
    write(os.path.join(d, "fifo.jpg"), noise_jpeg(230, 215, 52))
    os.mkfifo(os.path.join(d, "fifo.txt"))
    os.symlink(".", os.path.join(d, "loop"))
    os.symlink("..", os.path.join(d, "sub", "up"))
    write(os.path.join(d, "dangling.jpg"), noise_jpeg(230, 215, 53))
    os.symlink("/nonexistent/x.txt", os.path.join(d, "dangling.txt"))
    write(os.path.join(d, "dev.jpg"), noise_jpeg(230, 215, 54))
    os.symlink("/dev/zero", os.path.join(d, "dev.txt"))
    write(os.path.join(d, "z.jpg"), noise_jpeg(230, 215, 55))
    write(os.path.join(d, "z.txt"), cap)
    j = os.path.join(out, "jsonl")
    os.makedirs(j, exist_ok=True)
    write(os.path.join(j, "img.jpg"), noise_jpeg(230, 215, 56))
    os.mkfifo(os.path.join(j, "fifo.jpg"))
    lines = [
        b'{"key": "j_good", "image": "img.jpg", "caption": "a cat"}',
        b'{"key": "j_fifo", "image": "fifo.jpg", "caption": "a cat"}',
        b'{"key": "j_zero", "image": "/dev/zero", "caption": "a cat"}',
        b'{"key": "j_dir", "image": "/etc", "caption": "a cat"}',
        b'{"key": "j_missing", "image": "no-such.jpg", "caption": "a cat"}',
        b'{"key": "j_up", "image": "../../../../../../../etc/hostname", "caption": "a cat"}',
        b'{"key": "../escape", "image": "img.jpg", "caption": "a cat"}',
        b'{"key": "j_dupkey", "key": "again", "image": "img.jpg", "caption": "a cat"}',
        b'{"key": "j_deep", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
        b'{"key": "j_nul", "image": "img.jpg", "caption": "a\u0000b"}',
        b'{"key": "j_raw_nul\0", "image": "img.jpg"}',
        b'{"key": "j_badutf8", "image": "img.jpg", "caption": "caf\xc3\x28"}',
        b'{"key": "j_huge", "image": "img.jpg", "caption": "' + b"w " * (3 << 20) + b'"}',
        b'not json at all',
        b'[1, 2]',
        b'{"id": 99999999999999999999999, "image": "img.jpg", "caption": "big id"}',
        b'{"key": "j_last", "image": "img.jpg", "caption": "the last line"}',
    ]
    write(os.path.join(j, "list.jsonl"), b"\n".join(lines) + b"\n")
    return d, os.path.join(j, "list.jsonl")


def texts():
    return {
        "invalid_utf8": b"caf\xc3\x28 \xff\xfe \xed\xa0\x80 \xc0\xaf end",
        "nul_bytes": b"a\0b\0\0c " * 1000,
        "huge_10mb": b"word " * (2 * 1024 * 1024),
        "one_long_word": b"x" * (4 * 1024 * 1024),
        "spaces_10mb": b" " * (10 * 1024 * 1024),
        "digits_1mb": b"7" * (1024 * 1024),
        "empty": b"",
        "specials": b"<|endoftext|> <|im_start|> <|fim_prefix|>" * 100,
    }


# ---------------------------------------------------------------------------


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    out = args[0]
    mvl = args[args.index("--mvl") + 1] if "--mvl" in args else os.environ.get("MVL", "mvl")
    cases = {"tar": {}, "compressed": {}, "samples": [], "recipes": [], "texts": []}
    for name, (data, readable, bad) in tar_cases().items():
        write(os.path.join(out, "tar", name + ".tar"), data)
        cases["tar"][name + ".tar"] = {"readable": readable, "bad_keys": bad, "good": GOOD_FIRST_BYTES in data}
    for name, (data, readable) in compressed_cases(mvl).items():
        write(os.path.join(out, "tar", name), data)
        cases["compressed"][name] = {"readable": readable, "good": readable}
    samples = sample_members()
    write(os.path.join(out, "samples.tar"), members_tar(samples))
    cases["samples"] = [k for k, _ in samples]
    for name, data in recipes().items():
        write(os.path.join(out, "recipe", name + ".yaml"), data)
        cases["recipes"].append(name + ".yaml")
    cases["run"] = run_dir(out)
    cases["run2"] = run_dir_examples(out, cases["samples"])
    cases["folder"], cases["jsonl"] = ingest_inputs(out)
    for name, data in texts().items():
        write(os.path.join(out, "text", name + ".txt"), data)
        cases["texts"].append(name + ".txt")
    write(os.path.join(out, "cases.json"), json.dumps(cases, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
