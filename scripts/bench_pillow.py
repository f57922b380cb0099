#!/usr/bin/python3
"""bench_pillow.py: the Pillow peers of `mvl ingest` (called by bench_ingest.sh).

    bench_pillow.py SHARD.tar [--max-side 224] [--quality 90] [--reps 3]
                    [--modes plain,draft] [--procs 1,2]

Reads every KEY.jpg of the shard into memory first; then times only the
per-image work, best of --reps runs:

  plain     Image.open(BytesIO(b)); im.convert('RGB'); resize to fit
            max-side x max-side keeping aspect (mvl's rule: scale =
            max_side / max(w, h), sides rounded, at least 1, never upscaled)
            with BICUBIC; save JPEG at --quality into a BytesIO
  draft     the same with im.draft('RGB', (tw, th)) first: libjpeg's DCT
            scaling to the smallest 1/2, 1/4, 1/8 scale still >= (tw, th)
  validate  what mvl does when an image needs no change (a JPEG already within
            max-side): decode it in full to prove it whole, keep the bytes;
            images that do need a change get the plain treatment
  decode    a ceiling, not a peer: only the draft() decode (libjpeg-turbo at
            the DCT scale draft picks), no convert, resize or encode

on one process and on N processes (multiprocessing Pool(N) forked after the
bytes are loaded; the timed part is the map over chunks of images).
Prints one line per figure:
    pillow MODE PROCS IMAGES_PER_S seconds=S images=N out_kb=K
"""
import argparse
import io
import multiprocessing as mp
import sys
import tarfile
import time

from PIL import Image

BICUBIC = getattr(Image, "Resampling", Image).BICUBIC
IMAGES = []
CFG = {}


def fit(w, h, m):
    if max(w, h) <= m:
        return w, h
    s = m / max(w, h)
    return max(1, int(w * s + 0.5)), max(1, int(h * s + 0.5))


def one(b, mode, max_side, quality):
    im = Image.open(io.BytesIO(b))
    tw, th = fit(im.size[0], im.size[1], max_side)
    if mode == "validate" and (tw, th) == im.size:
        im.load()  # full decode; the JPEG bytes are kept as they are
        return len(b)
    if mode in ("draft", "decode") and (tw, th) != im.size:
        im.draft("RGB", (tw, th))
    if mode == "decode":
        im.load()
        return 0
    im = im.convert("RGB")
    if im.size != (tw, th):
        im = im.resize((tw, th), BICUBIC)
    out = io.BytesIO()
    im.save(out, "JPEG", quality=quality)
    return out.tell()


def work(rng):
    mode, ms, q = CFG["mode"], CFG["max_side"], CFG["quality"]
    n = 0
    for i in range(rng[0], rng[1]):
        n += one(IMAGES[i], mode, ms, q)
    return n


def noop(_):
    return 0


def load(path):
    out = []
    with tarfile.open(path) as tf:
        for ti in tf:
            if ti.isfile() and ti.name.lower().endswith((".jpg", ".jpeg")):
                out.append(tf.extractfile(ti).read())
    return out


def run(mode, procs, reps, chunk):
    CFG["mode"] = mode
    n = len(IMAGES)
    best = None
    outb = 0
    if procs == 1:
        for _ in range(reps):
            t0 = time.perf_counter()
            outb = work((0, n))
            dt = time.perf_counter() - t0
            best = dt if best is None or dt < best else best
    else:
        ranges = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
        ctx = mp.get_context("fork")
        with ctx.Pool(procs) as pool:
            pool.map(noop, range(procs * 4))  # workers started and warm
            for _ in range(reps):
                t0 = time.perf_counter()
                outb = sum(pool.imap_unordered(work, ranges))
                dt = time.perf_counter() - t0
                best = dt if best is None or dt < best else best
    print("pillow %s %d %.1f seconds=%.3f images=%d out_kb=%.2f"
          % (mode, procs, n / best, best, n, outb / n / 1e3), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shard")
    ap.add_argument("--max-side", type=int, default=224)
    ap.add_argument("--quality", type=int, default=90)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--modes", default="plain,draft")
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--chunk", type=int, default=0,
                    help="images per task for the pool (0: n / (8 * procs))")
    a = ap.parse_args()
    IMAGES.extend(load(a.shard))
    if not IMAGES:
        sys.exit("bench_pillow.py: no .jpg members in %s" % a.shard)
    CFG.update(max_side=a.max_side, quality=a.quality)
    for procs in [int(p) for p in a.procs.split(",")]:
        for mode in a.modes.split(","):
            chunk = a.chunk or max(1, len(IMAGES) // (8 * procs))
            run(mode, procs, a.reps, chunk)


if __name__ == "__main__":
    main()
