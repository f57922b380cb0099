#!/usr/bin/python3
"""minhash_ref.py IN.tar [--limit N] [--perm 128] [--ngram 5] [--reps 3]:
MinHash of captions in numpy, the way datasketch computes it, for the
caption rate comparison of scripts/bench_minhash.sh (issue 4, Benchmark).

Per caption: lower-case, split on whitespace (str.split()), word n-grams
joined by single spaces (fewer than n words: one shingle of all of them; no
words: no shingles), each shingle's UTF-8 hashed to 32 bits with SHA-1 (the
first 4 bytes of the digest, little-endian, as datasketch's sha1_hash32),
then every permutation at once over numpy arrays a, b (uint64, a in [1, p),
b in [0, p), p = 2^61 - 1, from numpy.random.RandomState(seed)):
    phv = (hv * a + b) % p & (2^32 - 1);  sig = minimum(sig, phv)
"update" mode does one shingle at a time (datasketch's MinHash.update);
"batch" mode all shingles of a caption in one outer product
(MinHash.update_batch).  As in datasketch, hv * a wraps at 2^64 in uint64
arithmetic and the minimum is over the masked 32-bit values; mvl instead
reduces the full 61-bit product mod p and takes the minimum before keeping
the low 32 bits (filters/minhash.c).  Timed: the sketching loop only, over
captions already in memory (bytes decoded as UTF-8 with replacement), on
one core, best of --reps.

Prints "name value" lines: captions, rate_update, rate_batch (captions/s),
shingles (mean per caption).
"""
import argparse
import hashlib
import struct
import sys
import tarfile
import time

import numpy as np

MERSENNE = np.uint64((1 << 61) - 1)
MAX_HASH = np.uint64((1 << 32) - 1)


def read_captions(path, limit):
    out = []
    with tarfile.open(path) as tf:
        for m in tf:
            if not m.isfile() or not m.name.endswith(".txt"):
                continue
            out.append(tf.extractfile(m).read().decode("utf-8", "replace"))
            if limit and len(out) >= limit:
                break
    return out


def permutations(num_perm, seed):
    gen = np.random.RandomState(seed)
    ab = np.array([(gen.randint(1, MERSENNE, dtype=np.uint64),
                    gen.randint(0, MERSENNE, dtype=np.uint64))
                   for _ in range(num_perm)], dtype=np.uint64).T
    return ab[0].copy(), ab[1].copy()


def sha1_hash32(data):
    return struct.unpack("<I", hashlib.sha1(data).digest()[:4])[0]


def shingles(text, n):
    w = text.lower().split()
    if not w:
        return []
    if len(w) < n:
        return [" ".join(w).encode("utf-8")]
    return [" ".join(w[i:i + n]).encode("utf-8") for i in range(len(w) - n + 1)]


def sketch_update(text, n, a, b):
    sig = np.full(len(a), MAX_HASH, dtype=np.uint64)
    for s in shingles(text, n):
        hv = np.uint64(sha1_hash32(s))
        phv = np.bitwise_and((a * hv + b) % MERSENNE, MAX_HASH)
        sig = np.minimum(phv, sig)
    return sig


def sketch_batch(text, n, a, b):
    sig = np.full(len(a), MAX_HASH, dtype=np.uint64)
    sh = shingles(text, n)
    if not sh:
        return sig
    hv = np.array([sha1_hash32(s) for s in sh], dtype=np.uint64)
    phv = np.bitwise_and((np.outer(hv, a) + b) % MERSENNE, MAX_HASH)
    return np.vstack([phv, sig]).min(axis=0)


def best_rate(fn, caps, n, a, b, reps):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        for c in caps:
            fn(c, n, a, b)
        best = min(best, time.perf_counter() - t0)
    return len(caps) / best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tar")
    ap.add_argument("--limit", type=int, default=50000)
    ap.add_argument("--perm", type=int, default=128)
    ap.add_argument("--ngram", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    caps = read_captions(args.tar, args.limit)
    a, b = permutations(args.perm, args.seed)
    # the two modes agree (same shingles, same arithmetic)
    for c in caps[:200]:
        if not np.array_equal(sketch_update(c, args.ngram, a, b),
                              sketch_batch(c, args.ngram, a, b)):
            sys.exit("minhash_ref.py: update and batch sketches differ on %r" % c)
    nsh = sum(len(shingles(c, args.ngram)) for c in caps)
    print("captions", len(caps))
    print("shingles %.2f" % (nsh / max(len(caps), 1)))
    print("rate_update %.0f" % best_rate(sketch_update, caps, args.ngram, a, b, args.reps))
    print("rate_batch %.0f" % best_rate(sketch_batch, caps, args.ngram, a, b, args.reps))


if __name__ == "__main__":
    main()
