#!/usr/bin/python3
"""bench_data.py: build the benchmark's input shards (called by bench_ingest.sh).

    bench_data.py OUTDIR [--photos DIR] [--n-photos N] [--n-small N] [--big-mb MB]

Writes, in OUTDIR:
  photos.tar  N samples KEY.jpg + KEY.txt: the real JPEG photos of DIR
              (Debian's mate-backgrounds), repeated to N samples, keys unique
  small.tar   N samples of 64x64 JPEGs (crops of the photos downscaled with
              Pillow, saved at quality 90), all distinct
  big.tar     about MB megabytes of samples (photo bytes + caption + json), for
              the stream copy rate
and prints one 'set NAME k=v ...' line per shard describing it.
"""
import argparse
import glob
import io
import json
import os
import random
import sys
import tarfile

from PIL import Image

MTIME = 1700000000


def add(tf, name, data):
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = MTIME
    ti.mode = 0o644
    ti.uname = ti.gname = "root"
    tf.addfile(ti, io.BytesIO(data))


def load_photos(d):
    files = sorted(glob.glob(os.path.join(d, "*.jpg")))
    out = []
    for f in files:
        with open(f, "rb") as fh:
            b = fh.read()
        im = Image.open(io.BytesIO(b))
        if im.format != "JPEG":
            continue
        out.append((os.path.basename(f)[:-4], b, im.size))
    return out


def caption(name, i):
    return ("a photo from the %s wallpaper, sample %d, taken outdoors in good light"
            % (name, i)).encode()


def make_photos(path, photos, n):
    mp = 0.0
    nbytes = 0
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(n):
            name, b, (w, h) = photos[i % len(photos)]
            key = "%08d" % i
            add(tf, key + ".jpg", b)
            add(tf, key + ".txt", caption(name, i))
            mp += w * h / 1e6
            nbytes += len(b)
    print("set photos samples=%d distinct=%d mean_mp=%.2f mean_kb=%.0f file_mb=%.1f"
          % (n, len(photos), mp / n, nbytes / n / 1e3, os.path.getsize(path) / 1e6))


def make_small(path, photos, n, seed=1):
    rng = random.Random(seed)
    # decode each photo once at a reduced scale, then take random crops
    srcs = []
    for name, b, _ in photos:
        im = Image.open(io.BytesIO(b))
        im.draft("RGB", (im.size[0] // 4, im.size[1] // 4))
        srcs.append((name, im.convert("RGB")))
    bic = getattr(Image, "Resampling", Image).BICUBIC
    nbytes = 0
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(n):
            name, im = srcs[i % len(srcs)]
            w, h = im.size
            side = rng.randint(64, min(w, h, 320))
            x = rng.randint(0, w - side)
            y = rng.randint(0, h - side)
            tile = im.crop((x, y, x + side, y + side)).resize((64, 64), bic)
            bio = io.BytesIO()
            tile.save(bio, "JPEG", quality=90)
            key = "%08d" % i
            add(tf, key + ".jpg", bio.getvalue())
            add(tf, key + ".txt", caption(name, i))
            nbytes += bio.tell()
    print("set small samples=%d distinct=%d size=64x64 mean_kb=%.2f file_mb=%.1f"
          % (n, n, nbytes / n / 1e3, os.path.getsize(path) / 1e6))


def make_big(path, photos, mb):
    target = mb * 1e6
    i = 0
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        while tf.fileobj.tell() < target:
            name, b, (w, h) = photos[i % len(photos)]
            key = "%08d" % i
            add(tf, key + ".jpg", b)
            add(tf, key + ".json", json.dumps({"width": w, "height": h, "source": name},
                                              sort_keys=True).encode())
            add(tf, key + ".txt", caption(name, i))
            i += 1
    print("set big samples=%d file_mb=%.1f" % (i, os.path.getsize(path) / 1e6))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--photos", default="/usr/share/backgrounds/mate/nature")
    ap.add_argument("--n-photos", type=int, default=240)
    ap.add_argument("--n-small", type=int, default=6000)
    ap.add_argument("--big-mb", type=int, default=800)
    a = ap.parse_args()
    photos = load_photos(a.photos)
    if not photos:
        sys.exit("bench_data.py: no JPEG photos in %s (run scripts/deps.sh --bench)" % a.photos)
    make_photos(os.path.join(a.outdir, "photos.tar"), photos, a.n_photos)
    make_small(os.path.join(a.outdir, "small.tar"), photos, a.n_small)
    if a.big_mb > 0:
        make_big(os.path.join(a.outdir, "big.tar"), photos, a.big_mb)


if __name__ == "__main__":
    main()
