#!/usr/bin/python3
"""make_seeds.py: writes the fuzz harnesses' seed corpora, tests/fuzz/corpus/NAME/.

Small valid files of every shape each parser accepts, and a few broken
ones next to them (truncated, wrong magic, lying sizes), so the fuzzer
starts from deep inside each format.  Deterministic: rerunning it
rewrites the same bytes.  Usage: tests/fuzz/make_seeds.py [OUTDIR]
"""
import base64
import gzip
import io
import json
import os
import struct
import subprocess
import sys
import tarfile

from PIL import Image

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(name, fname, data):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, fname), "wb") as f:
        f.write(data)


# ------------------------------------------------------------------ images

def image_bytes(mode, size, fmt, **kw):
    im = Image.new(mode, size)
    px = im.load()
    for y in range(size[1]):
        for x in range(size[0]):
            v = (x * 37 + y * 11) % 256
            px[x, y] = {"L": v, "LA": (v, 200), "RGB": (v, 255 - v, x * 8 % 256),
                        "RGBA": (v, 20, 30, y * 16 % 256), "P": v % 4, "I;16": v * 250}[mode]
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def jpeg_with_orientation(orient):
    im = Image.new("RGB", (12, 8), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orient
    b = io.BytesIO()
    im.save(b, "JPEG", exif=exif.tobytes(), quality=50)
    return b.getvalue()


def images():
    out = {
        "rgb.jpg": image_bytes("RGB", (16, 12), "JPEG", quality=60),
        "gray.jpg": image_bytes("L", (9, 7), "JPEG"),
        "progressive.jpg": image_bytes("RGB", (24, 16), "JPEG", progressive=True),
        "cmyk.jpg": _save(Image.new("CMYK", (8, 8), (0, 50, 100, 0)), "JPEG"),
        "orient6.jpg": jpeg_with_orientation(6),
        "rgb.png": image_bytes("RGB", (10, 6), "PNG"),
        "rgba.png": image_bytes("RGBA", (7, 5), "PNG"),
        "la.png": image_bytes("LA", (5, 5), "PNG"),
        "palette.png": image_bytes("P", (8, 3), "PNG"),
        "gray16.png": image_bytes("I;16", (4, 4), "PNG"),
        "lossy.webp": image_bytes("RGB", (16, 16), "WEBP", quality=50),
        "lossless.webp": image_bytes("RGBA", (6, 4), "WEBP", lossless=True),
        "animated.webp": _animated_webp(),
    }
    out["truncated.jpg"] = out["rgb.jpg"][: len(out["rgb.jpg"]) // 2]
    out["truncated.png"] = out["rgb.png"][:40]
    out["truncated.webp"] = out["lossy.webp"][:30]
    # a valid header claiming 60000 x 60000 on a few hundred bytes
    png = bytearray(out["rgb.png"])
    png[16:24] = struct.pack(">II", 60000, 60000)
    out["huge_claim.png"] = bytes(png)
    jpg = bytearray(out["rgb.jpg"])
    sof = jpg.find(b"\xff\xc0")
    if sof > 0:
        jpg[sof + 5:sof + 9] = struct.pack(">HH", 65000, 65000)
    out["huge_claim.jpg"] = bytes(jpg)
    out["not_an_image.bin"] = b"GIF89a\x01\x00\x01\x00"
    out["empty"] = b""
    return out


def _save(im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    return b.getvalue()


def _animated_webp():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    return _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)


# ------------------------------------------------------------------ tar

def tar_bytes(members, fmt=tarfile.USTAR_FORMAT, **kw):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for name, data, typ in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data) if typ == tarfile.REGTYPE else 0
            ti.type = typ
            ti.mtime = 1700000000
            if typ == tarfile.SYMTYPE:
                ti.linkname = "x.jpg"
            for k, v in kw.items():
                setattr(ti, k, v)
            t.addfile(ti, io.BytesIO(data) if typ == tarfile.REGTYPE else None)
    return b.getvalue()


def tars(img):
    R = tarfile.REGTYPE
    basic = [("a/000.jpg", img, R), ("a/000.txt", b"a red square", R),
             ("a/000.json", b'{"url":"x","conversations":[{"from":"human","value":"<image>hi"}]}', R),
             ("a/001.txt", b"second", R), ("a/001.JPG", img, R)]
    out = {
        "ustar.tar": tar_bytes(basic),
        "gnu_longname.tar": tar_bytes([("d" * 120 + "/key.txt", b"long name", R)], tarfile.GNU_FORMAT),
        "pax.tar": tar_bytes([("p\u00e9/" + "e" * 110 + ".txt", b"pax name", R)], tarfile.PAX_FORMAT),
        "unsafe.tar": tar_bytes([("../evil.txt", b"x", R), ("/abs.txt", b"y", R), (".hidden", b"z", R),
                                 ("noext", b"w", R), ("dup.txt", b"1", R), ("dup.txt", b"2", R),
                                 ("link.jpg", b"", tarfile.SYMTYPE), ("dir", b"", tarfile.DIRTYPE)]),
    }
    plain = out["ustar.tar"]
    out["ustar.tar.gz"] = gzip.compress(plain, mtime=0)
    out["ustar.tar.zst"] = subprocess.run(["zstd", "-q", "-c", "--no-check"], input=plain,
                                          stdout=subprocess.PIPE, check=True).stdout
    out["ustar_check.tar.zst"] = subprocess.run(["zstd", "-q", "-c", "-3"], input=plain,
                                                stdout=subprocess.PIPE, check=True).stdout
    out["truncated.tar"] = plain[:700]
    out["bad_checksum.tar"] = plain[:148] + b"0000000\0" + plain[156:]
    # a base-256 size field (GNU) claiming far more data than there is
    big = bytearray(plain[:512])
    big[124:136] = b"\x80" + b"\0" * 3 + struct.pack(">Q", 1 << 40)
    big[148:156] = b"        "
    big[148:156] = b"%06o\0 " % sum(big)
    out["base256_size.tar"] = bytes(big) + plain[512:]
    out["truncated.tar.gz"] = out["ustar.tar.gz"][:60]
    out["empty"] = b""
    return out


# ------------------------------------------------------------------ json

def sample_json():
    return {
        "caption.json": '{"caption":"a cat","url":"http://x","width":10}',
        "conv.json": json.dumps({"conversations": [
            {"from": "human", "value": "<image>\nWhat is this?"},
            {"from": "gpt", "value": "A cat."},
            {"from": "human", "value": "Sure?"}, {"from": "gpt", "value": "Yes."}]}),
        "conv_roles.json": json.dumps({"conversations": [
            {"role": "system", "value": "be brief"}, {"role": "user", "value": "hi"},
            {"role": "assistant", "value": "<|im_end|>"}]}),
        "conv_bad.json": '{"conversations":[{"from":"alien","value":3}]}',
        "conv_notarray.json": '{"conversations":{"a":1}}',
        "array.json": '[1,2,3]',
        "deep.json": "[" * 200 + "]" * 200,
        "unicode.json": '{"caption":"\\ud83d\\ude00 caf\\u00e9 \\u0000 end","language":"en"}',
        "truncated.json": '{"conversations":[{"from":"human","val',
        "invalid_utf8.json": b'{"caption":"\xff\xfe\xc3"}',
        "empty": "",
    }


# ------------------------------------------------------------------ recipe

def recipes():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "recipes", "demo.yaml"), "rb") as f:
        demo = f.read()
    return {
        "demo.yaml": demo,
        "small.yaml": """seed: 3
sources:
  caps: {kind: captions, shards: [a/*.tar, "b/{000..003}.tar"], filters: "clean,capfilter:min_words=2"}
tokenizer: {encoding: cl100k_base}
stages:
  - name: warmup
    train: projector
    seq_len: [256, 512]
    tokens: 1M
    mixture: {caps: 1.0}
    optimizer: {lr: 1e-3, lr_scheduler: cosine, warmup: 10}
""",
        "typo.yaml": "seed: x\nsorces: {}\nstages:\n  - name: a\n    lr_sheduler: cosine\n",
        "anchors.yaml": "a: &x {k: [1, 2, *x]}\nb: *x\n",
        "tags.yaml": "--- !!map\n? [a, b]\n: !!binary aGVsbG8=\n...\n--- second\n",
        "tabs.yaml": "seed:\t1\n  bad: indent\n",
        "empty": "",
    }


# ------------------------------------------------------------------ filter specs

def filter_specs():
    specs = ["clean", "clean,capfilter:min_words=3,imgfilter,dedup",
             "capfilter:min_words=3:boilerplate=1:lang=en:lang_min_conf=0.3",
             "imgfilter:min_side=56:max_aspect=3:min_std=3", "dedup:threshold=4",
             "capfilter:min_words=-1", "capfilter:min_words=99999999999999999999",
             "nosuch", ",,", "clean:", "clean:=", "capfilter:lang=", "imgfilter:min_side=1e400",
             "pairscore", "clean,clean,clean"]
    return {"spec%02d" % i: s for i, s in enumerate(specs)}


# ------------------------------------------------------------------ tokenizers

B64 = [base64.b64encode(bytes([c])).decode() for c in range(256)]


def tiktokens():
    ranks = "".join("%s %d\n" % (B64[c], c) for c in range(256))
    merges = "".join("%s %d\n" % (base64.b64encode(t).decode(), 256 + i)
                     for i, t in enumerate([b"he", b"ll", b"hell", b"hello", b" w", b"or", b"ld"]))
    return {
        "bytes.tiktoken": ranks,
        "merges.tiktoken": ranks + merges,
        "partial.tiktoken": "".join("%s %d\n" % (B64[c], c) for c in range(32, 127)),
        "dup_rank.tiktoken": "YQ== 0\nYg== 0\n",
        "dup_token.tiktoken": "YQ== 0\nYQ== 1\n",
        "bad_b64.tiktoken": "!!!! 0\n",
        "huge_rank.tiktoken": "YQ== 4294967295\nYg== 99999999999\n",
        "no_newline.tiktoken": "YQ== 0",
        "crlf.tiktoken": "YQ== 0\r\nYg== 1\r\n",
        "empty": "",
    }


def byte_level_vocab():
    # GPT-2's printable stand-ins for bytes, as tokenizer.json stores them
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def tokenizer_jsons():
    vocab = byte_level_vocab()
    vocab = {k: v for k, v in sorted(vocab.items(), key=lambda kv: kv[1])}
    vocab.update({"he": 256, "ll": 257, "hell": 258})
    added = [{"id": 259, "content": "<|endoftext|>", "special": True}, {"id": 260, "content": "<s>", "special": True}]

    def doc(merges, pre, norm=None):
        return json.dumps({"version": "1.0", "added_tokens": added, "normalizer": norm,
                           "pre_tokenizer": pre, "decoder": {"type": "ByteLevel"},
                           "model": {"type": "BPE", "vocab": vocab, "merges": merges}})
    bl = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    split = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t)|\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+|\\s+"},
         "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}
    return {
        "string_merges.json": doc(["h e", "l l", "he ll"], bl),
        "list_merges.json": doc([["h", "e"], ["l", "l"], ["he", "ll"]], split),
        "nfc.json": doc(["h e"], bl, {"type": "NFC"}),
        "nfkc_seq.json": doc(["h e"], bl, {"type": "Sequence", "normalizers": [{"type": "NFKC"}]}),
        "bad_merge.json": doc(["h", "x y z"], bl),
        "unknown_pre.json": doc([], {"type": "Whitespace"}),
        "bad_regex.json": doc([], {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}, bl]}),
        "wordpiece.json": json.dumps({"model": {"type": "WordPiece", "vocab": {}}}),
        "truncated.json": doc(["h e"], bl)[:300],
        "empty": "",
    }


# ------------------------------------------------------------------ safetensors

def safetensors(tensors, meta=None, pad=True, lie=None):
    header, data = {}, b""
    for name, shape, vals in tensors:
        raw = struct.pack("<%df" % len(vals), *vals)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if meta is not None:
        header["__metadata__"] = meta
    if lie:
        lie(header)
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds():
    t = [("a.weight", [2, 3], [1, 2, 3, 4, 5, 6]), ("b", [4], [0.5] * 4), ("scalar", [], [7.0])]
    return {
        "ok.safetensors": safetensors(t, {"format": "pt"}),
        "empty_tensor.safetensors": safetensors([("e", [0, 5], [])], {}),
        "bad_offsets.safetensors": safetensors(t, lie=lambda h: h["b"].update(data_offsets=[0, 400])),
        "bad_shape.safetensors": safetensors(t, lie=lambda h: h["b"].update(shape=[3])),
        "huge_shape.safetensors": safetensors(t, lie=lambda h: h["b"].update(shape=[1 << 31, 1 << 31, 4])),
        "neg_shape.safetensors": safetensors(t, lie=lambda h: h["b"].update(shape=[-1, -4])),
        "f16.safetensors": safetensors(t, lie=lambda h: h["b"].update(dtype="F16")),
        "huge_header_len.safetensors": struct.pack("<Q", 1 << 62) + b"{}",
        "truncated.safetensors": safetensors(t)[:20],
        "empty": b"",
    }


# ------------------------------------------------------------------ pack files

def pack_record(L, ids, segs, imgs):
    ntok = len(ids)
    ids = ids + [0] * (L - ntok)
    pos, seg, loss = [], [], []
    for k, (start, n, _flags, _key) in enumerate(segs):
        pos += list(range(n))
        seg += [k + 1] * n
        loss += [0] + [1] * (n - 1)
    pos += [0] * (L - len(pos))
    seg += [0] * (L - len(seg))
    loss += [0] * (L - len(loss))
    body = struct.pack("<%dI" % L, *ids) + struct.pack("<%dI" % L, *pos) + struct.pack("<%dI" % L, *seg)
    body += bytes(loss)
    rec = bytearray(24) + body
    rec += b"\0" * (-len(rec) % 8)
    for start, n, flags, key in segs:
        rec += struct.pack("<4I", start, n, flags, len(key))
    for *_, key in segs:
        rec += key
    rec += b"\0" * (-len(rec) % 8)
    table_at = len(rec)
    rec += bytearray(24 * len(imgs))
    rec += b"\0" * (-len(rec) % 8)
    for i, (segno, token, h, w) in enumerate(imgs):
        px_at = len(rec)
        struct.pack_into("<4IQ", rec, table_at + 24 * i, segno, token, h, w, px_at)
        rec += bytes((j * 7) % 256 for j in range(h * w * 3))
        rec += b"\0" * (-len(rec) % 8)
    struct.pack_into("<4IQ", rec, 0, 0x31514553, ntok, len(segs), len(imgs), len(rec))
    return bytes(rec), table_at


def pack_file(L, records):
    body, index = b"", []
    for r in records:
        index.append(64 + len(body))
        body += r
    index_off = 64 + len(body)
    head = b"MVLPACK1" + struct.pack("<IIQQI", 1, L, len(records), index_off, 64)
    head += b"\0" * (64 - len(head))
    return head + body + struct.pack("<%dQ" % len(index), *index)


def packs():
    L = 8
    r1, _ = pack_record(L, [1, 2, 3, 4, 5], [(0, 3, 0, b"src/0/k1"), (3, 2, 1, b"k2")], [])
    r2, table_at = pack_record(L, [9] * 8, [(0, 8, 0, b"img")], [(1, 1, 28, 28)])
    ok = pack_file(L, [r1, r2])
    lie_count = bytearray(ok)
    struct.pack_into("<Q", lie_count, 16, 1 << 60)
    lie_img = bytearray(ok)  # the image's h: 2^31 - 1 rows in a few bytes
    h_at = struct.unpack_from("<Q", ok, len(ok) - 8)[0] + table_at + 8
    lie_img[h_at:h_at + 4] = b"\xff\xff\xff\x7f"
    return {
        "ok.pack": ok,
        "one_seq.pack": pack_file(L, [r1]),
        "no_seq.pack": pack_file(L, []),
        "lie_count.pack": bytes(lie_count),
        "lie_image.pack": bytes(lie_img),
        "truncated.pack": ok[:100],
        "bad_magic.pack": b"MVLPACK2" + ok[8:],
        "empty": b"",
    }


def main():
    imgs = images()
    for k, v in imgs.items():
        put("image", k, v)
    for k, v in tars(imgs["rgb.jpg"]).items():
        put("tar", k, v)
    for k, v in sample_json().items():
        put("sample_json", k, v)
    for k, v in recipes().items():
        put("recipe", k, v)
    for k, v in filter_specs().items():
        put("filter_spec", k, v)
    for k, v in tiktokens().items():
        put("tiktoken", k, v)
    for k, v in tokenizer_jsons().items():
        put("tokenizer_json", k, v)
    for k, v in safetensors_seeds().items():
        put("safetensors", k, v)
    for k, v in packs().items():
        put("packfile", k, v)


if __name__ == "__main__":
    main()
