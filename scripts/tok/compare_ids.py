#!/usr/bin/python3
"""compare_ids.py: compares token-id files line by line (ref_encode.js output
against `mvl tok encode --lines` output, or any two such files) and explains
the first mismatches.

Usage: compare_ids.py REF GOT [--input CORPUS] [--jsonl] [--ranks F.tiktoken]
                      [--json F.json] [--show N] [--name NAME]

  REF, GOT   one line of space-separated ids per text (runs of spaces and
             trailing spaces are not significant; a missing final newline is
             not either).
  --input    the corpus both were made from, to print the text of a
             mismatching line (its lines, split on "\\n" only; with --jsonl
             the "text" field of each JSON line).
  --ranks    a .tiktoken file (and --json the JSON of its special tokens), to
             print the ids around the first difference as token bytes.
  --show     how many mismatches to explain (default 5).
  --name     also print a test-harness line: "ok NAME" or "not ok NAME ...".
Prints "N texts, M mismatching"; exit status 0 when identical, 1 otherwise.
"""

import argparse
import base64
import json
import sys


def read_ids(path):
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [ln.split() for ln in lines]


def read_texts(path, jsonl):
    with open(path, "rb") as f:
        data = f.read().decode("utf-8")
    lines = data.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if jsonl:
        return [json.loads(ln)["text"] for ln in lines]
    return lines


def load_vocab(ranks, meta):
    vocab = {}
    with open(ranks, "rb") as f:
        for ln in f:
            if ln.strip():
                b64, rank = ln.split()
                vocab[int(rank)] = base64.b64decode(b64)
    if meta:
        with open(meta, encoding="utf-8") as f:
            for s, i in json.load(f).get("special_tokens", {}).items():
                vocab[int(i)] = s.encode()
    return vocab


def show_tokens(ids, vocab):
    out = []
    for t in ids:
        try:
            i = int(t)
        except ValueError:
            out.append("?%r" % t)
            continue
        if vocab is not None and i in vocab:
            out.append("%d:%s" % (i, repr(vocab[i])[1:]))  # 123:'text' (bytes repr without b)
        else:
            out.append(str(i))
    return " ".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ref")
    ap.add_argument("got")
    ap.add_argument("--input")
    ap.add_argument("--jsonl", action="store_true")
    ap.add_argument("--ranks")
    ap.add_argument("--json", dest="meta")
    ap.add_argument("--show", type=int, default=5)
    ap.add_argument("--name")
    a = ap.parse_args()

    ref = read_ids(a.ref)
    got = read_ids(a.got)
    texts = read_texts(a.input, a.jsonl) if a.input else None
    vocab = load_vocab(a.ranks, a.meta) if a.ranks else None

    n = max(len(ref), len(got))
    bad = [i for i in range(n) if i >= len(ref) or i >= len(got) or ref[i] != got[i]]
    problems = []
    if len(ref) != len(got):
        problems.append("%d lines in %s, %d in %s" % (len(ref), a.ref, len(got), a.got))
    if texts is not None and len(texts) != len(ref):
        problems.append("%d texts in %s, %d id lines in %s" % (len(texts), a.input, len(ref), a.ref))
    print("%d texts, %d mismatching" % (n, len(bad)))
    for p in problems:
        print("  " + p)
    for i in bad[:a.show]:
        r = ref[i] if i < len(ref) else []
        g = got[i] if i < len(got) else []
        k = 0
        while k < len(r) and k < len(g) and r[k] == g[k]:
            k += 1
        print("line %d: %d ids expected, %d got; first difference at id %d" % (i + 1, len(r), len(g), k))
        if texts is not None and i < len(texts):
            t = texts[i]
            print("  text: %s%s" % (repr(t[:300]), " ... (%d chars)" % len(t) if len(t) > 300 else ""))
        lo = max(0, k - 3)
        print("  expected: ... %s" % show_tokens(r[lo:k + 6], vocab))
        print("  got:      ... %s" % show_tokens(g[lo:k + 6], vocab))
    ok = not bad and not problems
    if a.name:
        if ok:
            print("ok %s (%d texts)" % (a.name, n))
        else:
            print("not ok %s: %d of %d texts differ" % (a.name, len(bad), n))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
