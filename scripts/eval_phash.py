#!/usr/bin/python3
"""eval_phash.py: precision and recall of near-duplicate image detection on
the labelled set of tests/e2e/dedup_set.py, to choose dedup's defaults.

Every image is decoded and signed by mvl's own code (scripts/phash_sig.c,
built here from the sources; decoded as `mvl dedup` does, at a reduced
scale with a 32x32 size hint).  For each labelled pair: the Hamming
distance of the pHashes and of the dHashes, and the thumbnail distance
(filters/phash.h: the mean over the 16 cells of the largest channel
difference; the largest cell difference is shown beside it).

The rule is: duplicate when hamming <= H and thumb_distance <= T.  Reported:
  - per kind of pair, the distributions of the three distances;
  - for a grid of (H, T): recall on the easy kinds (re-encoding, format
    change, resizing) and the share of distinct look-alikes kept apart;
    the (H, T) meeting the targets (100% easy recall, >= 99% of look-alikes
    apart, precision >= 99%), if any;
  - the recommended defaults, with margins on both sides of what the set
    shows: H = the largest distance of an easy duplicate + 2 bits, T = the
    largest grid value 4 above the easy duplicates' largest thumbnail
    distance and 4 below the closest colour look-alike within H; then
    precision and recall per kind at those defaults, and dHash at the same;
  - pHash distances of duplicates and the share of unrelated pictures that
    bands of the hash would make candidates (the index's cost);
  - signatures per second on one core.

Usage: scripts/eval_phash.py [--set DIR] [--seed N] [--full] [--pairs FILE] [--no-bench]
  --set DIR     write the set there (or reuse it when DIR/pairs.tsv exists)
  --full        decode at full size instead of dedup's reduced scale
  --pairs FILE  also write one line per pair with its distances (TSV)
  --no-bench    skip the speed measurement
"""
import sys
sys.dont_write_bytecode = True  # noqa: E402 (no __pycache__ in the tree)

import argparse
import collections
import os
import shutil
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
import dedup_set  # noqa: E402

SOURCES = ["scripts/phash_sig.c", "filters/phash.c", "pipeline/image.c", "pipeline/resize.c",
           "pipeline/util.c"]
LIBS = ["-lturbojpeg", "-lwebpdemux", "-lwebp", "-lspng", "-lz", "-lm", "-lpthread"]
H_GRID = list(range(0, 21))
T_GRID = [2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64, 255]


def build(tmp):
    exe = os.path.join(tmp, "phash_sig")
    cmd = ["cc", "-O2", "-std=c11", "-D_GNU_SOURCE", "-Ipipeline", "-Ifilters"] + SOURCES + \
        ["-o", exe] + LIBS
    subprocess.run(cmd, cwd=ROOT, check=True)
    return exe


def signatures(exe, files, full):
    p = subprocess.run([exe] + (["--full"] if full else []) + ["-"], input="\n".join(files),
                       capture_output=True, text=True, check=True)
    sig = {}
    for line in p.stdout.splitlines():
        f = line.split(" ", 5)
        if f[0] == "error":
            raise SystemExit("cannot sign %s" % f[-1])
        sig[f[5]] = (int(f[0], 16), int(f[1], 16), bytes.fromhex(f[2]))
    return sig


def cell_diffs(a, b):
    return [max(abs(a[3 * i + c] - b[3 * i + c]) for c in range(3)) for i in range(16)]


def hamming(a, b):
    return bin(a ^ b).count("1")


def easy(kind):
    return kind in dedup_set.EASY_KINDS


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q / 100.0 * len(v)))]


class Rows:
    """Per pair: label, kind, pHash and dHash distances, thumbnail mean and
    largest cell difference."""

    def __init__(self, pairs, sig):
        self.r = []
        for na, pa, nb, pb, label, kind in pairs:
            a, b = sig[pa], sig[pb]
            c = cell_diffs(a[2], b[2])
            self.r.append(dict(a=na, b=nb, label=label, kind=kind, ph=hamming(a[0], b[0]),
                               dh=hamming(a[1], b[1]), tm=sum(c) / 16.0, tx=max(c)))

    def judge(self, hk, H, T):
        """(easy recall, hard recall, share of distinct kept apart,
        precision) of the rule hk <= H and tm <= T."""
        e = h = ne = nh = tp = fp = nn = 0
        for x in self.r:
            dup = x[hk] <= H and x["tm"] <= T
            if x["label"]:
                tp += dup
                if easy(x["kind"]):
                    ne += 1
                    e += dup
                else:
                    nh += 1
                    h += dup
            else:
                nn += 1
                fp += dup
        return (e / max(ne, 1), h / max(nh, 1), 1 - fp / max(nn, 1), tp / max(tp + fp, 1))


def distributions(rows):
    print("\n== distances per kind (duplicates: the largest matter; distinct: the smallest)")
    print("%-5s %-14s %4s | %-16s | %-16s | %-18s | %-14s" % (
        "label", "kind", "n", "pHash med/p99/max", "dHash med/max", "thumb mean med/max",
        "max cell med/max"))
    by = collections.OrderedDict()
    for x in sorted(rows.r, key=lambda x: (-x["label"], not easy(x["kind"]), x["kind"])):
        by.setdefault((x["label"], x["kind"]), []).append(x)
    for (label, kind), v in by.items():
        ph, dh = [x["ph"] for x in v], [x["dh"] for x in v]
        tm, tx = [x["tm"] for x in v], [x["tx"] for x in v]
        if label:
            print("dup   %-14s %4d | %4d %4d %5d    | %5d %5d      | %6.1f %6.1f      | %5d %5d" % (
                kind + ("" if easy(kind) else "*"), len(v), pct(ph, 50), pct(ph, 99), max(ph),
                pct(dh, 50), max(dh), pct(tm, 50), max(tm), pct(tx, 50), max(tx)))
        else:
            print("dist  %-14s %4d | min %2d med %3d  | min %2d med %3d | min %5.1f med %5.1f | min %3d med %3d" % (
                kind, len(v), min(ph), pct(ph, 50), min(dh), pct(dh, 50), min(tm), pct(tm, 50),
                min(tx), pct(tx, 50)))
    print("(* hard kinds: recall as high as it goes, not required)")


def grid(rows, hk):
    """The (H, T) meeting the targets (100% easy recall, >= 99% of the
    look-alikes apart, precision >= 99%), and among those with 100% easy
    recall the one keeping most look-alikes apart, then recalling most hard
    pairs, then with the smaller H and T."""
    feas, best = [], None
    for H in H_GRID:
        for T in T_GRID:
            e, h, kept, prec = rows.judge(hk, H, T)
            if e < 1.0:
                continue
            if kept >= 0.99 and prec >= 0.99:
                feas.append((H, T))
            key = (kept, h, -H, -T)
            if best is None or key > best[0]:
                best = (key, H, T)
    return feas, (best[1], best[2]) if best else None


def with_margins(rows, hk):
    """The defaults, with room on both sides of what the set shows: H = the
    largest distance of an easy duplicate plus 2 bits; T = the largest
    value of the grid at least 4 above the largest thumbnail distance of
    an easy duplicate and at least 4 below the smallest of a look-alike
    within H that the thumbnail can tell apart (a colour variant)."""
    ez = [x for x in rows.r if x["label"] and easy(x["kind"])]
    hmax = max(x[hk] for x in ez)
    H = hmax + 2
    tmax = max(x["tm"] for x in ez)
    near = [x for x in rows.r if not x["label"] and x[hk] <= H and x["tm"] > tmax]
    closest = min(near, key=lambda x: x["tm"]) if near else None
    tmin = closest["tm"] if closest else 64.0
    ok = [t for t in T_GRID if tmax + 4 <= t <= tmin - 4]
    T = max(ok) if ok else int((tmax + tmin) / 2)
    print("defaults with margins: easy duplicates reach hamming %d and thumbnail %.1f, so H = %d + 2 = %d;"
          " the closest look-alike within H that the thumbnail tells apart is at %.1f%s; T = %d" % (
              hmax, tmax, hmax, H, tmin,
              " (%s / %s, %s)" % (closest["a"], closest["b"], closest["kind"]) if closest else "", T))
    return H, T


def print_grid(rows, hk):
    print("\n== %s <= H and thumb_distance <= T: easy recall / look-alikes kept apart (%%)" % (
        "pHash" if hk == "ph" else "dHash"))
    ts = [t for t in T_GRID if t <= 64]
    print("H\\T " + "".join("%11d" % t for t in ts))
    for H in H_GRID[::2] + ([H_GRID[-1]] if len(H_GRID) % 2 == 0 else []):
        cells = []
        for T in ts:
            e, h, kept, prec = rows.judge(hk, H, T)
            mark = "*" if e >= 1 and kept >= 0.99 and prec >= 0.99 else " "
            cells.append("%5.1f/%4.1f%s" % (100 * e, 100 * kept, mark))
        print("%3d %s" % (H, "".join(cells)))
    print("(* meets: easy recall 100%, look-alikes apart >= 99%, precision >= 99%)")


def per_kind(rows, hk, H, T):
    print("\n== per kind at %s <= %d, thumb_distance <= %d" % ("pHash" if hk == "ph" else "dHash", H, T))
    by = collections.OrderedDict()
    for x in sorted(rows.r, key=lambda x: (-x["label"], not easy(x["kind"]), x["kind"])):
        by.setdefault((x["label"], x["kind"]), []).append(x)
    tp = fp = npos = 0
    wrong = []
    for (label, kind), v in by.items():
        k = sum(1 for x in v if x[hk] <= H and x["tm"] <= T)
        if label:
            tp += k
            npos += len(v)
            print("  dup       %-14s recall     %3d/%3d = %6.1f%%" % (kind, k, len(v), 100.0 * k / len(v)))
        else:
            fp += k
            wrong += [x for x in v if x[hk] <= H and x["tm"] <= T]
            print("  distinct  %-14s kept apart %3d/%3d = %6.1f%%" % (
                kind, len(v) - k, len(v), 100.0 * (len(v) - k) / len(v)))
    e, h, kept, prec = rows.judge(hk, H, T)
    print("  overall: precision %d/%d = %.2f%%, recall %d/%d = %.1f%% (easy %.1f%%, hard %.1f%%), "
          "look-alikes apart %.1f%%" % (tp, tp + fp, 100.0 * tp / max(tp + fp, 1), tp, npos,
                                        100.0 * tp / max(npos, 1), 100 * e, 100 * h, 100 * kept))
    miss = [x for x in rows.r if not x["label"] and x["kind"] in dedup_set.KNOWN_MISSES]
    if miss:
        fpk = sum(1 for x in wrong if x["kind"] not in dedup_set.KNOWN_MISSES)
        nn = sum(1 for x in rows.r if not x["label"]) - len(miss)
        print("  without the known misses (%s): precision %d/%d = %.2f%%, look-alikes apart %d/%d = %.1f%%" % (
            ", ".join(dedup_set.KNOWN_MISSES), tp, tp + fpk, 100.0 * tp / max(tp + fpk, 1), nn - fpk, nn,
            100.0 * (nn - fpk) / max(nn, 1)))
    for x in wrong:
        print("  merged look-alikes: %s / %s (%s: hamming %d, thumb %.1f)" % (
            x["a"], x["b"], x["kind"], x[hk], x["tm"]))


def band_stats(hs, B, radius=0):
    """Share of pairs of hashes that share a band (or, with radius 1, have
    a band within Hamming distance 1)."""
    w = 64 // B
    mask = (1 << w) - 1
    n, hit, tot = len(hs), 0, 0
    parts = [[(h >> (k * w)) & mask for k in range(B)] for h in hs]
    for i in range(n):
        for j in range(i + 1, n):
            tot += 1
            hit += any(bin(a ^ b).count("1") <= radius for a, b in zip(parts[i], parts[j]))
    return hit / max(tot, 1)


def random_photos(exe, tmp, n=300, seed=1):
    """pHashes of n unrelated photo-like pictures (96 x 72)."""
    import numpy as np
    rng = np.random.RandomState(seed)
    d = os.path.join(tmp, "photos")
    os.makedirs(d, exist_ok=True)
    files = []
    for i in range(n):
        p = os.path.join(d, "p%03d.png" % i)
        dedup_set.photo(rng, 96, 72).save(p, compress_level=1)
        files.append(p)
    return sorted(set(v[0] for v in signatures(exe, files, False).values()))


def bands(rows, sig, H, photos):
    print("\n== pHash distance of duplicate pairs, for the index's bands")
    for name, sel in (("easy kinds", lambda x: easy(x["kind"])), ("all duplicate kinds", lambda x: True)):
        d = [x["ph"] for x in rows.r if x["label"] and sel(x)]
        print("  %-20s n=%d  max %d, p99 %d, p95 %d, median %d" % (
            name, len(d), max(d), pct(d, 99), pct(d, 95), pct(d, 50)))
    hist = collections.Counter(x["ph"] for x in rows.r if x["label"])
    print("  histogram (distance:pairs) " + " ".join("%d:%d" % (k, hist[k]) for k in sorted(hist)))
    d = [x["ph"] for x in rows.r if x["label"]]
    print("  duplicates within H = %d: %d of %d" % (H, sum(1 for v in d if v <= H), len(d)))
    print("  With B equal bands, pairs within B - 1 bits share a band exactly (pigeonhole): H = %d needs"
          " B >= %d.  Probing each band's neighbours within 1 bit covers 2B - 1." % (H, H + 1))
    seth = sorted(set(v[0] for v in sig.values()))
    print("  bands          covers H  unrelated pairs made candidates: set's %d hashes (mostly flat"
          " graphics) / %d random photos / uniform" % (len(seth), len(photos)))
    for B, r in ((4, 0), (8, 0), (16, 0), (4, 1), (8, 1)):
        w = 64 // B
        if r == 0:
            uni = 1 - (1 - 2.0 ** -w) ** B
        else:
            uni = 1 - (1 - (w + 1) * 2.0 ** -w) ** B
        print("  %2d x %2d bits%s %5d    %6.2f%% / %6.2f%% / %6.3f%%" % (
            B, w, " probe 1" if r else "        ", B * (r + 1) - 1, 100 * band_stats(seth, B, r),
            100 * band_stats(photos, B, r), 100 * uni))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--pairs")
    ap.add_argument("--no-bench", action="store_true")
    a = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="eval_phash.")
    try:
        exe = build(tmp)
        setdir = a.set or os.path.join(tmp, "set")
        t0 = time.time()
        if a.set and os.path.isfile(os.path.join(setdir, "pairs.tsv")):
            with open(os.path.join(setdir, "pairs.tsv")) as f:
                next(f)
                pairs = [tuple(l.rstrip("\n").split("\t")) for l in f]
            pairs = [(p[0], p[1], p[2], p[3], int(p[4]), p[5]) for p in pairs]
        else:
            pairs = dedup_set.make_set(setdir, a.seed)
            if a.set:
                dedup_set.main([setdir, "--seed", str(a.seed)])
        t1 = time.time()
        files = sorted(set(p[1] for p in pairs) | set(p[3] for p in pairs))
        sig = signatures(exe, files, a.full)
        t2 = time.time()
        rows = Rows(pairs, sig)
        npos = sum(1 for p in pairs if p[4])
        print("labelled set: %d pairs (%d duplicates, %d distinct look-alikes), %d files; "
              "made in %.1f s, signed in %.1f s; decode: %s" % (
                  len(pairs), npos, len(pairs) - npos, len(files), t1 - t0, t2 - t1,
                  "full size" if a.full else "reduced scale, 32x32 hint (as mvl dedup)"))
        distributions(rows)
        rec = {}
        for hk in ("ph", "dh"):
            name = "pHash" if hk == "ph" else "dHash"
            print_grid(rows, hk)
            feas, best = grid(rows, hk)
            if feas:
                print("(H, T) meeting the targets: H %s" % ", ".join(
                    "%d: T %d..%d" % (H, min(t for h, t in feas if h == H), max(t for h, t in feas if h == H))
                    for H in sorted(set(h for h, t in feas))))
            else:
                print("no (H, T) meets all the targets")
            if best:
                e, h, kept, prec = rows.judge(hk, *best)
                print("most hard recall among the best (H, T): H = %d, T = %d: easy %.1f%%, hard %.1f%%, "
                      "look-alikes apart %.1f%%, precision %.2f%%" % (best + (100 * e, 100 * h, 100 * kept, 100 * prec)))
            if hk == "ph":
                H, T = with_margins(rows, hk)
                rec[hk] = (H, T)
                print("\n%s: nearby settings (easy recall / hard recall / look-alikes apart / precision, %%)" % name)
                for h2 in sorted(set((H - 2, H, H + 3))):
                    for t2 in sorted(set((T - 4, T, T + 4, T + 8))):
                        e, hr, kept, prec = rows.judge(hk, h2, t2)
                        print("  H %2d T %2d: %5.1f / %5.1f / %5.1f / %6.2f" % (
                            h2, t2, 100 * e, 100 * hr, 100 * kept, 100 * prec))
            else:  # dHash at pHash's defaults, for comparison
                H, T = rec["ph"]
            per_kind(rows, hk, H, T)
        bands(rows, sig, rec["ph"][0], random_photos(exe, tmp))
        if a.pairs:
            with open(a.pairs, "w") as f:
                f.write("name_a\tname_b\tlabel\tkind\tphash\tdhash\tthumb_mean\tthumb_max_cell\n")
                for x in rows.r:
                    f.write("%s\t%s\t%d\t%s\t%d\t%d\t%.2f\t%d\n" % (
                        x["a"], x["b"], x["label"], x["kind"], x["ph"], x["dh"], x["tm"], x["tx"]))
        if not a.no_bench:
            print("\n== speed (one core)")
            sample = [p[3] for p in pairs if p[5] in ("jpeg_q75", "webp_lossy", "png_rgb")
                      and p[0] in ("photo9", "photo4", "emoji1_yellow")]
            p = subprocess.run([exe, "--bench"] + sample, capture_output=True, text=True, check=True)
            sys.stdout.write(p.stdout)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
