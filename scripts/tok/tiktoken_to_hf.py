#!/usr/bin/python3
"""tiktoken_to_hf.py RANKS.tiktoken OUT.json [--merges-format string|pair]
[--pattern P] [--special TOKEN=ID ...]: writes the same tokenizer as a Hugging
Face tokenizer.json (model BPE, GPT-2 byte-level alphabet).  Each merged
token's merge is recovered by running BPE on its bytes with only the ranks
below its own: the two parts left are what was merged."""
import base64
import json
import sys


def bytes_to_unicode():
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def split_of(tok, ranks, limit):
    parts = [bytes([c]) for c in tok]
    while len(parts) > 2:
        best, bi = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < limit and (best is None or r < best):
                best, bi = r, i
        if bi < 0:
            break
        parts[bi:bi + 2] = [parts[bi] + parts[bi + 1]]
    return parts


def main():
    args = sys.argv[1:]
    src, out = args[0], args[1]
    fmt = args[args.index("--merges-format") + 1] if "--merges-format" in args else "string"
    pattern = args[args.index("--pattern") + 1] if "--pattern" in args else None
    specials = [a.split("=") for a in args if "=" in a and a.startswith("<")]
    ranks = {}
    for line in open(src, "rb"):
        if line.strip():
            t, r = line.split()
            ranks[base64.b64decode(t)] = int(r)
    b2u = bytes_to_unicode()
    enc = lambda b: "".join(b2u[c] for c in b)
    vocab = {enc(t): r for t, r in ranks.items()}
    merges = []
    for t, r in sorted(ranks.items(), key=lambda kv: kv[1]):
        if len(t) < 2:
            continue
        p = split_of(t, ranks, r)
        if len(p) != 2:
            sys.exit("token %r (rank %d) is not one merge of lower-ranked tokens" % (t, r))
        merges.append(enc(p[0]) + " " + enc(p[1]) if fmt == "string" else [enc(p[0]), enc(p[1])])
    if pattern:
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    else:
        pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    doc = {"version": "1.0", "truncation": None, "padding": None,
           "added_tokens": [{"id": int(i), "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                             "normalized": False, "special": True} for s, i in specials],
           "normalizer": None, "pre_tokenizer": pre, "post_processor": None,
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                     "vocab": vocab, "merges": merges}}
    json.dump(doc, open(out, "w", encoding="utf-8"), ensure_ascii=False)


if __name__ == "__main__":
    main()
