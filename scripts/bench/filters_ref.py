#!/usr/bin/python3
"""filters_ref.py IN.tar [--limit N] [--reps R] [--procs 1,2] [--plain] [--compare MVL_OUT.tar]
                      [--whole OUT.tar]

A Python implementation of `mvl filter 'clean,capfilter'` with all default
options (filters/README.md), written the way datatrove-style filters are:
stdlib `re` and `unicodedata`, one function per rule, a pipeline of steps run
over documents.  It is the baseline of scripts/bench_filters.sh.  Each
cleaning step first checks, with a substring test, whether it can change the
text at all (the way a careful Python author would; mvl does the same);
--plain drops those tests (datatrove's formatters run their regexes on every
document).

Timing: every caption (raw KEY.txt bytes) is loaded into a list first; only
the filtering loop is timed (decode + clean + capfilter, per-reason counts
kept as a filter's stats would).  1 process: a plain loop.  P processes: a
fork-started multiprocessing.Pool(P), started before the clock (each worker
first touches every inherited caption, so copy-on-write is paid untimed),
mapped over index ranges of the inherited list (no pickling of captions);
only the counts come back.  Best of R runs.

--compare MVL_OUT.tar: an untimed pass keeps the cleaned captions and
compares them with mvl's output for the same keys (those among the first N):
kept-set agreement and identical cleaned text, split by ASCII and non-ASCII
input.

--whole OUT.tar: instead, time the whole command as mvl runs it: tarfile
reads IN.tar, the pipeline filters, tarfile writes the kept captions.

Output: human-readable lines on stderr, "name value" lines on stdout:
  captions N / rate_P CAPTIONS_PER_S / kept K / reason_R COUNT / cmp_* /
  whole_rate_1 CAPTIONS_PER_S

Where it is not exact: words of a non-ASCII caption.  mvl uses ICU word
break iteration (dictionary segmentation for Chinese/Japanese/Thai); here a
word is a run of letters/digits/combining marks (joined by ' ’ . : ·), each
Han ideograph or hiragana a word of its own, a katakana run one word.  On the
3-word minimum this differs only for short CJK text.  Entities: mvl decodes
HTML's common named set plus numeric references; html.unescape knows every
HTML5 name and also decodes some without ';' (rare in captions).
"""
import argparse
import html
import multiprocessing as mp
import re
import sys
import tarfile
import time
import unicodedata

# ------------------------------------------------------------------ clean
# block-level tags separate words ("a<br>b" -> "a b"), the others do not
# ("<b>this</b>?" -> "this?")
BLOCK_TAG_RE = re.compile(
    r"</?(?:br|p|div|li|ul|ol|tr|td|th|table|thead|tbody|h[1-6]|hr|section|article|"
    r"header|footer|nav|aside|blockquote|pre|dd|dt|dl|figure|figcaption|caption|title|"
    r"option|form|main)\b[^<>]{0,2000}>", re.IGNORECASE)
TAG_RE = re.compile(r"<(?!image>)[A-Za-z/!][^<>]{0,2000}>")
URL_RE = re.compile(r"\b(?:(?:https?|ftp)://|www\.)[^\s<>\"']+", re.IGNORECASE)
EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Cc except the whitespace ones (\t \n \v \f \r, U+0085: collapsed below),
# and the invisible formatting characters of filters/README.md (mvl's
# clean.c also drops the invisible math operators U+2061-U+2064)
INVISIBLE_RE = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f"
                          "\u00ad\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\ufeff]")


def check_utf8(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def strip_html_tags(text):
    if "<" not in text:
        return text
    return TAG_RE.sub("", BLOCK_TAG_RE.sub(" ", text))


def decode_entities(text):
    return html.unescape(text) if "&" in text else text


def remove_urls(text):
    if "://" in text or "www." in text.lower():
        return URL_RE.sub("", text)
    return text


def remove_emails(text):
    return EMAIL_RE.sub("", text) if "@" in text else text


def normalize_nfc(text):
    return unicodedata.normalize("NFC", text)


def remove_invisible(text):
    return INVISIBLE_RE.sub("", text)


def collapse_whitespace(text):
    # str.split() splits on Unicode White_Space (and U+001C-U+001F, which
    # remove_invisible already dropped)
    return " ".join(text.split())


CLEAN_STEPS = (strip_html_tags, decode_entities, remove_urls, remove_emails,
               normalize_nfc, remove_invisible, collapse_whitespace)


# --plain: the same rules with no cheap "can this step change anything?"
# tests in front of the regexes, as datatrove's formatters are written
def strip_html_tags_plain(text):
    return TAG_RE.sub("", BLOCK_TAG_RE.sub(" ", text))


def remove_urls_plain(text):
    return URL_RE.sub("", text)


def remove_emails_plain(text):
    return EMAIL_RE.sub("", text)


CLEAN_STEPS_PLAIN = (strip_html_tags_plain, html.unescape, remove_urls_plain,
                     remove_emails_plain, normalize_nfc, remove_invisible,
                     collapse_whitespace)

# -------------------------------------------------------------- capfilter
MIN_WORDS, MIN_CHARS, MAX_CHARS = 3, 6, 2000


def _ranges(pred, hi=0x10000):
    out, start = [], None
    for cp in range(hi + 1):
        if cp < hi and pred(chr(cp)):
            if start is None:
                start = cp
        elif start is not None:
            a, b = start, cp - 1
            out.append(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}")
            start = None
    return "".join(out)


MARKS = _ranges(lambda c: unicodedata.category(c) in ("Mn", "Mc", "Me"))
HAN_HIRA = "\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
KATA = "\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f"
_T = f"(?:[^\\W{HAN_HIRA}{KATA}]|[{MARKS}])"
WORD_RE = re.compile(f"[{HAN_HIRA}]|[{KATA}]+|{_T}+(?:['\u2019.:\u00b7]{_T}+)*")


def count_words(text):
    if text.isascii():
        return len(text.split())
    return len(WORD_RE.findall(text))


def filter_empty(text):
    return "empty" if not text.strip() else None


def filter_chars(text):
    n = len(text)
    if n < MIN_CHARS:
        return "too_few_chars"
    if n > MAX_CHARS:
        return "too_many_chars"
    return None


def filter_words(text):
    return "too_few_words" if count_words(text) < MIN_WORDS else None


CAP_STEPS = (filter_empty, filter_chars, filter_words)


# --------------------------------------------------------------- pipeline
class Document:
    __slots__ = ("id", "text", "metadata")

    def __init__(self, id, text):
        self.id = id
        self.text = text
        self.metadata = {}


clean_steps = CLEAN_STEPS


def run_pipeline(doc, stats):
    """Returns True to keep doc (doc.text cleaned), else counts the reason."""
    text = check_utf8(doc.text)
    if text is None:
        stats["clean.invalid_utf8"] = stats.get("clean.invalid_utf8", 0) + 1
        return False
    for step in clean_steps:
        text = step(text)
    if not text:
        stats["clean.empty"] = stats.get("clean.empty", 0) + 1
        return False
    doc.text = text
    for rule in CAP_STEPS:
        reason = rule(text)
        if reason is not None:
            key = "capfilter." + reason
            stats[key] = stats.get(key, 0) + 1
            return False
    return True


def process(keys, raws, a, b, kept_out=None):
    stats = {}
    kept = 0
    for i in range(a, b):
        doc = Document(keys[i], raws[i])
        if run_pipeline(doc, stats):
            kept += 1
            if kept_out is not None:
                kept_out[doc.id] = doc.text
    return kept, stats


# ------------------------------------------------------------------ input
def load(path, limit=None):
    keys, raws = [], []
    with tarfile.open(path) as tf:
        for m in tf:
            if not m.isfile() or not m.name.endswith(".txt"):
                continue
            keys.append(m.name[:-4])
            raws.append(tf.extractfile(m).read())
            if limit and len(keys) >= limit:
                break
    return keys, raws


KEYS, RAWS = [], []  # inherited by the forked workers


def _touch():
    # Reading an object writes its reference count: the first pass over the
    # inherited captions copies their pages (copy-on-write).  Done here,
    # before the clock, so the timed runs do not pay it.
    n = 0
    for k, r in zip(KEYS, RAWS):
        n += len(r)
    return n


def _work(rng):
    return process(KEYS, RAWS, rng[0], rng[1])


def merge(results):
    kept, stats = 0, {}
    for k, s in results:
        kept += k
        for r, c in s.items():
            stats[r] = stats.get(r, 0) + c
    return kept, stats


def bench(procs, reps):
    n = len(RAWS)
    best, res = None, None
    if procs == 1:
        for _ in range(reps):
            t0 = time.perf_counter()
            r = process(KEYS, RAWS, 0, n)
            dt = time.perf_counter() - t0
            if best is None or dt < best:
                best, res = dt, r
        return best, res
    ctx = mp.get_context("fork")
    chunk = max(1000, n // (procs * 16))
    ranges = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
    with ctx.Pool(procs, initializer=_touch) as pool:
        pool.map(_work, [(0, 0)] * procs)  # wait for the workers to start
        for _ in range(reps):
            t0 = time.perf_counter()
            r = merge(pool.map(_work, ranges, chunksize=1))
            dt = time.perf_counter() - t0
            if best is None or dt < best:
                best, res = dt, r
    return best, res


def whole_command(src, dst, limit):
    """Like the mvl command: tar in, filter, tar out (tarfile, 1 process)."""
    import io
    stats = {}
    n = 0
    t0 = time.perf_counter()
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT) as tout:
        for m in tin:
            if not m.isfile() or not m.name.endswith(".txt"):
                continue
            if limit and n >= limit:
                break
            n += 1
            doc = Document(m.name[:-4], tin.extractfile(m).read())
            if run_pipeline(doc, stats):
                data = doc.text.encode()
                ti = tarfile.TarInfo(m.name)
                ti.size = len(data)
                tout.addfile(ti, io.BytesIO(data))
    return time.perf_counter() - t0, n


def compare(mvl_out, kept_py):
    """mvl's output for our keys vs ours."""
    limit_keys = set(KEYS)
    last = max(KEYS)  # keys are %09d and mvl keeps the input order
    mvl = {}
    with tarfile.open(mvl_out) as tf:
        for m in tf:
            if m.isfile() and m.name.endswith(".txt"):
                k = m.name[:-4]
                if k > last:
                    break
                if k in limit_keys:
                    mvl[k] = tf.extractfile(m).read().decode("utf-8", "replace")
    rows = {}
    examples = []
    for k, raw in zip(KEYS, RAWS):
        cls = "ascii" if raw.isascii() else "nonascii"
        a, b = k in mvl, k in kept_py
        d = rows.setdefault(cls, {"n": 0, "mvl": 0, "py": 0, "both": 0, "mvl_only": 0,
                                  "py_only": 0, "same_text": 0})
        d["n"] += 1
        d["mvl"] += a
        d["py"] += b
        if a and b:
            d["both"] += 1
            if mvl[k] == kept_py[k]:
                d["same_text"] += 1
            elif len(examples) < 8:
                examples.append((k, "text differs", raw, mvl[k], kept_py[k]))
        elif a:
            d["mvl_only"] += 1
            if len(examples) < 8:
                examples.append((k, "mvl keeps, python drops", raw, mvl[k], None))
        elif b:
            d["py_only"] += 1
            if len(examples) < 8:
                examples.append((k, "python keeps, mvl drops", raw, None, kept_py[k]))
    return rows, examples


def main():
    global KEYS, RAWS
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input")
    ap.add_argument("--limit", type=int, default=0, help="first N captions (0: all)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--procs", default="1,2")
    ap.add_argument("--compare", metavar="MVL_OUT.tar")
    ap.add_argument("--plain", action="store_true",
                    help="no 'can this step change anything' tests before the regexes")
    ap.add_argument("--whole", metavar="OUT.tar",
                    help="time the whole command instead: read IN.tar with tarfile, "
                         "filter, write the kept captions to OUT.tar (1 process)")
    a = ap.parse_args()
    global clean_steps
    if a.plain:
        clean_steps = CLEAN_STEPS_PLAIN
    if a.whole:
        best = None
        for _ in range(a.reps):
            dt, n = whole_command(a.input, a.whole, a.limit)
            best = dt if best is None or dt < best else best
        print(f"captions {n}")
        print(f"whole_rate_1 {n / best:.1f}")
        print(f"python whole command (tarfile in and out): {n} captions in {best:.3f} s, "
              f"{n / best:,.0f} captions/s", file=sys.stderr)
        return

    KEYS, RAWS = load(a.input, a.limit or None)
    n = len(RAWS)
    print(f"captions {n}")
    for p in [int(x) for x in a.procs.split(",") if x]:
        dt, (kept, stats) = bench(p, a.reps)
        print(f"rate_{p} {n / dt:.1f}")
        print(f"python, {p} process(es): {n} captions in {dt:.3f} s, {n / dt:,.0f} captions/s, "
              f"kept {kept}", file=sys.stderr)
    print(f"kept {kept}")
    for r in sorted(stats):
        print(f"reason_{r} {stats[r]}")
    if a.compare:
        kept_py = {}
        process(KEYS, RAWS, 0, n, kept_py)
        rows, examples = compare(a.compare, kept_py)
        for cls, d in sorted(rows.items()):
            for f, v in d.items():
                print(f"cmp_{cls}_{f} {v}")
        for k, what, raw, m, p in examples:
            print(f"  {k}: {what}\n    in:     {raw[:200]!r}\n    mvl:    {m and m[:200]!r}\n"
                  f"    python: {p and p[:200]!r}", file=sys.stderr)


if __name__ == "__main__":
    main()
