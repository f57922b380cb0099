#!/usr/bin/python3
"""make_demo_data.py OUTDIR [--seed N]: a small raw image-text dataset with the
dirt real web data has, deterministic from the seed, no downloads.

OUTDIR/folder/   image + caption files (some PNG with alpha, some WebP, one
                 EXIF-rotated JPEG, a CMYK JPEG, and dirty ones: a truncated
                 JPEG, a zero-byte image, text named .jpg, a missing caption,
                 an invalid UTF-8 caption, a blank caption)
OUTDIR/list.jsonl + OUTDIR/jsonl_images/   the same kind of data as JSONL
OUTDIR/shards/   img2dataset-style output: 00000.tar + 00000_stats.json
"""
import io
import json
import os
import random
import sys
import tarfile

from PIL import Image, ImageDraw

SHAPES = ["circle", "square", "triangle"]
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220),
           "yellow": (230, 210, 40), "purple": (140, 60, 170)}
SIZES = {"small": 0.18, "large": 0.36}


def scene(rng, w, h):
    """A picture of one to three shapes and the caption that describes it."""
    bg = tuple(rng.randint(200, 255) for _ in range(3))
    im = Image.new("RGB", (w, h), bg)
    d = ImageDraw.Draw(im)
    parts = []
    for _ in range(rng.randint(1, 3)):
        shape, cname, sname = rng.choice(SHAPES), rng.choice(list(COLOURS)), rng.choice(list(SIZES))
        r = int(min(w, h) * SIZES[sname] / 2)
        cx, cy = rng.randint(r, w - r), rng.randint(r, h - r)
        box = [cx - r, cy - r, cx + r, cy + r]
        if shape == "circle":
            d.ellipse(box, fill=COLOURS[cname])
        elif shape == "square":
            d.rectangle(box, fill=COLOURS[cname])
        else:
            d.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=COLOURS[cname])
        parts.append(f"a {sname} {cname} {shape}")
    return im, " and ".join(parts) + "."


def jpeg(im, **kw):
    b = io.BytesIO()
    im.save(b, "JPEG", quality=88, **kw)
    return b.getvalue()


def main():
    out = sys.argv[1]
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 1
    rng = random.Random(seed)
    folder = os.path.join(out, "folder")
    os.makedirs(folder, exist_ok=True)
    for i in range(40):
        w, h = rng.choice([(320, 240), (640, 480), (480, 640), (800, 600), (1024, 768)])
        im, cap = scene(rng, w, h)
        key = os.path.join(folder, f"img{i:04d}")
        kind = i % 8
        if kind == 1:  # PNG with a transparent border
            rgba = im.convert("RGBA")
            ImageDraw.Draw(rgba).rectangle([0, 0, w - 1, 9], fill=(0, 0, 0, 0))
            rgba.save(key + ".png")
        elif kind == 2:
            im.save(key + ".webp", quality=80)
        else:
            open(key + ".jpg", "wb").write(jpeg(im))
        open(key + ".txt", "w", encoding="utf-8").write(cap)
    # duplicates, as scraped data has them: an exact copy and a re-encode
    first = os.path.join(folder, "img0000")
    src = first + ".jpg"
    with open(src, "rb") as f:
        data = f.read()
    open(os.path.join(folder, "dup_exact.jpg"), "wb").write(data)
    open(os.path.join(folder, "dup_exact.txt"), "w").write("an exact copy of the first picture")
    Image.open(io.BytesIO(data)).save(os.path.join(folder, "dup_reencoded.webp"), quality=70)
    open(os.path.join(folder, "dup_reencoded.txt"), "w").write("the first picture, re-encoded as WebP")
    # an EXIF-rotated photo (orientation 6: displayed rotated 90 degrees)
    im, cap = scene(rng, 640, 480)
    exif = Image.Exif()
    exif[274] = 6
    open(os.path.join(folder, "rotated.jpg"), "wb").write(jpeg(im, exif=exif.tobytes()))
    open(os.path.join(folder, "rotated.txt"), "w").write(cap)
    # a CMYK JPEG
    im, cap = scene(rng, 400, 300)
    open(os.path.join(folder, "cmyk.jpg"), "wb").write(jpeg(im.convert("CMYK")))
    open(os.path.join(folder, "cmyk.txt"), "w").write(cap)
    # dirt
    im, cap = scene(rng, 640, 480)
    whole = jpeg(im)
    open(os.path.join(folder, "dirty_truncated.jpg"), "wb").write(whole[: len(whole) // 2])
    open(os.path.join(folder, "dirty_truncated.txt"), "w").write(cap)
    open(os.path.join(folder, "dirty_empty.jpg"), "wb").close()
    open(os.path.join(folder, "dirty_empty.txt"), "w").write(cap)
    open(os.path.join(folder, "dirty_notimage.jpg"), "w").write("<html>404 not found</html>")
    open(os.path.join(folder, "dirty_notimage.txt"), "w").write(cap)
    open(os.path.join(folder, "dirty_nocaption.jpg"), "wb").write(whole)
    open(os.path.join(folder, "dirty_badutf8.jpg"), "wb").write(whole)
    open(os.path.join(folder, "dirty_badutf8.txt"), "wb").write(b"caf\xe9 on a \xff\xfe table")
    open(os.path.join(folder, "dirty_blank.jpg"), "wb").write(whole)
    open(os.path.join(folder, "dirty_blank.txt"), "w").write("   \n")

    # JSONL with images beside it
    jdir = os.path.join(out, "jsonl_images")
    os.makedirs(jdir, exist_ok=True)
    with open(os.path.join(out, "list.jsonl"), "w") as f:
        for i in range(20):
            im, cap = scene(rng, 512, 384)
            name = f"j{i:03d}.jpg"
            open(os.path.join(jdir, name), "wb").write(jpeg(im))
            f.write(json.dumps({"image": f"jsonl_images/{name}", "caption": cap, "url": f"http://example.com/{name}"}) + "\n")
        f.write(json.dumps({"image": "jsonl_images/missing.jpg", "caption": "gone"}) + "\n")
        f.write("{not json\n")

    # img2dataset-style webdataset output
    sdir = os.path.join(out, "shards")
    os.makedirs(sdir, exist_ok=True)
    n = 30
    with tarfile.open(os.path.join(sdir, "00000.tar"), "w", format=tarfile.GNU_FORMAT) as t:
        for i in range(n):
            im, cap = scene(rng, 384, 256)
            key = f"{i:09d}"
            meta = {"url": f"http://example.com/{key}.jpg", "key": key, "status": "success",
                    "error_message": None, "width": 384, "height": 256,
                    "original_width": 1152, "original_height": 768, "caption": cap}
            for ext, data in (("jpg", jpeg(im)), ("txt", cap.encode()), ("json", json.dumps(meta).encode())):
                ti = tarfile.TarInfo(f"{key}.{ext}")
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    json.dump({"count": n, "successes": n, "failed_to_download": 0, "failed_to_resize": 0},
              open(os.path.join(sdir, "00000_stats.json"), "w"))


if __name__ == "__main__":
    main()
