"""End-to-end tests of recipes and mixing: `mvl recipe check` (every
problem with FILE:LINE:COLUMN, warnings, the resolved plan with tokens and
epochs per source) and `mvl mix` (token-weighted interleaving of shuffled,
endless sources; SOURCE/EPOCH/KEY keys; manifest, resume, rejects).

Fixtures are made here from real bytes: PIL-encoded JPEGs of several sizes
with captions, LLaVA-style conversations with images, and text-only
samples, in shards of deliberately unequal sizes and per-sample lengths.
Token counts are checked against an independent reference: the caption and
text ids come from tiktoken itself (tests/node, as test_tok.py uses it) and
the image tokens from Qwen2.5-VL's smart_resize (mvltest.smart_resize)."""
import sys
sys.dont_write_bytecode = True

import collections
import functools
import gzip
import json
import os
import random
import re
import subprocess

from mvltest import (
    Fail, ROOT, Suite, eq, expect, expect_rc, jpeg, mvl, read, read_rejects, samples_to_members,
    smart_resize, summary, tar_bytes, wds_samples, write, zstd_decompress,
)

S = Suite("mix")
check = S.check
RANKS = S.dir("ranks")
TIKTOKEN = os.path.join(RANKS, "cl100k_base.tiktoken")


def node(*args, timeout=120):
    p = subprocess.run(["node", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, cwd=ROOT)
    if p.returncode != 0:
        raise Fail("node %s failed: %s" % (" ".join(args), p.stderr.decode()[-400:]))
    return p.stdout


# ---------------------------------------------------------------------------
# fixtures: three sources of unequal size and per-sample length, and a
# fourth with broken samples

FIX = S.dir("fixture")
RNG = random.Random(20240917)
WORDS = ("a photo of the red cat sitting on wooden table near window light morning "
         "café naïve 東京 タワー don't we'll 1984 2025 mountain river bridge city "
         "grey-blue x86_64 Zürich résumé quickly jumped").split()


def words(n):
    return " ".join(RNG.choice(WORDS) for _ in range(n))


SIZES = [(64, 64), (200, 120), (320, 240), (90, 300), (500, 90), (150, 150), (420, 280)]

# caps: 3 shards of 17, 9 and 4 samples; captions 2..40 words; keys that
# the text source reuses (output keys must still be unique)
CAPS = collections.OrderedDict()   # shard file name -> [(key, jpg, caption, (w, h))]
n = 0
for si, count in enumerate((17, 9, 4)):
    rows = []
    for i in range(count):
        w, h = SIZES[(n * 3 + si) % len(SIZES)]
        cap = words(2 + (n * 7) % 39)
        rows.append(("%06d" % n, jpeg(w, h, seed=n), cap, (w, h)))
        n += 1
    CAPS["caps-%d.tar" % si] = rows
    write(os.path.join(FIX, "caps", "caps-%d.tar" % si), tar_bytes(samples_to_members(
        [(k, [("jpg", j), ("txt", c.encode())]) for k, j, c, _ in rows])))

# text: 2 shards of 11 and 3 samples, 20..180 words (long samples)
TEXT = collections.OrderedDict()
n = 0
for si, count in enumerate((11, 3)):
    rows = []
    for i in range(count):
        rows.append(("%06d" % n, words(20 + (n * 37) % 161)))
        n += 1
    TEXT["text-%d.tar" % si] = rows
    write(os.path.join(FIX, "text", "text-%d.tar" % si), tar_bytes(samples_to_members(
        [(k, [("txt", t.encode())]) for k, t in rows])))

# conv: 1 shard of 6 conversations with images, plus KEY.json metadata
CONV = []
for i in range(6):
    w, h = SIZES[(i * 2 + 1) % len(SIZES)]
    turns = [{"from": "human", "value": "<image>\n" + words(3 + i)},
             {"from": "gpt", "value": words(8 + 9 * i)}]
    if i % 2:
        turns += [{"from": "human", "value": words(4)}, {"from": "gpt", "value": words(15)}]
    meta = {"conversations": turns, "id": "conv-%d" % i}
    CONV.append(("v%03d" % i, jpeg(w, h, seed=100 + i), json.dumps(meta).encode()))
write(os.path.join(FIX, "conv", "conv-0.tar"), tar_bytes(samples_to_members(
    [(k, [("jpg", j), ("json", m)]) for k, j, m in CONV])))

# bad: 10 captioned images; b003's image is not an image, b005 has no caption
BAD = []
for i in range(10):
    k = "b%03d" % i
    if i == 3:
        BAD.append((k, [("jpg", b"this is not a JPEG, only text in a .jpg member"), ("txt", b"a broken image")]))
    elif i == 5:
        BAD.append((k, [("jpg", jpeg(100, 100, seed=i))]))
    elif i == 8:
        BAD.append((k, [("jpg", jpeg(100, 100, seed=i)), ("txt", b"a caption with <|endoftext|> inside")]))
    else:
        BAD.append((k, [("jpg", jpeg(80 + 10 * i, 100, seed=i)), ("txt", ("caption %d " % i + words(5)).encode())]))
write(os.path.join(FIX, "bad", "bad-0.tar"), tar_bytes(samples_to_members(BAD)))
BAD_WHY = {"b003": "bad_image", "b005": "no_text", "b008": "special_token"}

# badconv: conversations, one good, the others each wrong in one way
GOODCONV = {"conversations": [{"from": "human", "value": "<image>\nwhat is it?"}, {"from": "gpt", "value": "a cat"}]}
BADCONV = [
    ("k0", json.dumps(GOODCONV).encode(), None),
    ("k1", b'{"conversations": 5}', "bad_conversation"),
    ("k2", None, "no_text"),   # a caption, no conversations
    ("k3", json.dumps({"conversations": [{"from": "robot", "value": "beep"}]}).encode(), "bad_conversation"),
    ("k4", b'{"conversations": [{"from": "human", "value": "cut', "bad_conversation"),
    ("k5", json.dumps({"conversations": [{"from": "human", "value": "<image>\nhi <|im_end|>"},
                                         {"from": "gpt", "value": "y"}]}).encode(), "special_token"),
    ("k6", json.dumps(dict(GOODCONV, id=6)).encode(), None),
]
write(os.path.join(FIX, "badconv", "x.tar"), tar_bytes(samples_to_members(
    [(k, [("jpg", jpeg(90 + 20 * i, 90, seed=i))] + ([("json", j)] if j else [("txt", b"just a caption")]))
     for i, (k, j, _) in enumerate(BADCONV)])))

CAPS_KEYS = [k for rows in CAPS.values() for k, *_ in rows]
TEXT_KEYS = [k for rows in TEXT.values() for k, _ in rows]
CONV_KEYS = [k for k, _, _ in CONV]
KEYS = {"caps": CAPS_KEYS, "text": TEXT_KEYS, "conv": CONV_KEYS}

GOOD = """seed: 11
max_epochs: 1000
sources:
  caps:
    kind: captions
    shards:
      - caps/caps-{0..1}.tar
      - caps/caps-2.tar
    filters: clean
  conv:
    kind: conversations
    shards: conv/
  text:
    kind: text
    shards: text/*.tar
tokenizer:
  file: %s
  encoding: cl100k_base
stages:
  - name: warmup
    train: projector
    seq_len: 1024
    tokens: 100k
    batch_tokens: 4096
    mix:
      caps: 0.5
      conv: 0.2
      text: 0.3
    lr: 1e-3
    lr_scheduler: cosine
  - name: multitask
    train: all
    seq_len: [512, 1024]
    tokens: 30000
    mix: {caps: 0.25, text: 0.75}
    min_pixels: 3136
    max_pixels: 50176
""" % TIKTOKEN

BUDGET = 100000
WEIGHTS = {"caps": 0.5, "conv": 0.2, "text": 0.3}

_nrecipe = [0]


def recipe(text, d=FIX):
    """Writes a recipe file into d (the fixture folder: shard patterns are
    relative to the recipe's folder) and returns its absolute path."""
    _nrecipe[0] += 1
    return write(os.path.join(d, "recipe-%02d.yaml" % _nrecipe[0]), text.encode())


def sub(text, old, new, count=1):
    expect(text.count(old) >= 1, "fixture bug: %r not in the recipe" % old)
    return text.replace(old, new, count)


def pos(text, needle, nth=0):
    """1-based (line, column) of the nth occurrence of needle in text
    (never inside the tokenizer's path, a random temporary folder)."""
    text = text.replace(TIKTOKEN, "#" * len(TIKTOKEN))
    i = -1
    for _ in range(nth + 1):
        i = text.index(needle, i + 1)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


GOOD_PATH = recipe(GOOD)


# ---------------------------------------------------------------------------
# reference token counts (tiktoken via node, smart_resize in Python)

@check("export_cl100k_ranks")
def _():
    node("scripts/tok/export_ranks.js", RANKS, "--encodings", "cl100k_base", "--quiet")
    expect(os.path.getsize(TIKTOKEN) > 1000000, "cl100k_base.tiktoken missing or short")


@functools.lru_cache(None)
def ref_ids():
    """caption / text -> number of cl100k ids, from tiktoken itself."""
    texts = [c for rows in CAPS.values() for _, _, c, _ in rows] + \
            [t for rows in TEXT.values() for _, t in rows]
    for t in texts:
        expect("\n" not in t and "\r" not in t, "fixture bug: newline in a caption")
    d = S.dir("ref")
    f = write(os.path.join(d, "lines.txt"), ("\n".join(texts) + "\n").encode())
    out = node("scripts/tok/ref_encode.js", "--encoding", "cl100k_base", "--lines", f).decode()
    lines = out.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    eq(len(lines), len(texts), "reference lines")
    return {t: len(l.split()) for t, l in zip(texts, lines)}


def ref_tokens(src, key, min_pixels=3136, max_pixels=1003520):
    """Tokens of one sample as the packer lays it out (tokenizer/chat.h):
    caption: <|vision_start|> N pads <|vision_end|> CAPTION <|endoftext|>;
    text: TEXT <|endoftext|>."""
    ids = ref_ids()
    if src == "text":
        for rows in TEXT.values():
            for k, t in rows:
                if k == key:
                    return ids[t] + 1
    if src == "caps":
        for rows in CAPS.values():
            for k, _, c, (w, h) in rows:
                if k == key:
                    hh, ww = smart_resize(h, w, 28, min_pixels, max_pixels)
                    return 3 + (hh // 28) * (ww // 28) + ids[c]
    raise Fail("no reference for %s/%s" % (src, key))


def ref_epoch(src, **kw):
    return sum(ref_tokens(src, k, **kw) for k in KEYS[src])


# ---------------------------------------------------------------------------
# running mvl mix

class Mix:
    """One `mvl mix` run: result, stream samples, per-sample records, manifest."""

    def __init__(self, r, manifest=None):
        self.r = r
        self.samples = wds_samples(r.out)
        self.rows = []   # (source, epoch, key, tokens, members dict, meta)
        for key, ms in self.samples:
            parts = key.split("/")
            expect(len(parts) == 3, "key %r is not SOURCE/EPOCH/KEY" % key)
            m = dict(ms)
            expect("json" in m, "sample %r has no KEY.json" % key)
            meta = json.loads(m["json"])
            mx = meta.get("mix")
            expect(isinstance(mx, dict), "KEY.json of %r has no \"mix\" object: %r" % (key, meta))
            self.rows.append((parts[0], int(parts[1]), parts[2], mx.get("tokens"), m, meta))
        self.manifest = json.loads(read(manifest)) if manifest else None

    def by_source(self, src):
        return [row for row in self.rows if row[0] == src]

    def src_manifest(self, name):
        for s in self.manifest["sources"]:
            if s["name"] == name:
                return s
        raise Fail("manifest has no source %r: %r" % (name, [s.get("name") for s in self.manifest["sources"]]))


def run_mix(recipe_path, stage, *args, rc=0, manifest=True, cwd=None):
    d = S.dir("mix")
    m = os.path.join(d, "manifest.json") if manifest else None
    extra = ["--manifest", m] if m else []
    r = mvl("mix", recipe_path, "--stage", stage, *extra, *args, cwd=cwd or d)
    expect_rc(r, rc)
    return Mix(r, m) if rc == 0 else r


def read_manifest_text(m):
    x = dict(m.manifest)
    return json.dumps(x, sort_keys=True)


def describe_keys(got, want):
    g, w = [k for k, _ in got], [k for k, _ in want]
    for i, (x, y) in enumerate(zip(g, w)):
        if x != y:
            return "first different key at %d: %r vs %r" % (i, x, y)
    return "%d vs %d samples" % (len(g), len(w))


@functools.lru_cache(None)
def full():
    """The warmup stage of the good recipe, run from another folder."""
    return run_mix(GOOD_PATH, "warmup")


# ---------------------------------------------------------------------------
# recipe check: a good recipe

ROW_RE = re.compile(r"^\s+(\S+)\s+([\d.]+)%\s+(\d+)\s+(\S+)\s+(\S+)\s*$")


def plan(out):
    """stage -> {source: (weight %, tokens, per epoch, epochs)} from the
    table `mvl recipe check` prints."""
    stages, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"^stage '([^']+)':", line)
        if m:
            cur = stages.setdefault(m.group(1), {})
            continue
        m = ROW_RE.match(line)
        if cur is not None and m and m.group(1) != "source":
            cur[m.group(1)] = (float(m.group(2)), int(m.group(3)), m.group(4), m.group(5))
    return stages


@check("recipe_check_good_prints_plan_with_tokens_and_epochs")
def _():
    r = mvl("recipe", "check", GOOD_PATH, cwd=S.dir("cwd"))
    expect_rc(r, 0)
    out = r.out.decode()
    expect(out.splitlines()[-1].endswith(": valid"), "last line does not say valid: %r" % out.splitlines()[-1])
    expect(not re.search(r"warning|error", r.errtext), "unexpected stderr: %r" % r.errtext)
    p = plan(out)
    eq(sorted(p), ["multitask", "warmup"], "stages in the plan")
    eq(sorted(p["warmup"]), ["caps", "conv", "text"], "warmup sources")
    eq(sorted(p["multitask"]), ["caps", "text"], "multitask sources")
    expect(re.search(r"stage 'multitask':.*seq_len 512, 1024", out), "multitask seq_len list not shown")
    bounds = {"warmup": (3136, 1003520), "multitask": (3136, 50176)}
    stage_tokens = {"warmup": 100000, "multitask": 30000}
    weights = {"warmup": WEIGHTS, "multitask": {"caps": 0.25, "text": 0.75}}
    for st, rows in p.items():
        for src, (w, tokens, per, epochs) in rows.items():
            eq(w, round(100 * weights[st][src], 2), "%s/%s weight %%" % (st, src))
            eq(tokens, round(weights[st][src] * stage_tokens[st]), "%s/%s tokens" % (st, src))
            if src == "conv":
                continue  # checked against the mixed stream below
            lo, hi = bounds[st]
            want = ref_epoch(src, min_pixels=lo, max_pixels=hi)
            eq(int(per), want, "%s/%s tokens per epoch (reference: tiktoken + smart_resize)" % (st, src))
            eq(epochs, "%.2f" % (tokens / want), "%s/%s epochs" % (st, src))
    # the caps' images are smaller under multitask's max_pixels
    expect(int(p["multitask"]["caps"][2]) < int(p["warmup"]["caps"][2]),
           "max_pixels did not lower the caps' tokens per epoch")


@check("recipe_check_per_epoch_agrees_with_mixed_stream")
def _():
    r = mvl("recipe", "check", GOOD_PATH)
    expect_rc(r, 0)
    p = plan(r.out.decode())
    m = full()
    for src in ("caps", "conv", "text"):
        ep1 = [row for row in m.by_source(src) if row[1] == 1]
        expect(max(row[1] for row in m.by_source(src)) >= 2, "%s: fixture too big for one full epoch" % src)
        eq(int(p["warmup"][src][2]), sum(row[3] for row in ep1),
           "%s: recipe check tokens per epoch vs the mix's epoch-1 tokens" % src)


# ---------------------------------------------------------------------------
# recipe check: broken recipes

def diag(r, path):
    """(errors, warnings) lines mvl recipe check wrote about path."""
    errs, warns = [], []
    for l in r.errtext.splitlines():
        if re.match(r"^mvl recipe check: .*: \d+ errors?$", l):
            continue
        if not (l.startswith(path) or l.startswith("mvl recipe check: " + path)):
            continue
        (warns if "warning:" in l else errs).append(l)
    return errs, warns


def expect_count_line(r, path, n):
    want = "mvl recipe check: %s: %d error%s" % (path, n, "" if n == 1 else "s")
    lines = r.errtext.splitlines()
    expect(lines and lines[-1] == want, "last stderr line %r, expected %r" % (lines[-1] if lines else "", want))


def bad_recipe(text, where, *parts, nerrors=1):
    """Checks `mvl recipe check` on text: exit 1, exactly nerrors errors,
    one of them FILE:LINE:COL: ... with every part in it."""
    path = recipe(text)
    r = mvl("recipe", "check", "--no-count", path)
    expect_rc(r, 1)
    eq(r.out, b"", "stdout of a failing check")
    errs, _ = diag(r, path)
    expect(len(errs) == nerrors, "%d error lines, expected %d: %r" % (len(errs), nerrors, errs))
    prefix = "%s:%d:%d: " % ((path,) + where) if where else path + ": "
    hits = [e for e in errs if e.startswith(prefix)]
    expect(hits, "no error starting with %r: %r" % (prefix, errs))
    expect(any(all(p in e for p in parts) for e in hits), "no error %r with %r" % (hits, parts))
    expect_count_line(r, path, nerrors)
    return r, errs


@check("recipe_unknown_stage_key_did_you_mean")
def _():
    t = sub(GOOD, "lr_scheduler: cosine", "lr_sheduler: cosine")
    bad_recipe(t, pos(t, "lr_sheduler"),
               "stage 'warmup': unknown key 'lr_sheduler' (did you mean 'lr_scheduler'?)")


@check("recipe_unknown_key_did_you_mean_in_source_and_top_level")
def _():
    t = sub(GOOD, "    filters: clean", "    filter: clean")
    bad_recipe(t, pos(t, "filter:"), "source 'caps': unknown key 'filter' (did you mean 'filters'?)")
    t = sub(GOOD, "seed: 11", "sed: 11")
    bad_recipe(t, (1, 1), "unknown key 'sed' (did you mean 'seed'?)")


@check("recipe_unknown_key_far_from_any_has_no_suggestion")
def _():
    t = sub(GOOD, "    lr: 1e-3", "    zebra: 1e-3\n    lr: 1e-3")
    _, errs = bad_recipe(t, pos(t, "zebra"), "unknown key 'zebra'")
    expect("did you mean" not in errs[0], "a suggestion for 'zebra': %r" % errs[0])


@check("recipe_count_suffixes")
def _():
    t = sub(GOOD, "tokens: 100k", "tokens: 1.5M")
    t = sub(t, "batch_tokens: 4096", "batch_tokens: 64Ki")
    path = recipe(t)
    r = mvl("recipe", "check", "--no-count", path)
    expect_rc(r, 0)
    out = r.out.decode()
    expect("stage 'warmup'" in out, "no warmup stage in %r" % out[:300])
    expect("1500000 tokens = 23 steps of 65536" in out, "1.5M tokens / 64Ki batch not in the plan: %r" % out)
    eq(plan(out)["warmup"]["caps"][:2], (50.0, 750000), "caps weight and tokens of 1.5M")
    t = sub(GOOD, "tokens: 100k", "tokens: 2.5")
    bad_recipe(t, pos(t, "2.5"), "stage 'warmup': 'tokens' must be a whole number", "not '2.5'")


@check("recipe_unknown_stage_part")
def _():
    t = sub(GOOD, "train: projector", "train: projecter")
    bad_recipe(t, pos(t, "projecter"), "stage 'warmup'", "'projecter'", "(did you mean 'projector'?)")


@check("recipe_wrong_type_string_for_lr")
def _():
    t = sub(GOOD, "lr: 1e-3", "lr: fast")
    bad_recipe(t, pos(t, "fast"), "stage 'warmup': 'lr' must be a number, not 'fast'")


@check("recipe_wrong_type_list_for_tokens")
def _():
    t = sub(GOOD, "tokens: 100k", "tokens: [100k]")
    bad_recipe(t, pos(t, "[100k]"), "stage 'warmup': 'tokens' must be a whole number")


@check("recipe_out_of_range_values")
def _():
    t = sub(GOOD, "lr: 1e-3", "lr: 50")
    bad_recipe(t, pos(t, "50"), "stage 'warmup': 'lr' is 50, outside [0, 10]")
    t = sub(GOOD, "seq_len: 1024", "seq_len: 8")
    l, c = pos(t, "seq_len: 8")
    bad_recipe(t, (l, c + len("seq_len: ")), "stage 'warmup': 'seq_len' is 8, outside [16, 1048576]")
    t = sub(GOOD, "tokens: 30000", "tokens: 0")
    l, c = pos(t, "tokens: 0")
    bad_recipe(t, (l, c + len("tokens: ")), "stage 'multitask': 'tokens' is 0, outside [1,")


@check("recipe_bad_enum_kind_did_you_mean")
def _():
    t = sub(GOOD, "kind: conversations", "kind: conversation")
    bad_recipe(t, pos(t, "conversation\n"), "source 'conv': 'kind' must be one of captions, conversations, text",
               "(did you mean 'conversations'?)")


@check("recipe_duplicate_key")
def _():
    t = sub(GOOD, "    seq_len: 1024\n", "    seq_len: 1024\n    seq_len: 2048\n")
    bad_recipe(t, pos(t, "seq_len: 2048"), "stage 'warmup': duplicate key 'seq_len'")


@check("recipe_mix_undefined_source_with_suggestion")
def _():
    t = sub(GOOD, "      text: 0.3", "      txt: 0.3")
    bad_recipe(t, pos(t, "txt: 0.3"),
               "stage 'warmup': source 'txt' is not defined under 'sources' (did you mean 'text'?)")


@check("recipe_zero_and_negative_weight_are_errors")
def _():
    for v in ("0", "-0.2"):
        t = sub(GOOD, "conv: 0.2", "conv: " + v)
        l, c = pos(t, "conv: " + v)
        bad_recipe(t, (l, c + len("conv: ")), "mix weight of 'conv' is %s" % ("0" if v == "0" else "-0.2"), "must be > 0")


@check("recipe_weights_not_summing_to_one_warn_and_normalize")
def _():
    t = sub(GOOD, "mix: {caps: 0.25, text: 0.75}", "mix: {caps: 1, text: 3}")
    path = recipe(t)
    r = mvl("recipe", "check", path)
    expect_rc(r, 0)
    errs, warns = diag(r, path)
    eq(errs, [], "errors")
    l, c = pos(t, "{caps: 1")
    eq(warns, ["%s:%d:%d: warning: stage 'multitask': mix weights sum to 4, not 1: normalized" % (path, l, c)],
       "warnings")
    p = plan(r.out.decode())
    eq((p["multitask"]["caps"][:2], p["multitask"]["text"][:2]), ((25.0, 7500), (75.0, 22500)),
       "normalized weights and tokens")
    m = run_mix(path, "multitask", "-q")
    eq(sorted((s["name"], s["weight"]) for s in m.manifest["sources"]), [("caps", 0.25), ("text", 0.75)],
       "manifest weights")


def missing(text, where, key_msg, nerrors=1):
    return bad_recipe(text, where, key_msg, nerrors=nerrors)


@check("recipe_missing_stage_keys")
def _():
    start = pos(GOOD, "name: warmup")
    missing(sub(GOOD, "    seq_len: 1024\n", ""), start, "stage 'warmup': missing key 'seq_len'")
    missing(sub(GOOD, "    tokens: 100k\n", ""), start, "stage 'warmup': missing key 'tokens'")
    missing(sub(GOOD, "    mix:\n      caps: 0.5\n      conv: 0.2\n      text: 0.3\n", ""), start,
            "stage 'warmup': missing key 'mix'")


@check("recipe_missing_source_keys")
def _():
    t = sub(GOOD, "    kind: captions\n", "")
    missing(t, pos(t, "shards:\n      - caps"), "source 'caps': missing key 'kind'")
    t = sub(GOOD, "    shards: text/*.tar\n", "")
    missing(t, pos(t, "kind: text"), "source 'text': missing key 'shards'")


@check("recipe_missing_stages")
def _():
    t = GOOD[:GOOD.index("stages:")]
    path = recipe(t)
    r = mvl("recipe", "check", "--no-count", path)
    expect_rc(r, 1)
    errs, warns = diag(r, path)
    eq(errs, ["%s:1:1: 'stages' must be a non-empty list of stages" % path], "errors")
    expect_count_line(r, path, 1)


@check("recipe_missing_sources_has_a_position")
def _():
    t = GOOD[:GOOD.index("sources:")] + GOOD[GOOD.index("tokenizer:"):]
    path = recipe(t)
    r = mvl("recipe", "check", "--no-count", path)
    expect_rc(r, 1)
    errs, _ = diag(r, path)
    expect(any("missing 'sources'" in e for e in errs), "no missing 'sources' error: %r" % errs)
    # the mixes name sources that are now undefined: one error each
    eq(len(errs), 1 + 5, "errors: %r" % errs)
    expect_count_line(r, path, 6)
    # recipe.h: every problem is FILE:LINE:COLUMN; the root mapping is at 1:1
    # (as for a missing 'stages')
    e = [e for e in errs if "missing 'sources'" in e][0]
    expect(e.startswith(path + ":1:1: "), "missing 'sources' without FILE:1:1: %r" % e)


@check("recipe_yaml_syntax_error_line_col")
def _():
    t = sub(GOOD, "    kind: captions\n", "    kind: captions: x\n")
    path = recipe(t)
    r = mvl("recipe", "check", path)
    expect_rc(r, 1)
    l, c = pos(t, ": x")
    expect(re.search(r"(?m)^(mvl recipe check: )?%s:%d:%d: YAML: mapping values are not allowed" % (
        re.escape(path), l, c), r.errtext), "no %s:%d:%d: YAML error: %r" % (path, l, c, r.errtext))
    t = sub(GOOD, "    mix: {caps: 0.25, text: 0.75}", "    mix: {caps: 0.25, text: 0.75")
    path = recipe(t)
    r = mvl("recipe", "check", path)
    expect_rc(r, 1)
    expect(re.search(r"(?m)^(mvl recipe check: )?%s:\d+:\d+: YAML: .*flow mapping" % re.escape(path), r.errtext),
           "unclosed flow mapping: %r" % r.errtext)


@check("recipe_empty_file")
def _():
    for text in ("", "# nothing but a comment\n\n"):
        path = recipe(text)
        r = mvl("recipe", "check", path)
        expect_rc(r, 1)
        eq(diag(r, path)[0], [path + ": the file is empty"], "errors of %r" % text)
        expect_count_line(r, path, 1)
    r = mvl("recipe", "check", os.path.join(FIX, "no-such-recipe.yaml"))
    expect_rc(r, 1)
    expect("no-such-recipe.yaml" in r.errtext and "No such file" in r.errtext, "missing file: %r" % r.errtext)


@check("recipe_tokenizer_file_and_train_both")
def _():
    t = sub(GOOD, "  encoding: cl100k_base\n", "  encoding: cl100k_base\n  train: {vocab: 1000, sources: [text]}\n")
    bad_recipe(t, pos(t, "file: "), "tokenizer: give either 'file' or 'train', not both")


@check("recipe_bad_filter_chain_in_source")
def _():
    t = sub(GOOD, "filters: clean", "filters: clean,capfilter:min_wrds=3")
    bad_recipe(t, pos(t, "clean,capfilter"), "source 'caps': filters:", "unknown option 'min_wrds'")
    t = sub(GOOD, "filters: clean", "filters: sharpen")
    bad_recipe(t, pos(t, "sharpen"), "source 'caps': filters:", "unknown filter 'sharpen'")
    t = sub(GOOD, "filters: clean", "filters: capfilter:min_words=lots")
    bad_recipe(t, pos(t, "capfilter:"), "source 'caps': filters:", "min_words")


@check("recipe_min_pixels_above_max_pixels")
def _():
    t = sub(GOOD, "min_pixels: 3136", "min_pixels: 100352")
    bad_recipe(t, pos(t, "100352"), "stage 'multitask': 'min_pixels' 100352 is above 'max_pixels' 50176")


@check("recipe_duplicate_stage_names")
def _():
    t = sub(GOOD, "name: multitask", "name: warmup")
    bad_recipe(t, pos(t, "warmup", 1), "a stage called 'warmup' already exists")


@check("recipe_unused_source_warning")
def _():
    t = sub(GOOD, "tokenizer:\n", "  spare: {kind: text, shards: text/*.tar}\ntokenizer:\n")
    path = recipe(t)
    r = mvl("recipe", "check", "--no-count", path)
    expect_rc(r, 0)
    errs, warns = diag(r, path)
    eq(errs, [], "errors")
    eq(len(warns), 1, "warnings: %r" % warns)
    kl, kc = pos(t, "spare:")
    vl, vc = pos(t, "{kind: text")
    m = re.match(r"^%s:(\d+):(\d+): warning: source 'spare' is used by no stage$" % re.escape(path), warns[0])
    expect(m, "warning %r" % warns[0])
    expect((int(m.group(1)), int(m.group(2))) in ((kl, kc), (vl, vc)), "warning position %r" % warns[0])
    # a source only the tokenizer trains on is used
    t2 = sub(t, "  file: %s\n  encoding: cl100k_base\n" % TIKTOKEN, "  train: {vocab: 1000, sources: [spare]}\n")
    path = recipe(t2)
    r = mvl("recipe", "check", "--no-count", path)
    expect_rc(r, 0)
    eq(diag(r, path), ([], []), "errors and warnings with the tokenizer training on 'spare'")


@check("recipe_many_errors_all_reported")
def _():
    t = GOOD
    t = sub(t, "lr_scheduler: cosine", "lr_sheduler: cosine")
    t = sub(t, "lr: 1e-3", "lr: fast")
    t = sub(t, "      text: 0.3", "      txt: 0.3")
    t = sub(t, "min_pixels: 3136", "min_pixels: 100352")
    t = sub(t, "name: multitask", "name: warmup")
    t = sub(t, "kind: conversations", "kind: convos")
    t = sub(t, "    shards: text/*.tar\n", "    shards: text/*.tar\n    shards: x\n")
    want = {pos(t, "lr_sheduler"), pos(t, "fast"), pos(t, "txt: 0.3"), pos(t, "100352"),
            pos(t, "warmup", 1), pos(t, "convos"), pos(t, "shards: x")}
    path = recipe(t)
    r = mvl("recipe", "check", path)
    expect_rc(r, 1)
    errs, _ = diag(r, path)
    got = set()
    for e in errs:
        m = re.match(r"^%s:(\d+):(\d+): " % re.escape(path), e)
        expect(m, "error without FILE:LINE:COL: %r" % e)
        got.add((int(m.group(1)), int(m.group(2))))
    eq(len(errs), 7, "number of errors: %r" % errs)
    eq(sorted(got), sorted(want), "error positions")
    expect_count_line(r, path, 7)


def epoch_warnings(r, path, max_epochs):
    """The epoch warnings recipe check printed, and those its own plan
    table calls for (every source read more than max_epochs times)."""
    got = set()
    for w in diag(r, path)[1]:
        m = re.match(r"^%s: warning: stage '(\w+)' repeats source '(\w+)' ([\d.]+) times \(max_epochs %d\)$" % (
            re.escape(path), max_epochs), w)
        expect(m, "unexpected warning %r" % w)
        got.add((m.group(1), m.group(2), m.group(3)))
    want = set()
    for st, rows in plan(r.out.decode()).items():
        for src, (_, tokens, per, epochs) in rows.items():
            if float(epochs) > max_epochs:
                want.add((st, src, "%.1f" % (tokens / int(per))))
    return got, want


@check("recipe_check_epochs_warning_above_max_epochs")
def _():
    text_ep, caps_ep = ref_epoch("text"), ref_epoch("caps")
    # multitask reads text 3.5 times and caps well under 2 times
    tokens = int(3.5 * text_ep / 0.8)
    expect(0.2 * tokens / caps_ep < 2, "fixture: caps would repeat too")
    t = GOOD.replace("max_epochs: 1000", "max_epochs: 2")
    t = sub(t, "tokens: 30000", "tokens: %d" % tokens)
    t = sub(t, "mix: {caps: 0.25, text: 0.75}", "mix: {caps: 0.2, text: 0.8}")
    path = recipe(t)
    r = mvl("recipe", "check", path)
    expect_rc(r, 0)
    eq(diag(r, path)[0], [], "errors")
    got, want = epoch_warnings(r, path, 2)
    mt = {w for w in got if w[0] == "multitask"}
    eq(mt, {("multitask", "text", "%.1f" % (round(0.8 * tokens) / text_ep))}, "multitask's epoch warnings")
    eq(got, want, "epoch warnings vs the plan's epochs above 2")
    expect(len(want) >= 3, "the warmup stage repeats its sources more than twice: %r" % sorted(want))
    # at max_epochs 4 multitask repeats nothing too often
    path = recipe(t.replace("max_epochs: 2", "max_epochs: 4"))
    r = mvl("recipe", "check", path)
    expect_rc(r, 0)
    got, want = epoch_warnings(r, path, 4)
    eq(got, want, "epoch warnings vs the plan's epochs above 4")
    eq({w for w in got if w[0] == "multitask"}, set(), "multitask's epoch warnings at max_epochs 4")


# ---------------------------------------------------------------------------
# mix: shares, budget, tokens

@check("mix_shares_within_half_percent_on_unequal_sources")
def _():
    m = full()
    got = {s["name"]: (s["weight"], s["share"]) for s in m.manifest["sources"]}
    eq(sorted(got), ["caps", "conv", "text"], "manifest sources")
    for name, (w, share) in got.items():
        expect(abs(w - WEIGHTS[name]) < 1e-9, "%s weight %r" % (name, w))
        expect(abs(share - w) <= 0.005, "%s share %.4f vs weight %.4f" % (name, share, w))
    # and the shares the stream itself realizes
    total = sum(row[3] for row in m.rows)
    for name in got:
        sh = sum(row[3] for row in m.by_source(name)) / total
        expect(abs(sh - WEIGHTS[name]) <= 0.005, "%s: stream share %.4f" % (name, sh))
    # unequal indeed: the sources are read a different number of times
    epochs = sorted(max(row[1] for row in m.by_source(s)) for s in got)
    expect(epochs[0] < epochs[-1] and epochs[0] >= 2, "epochs per source %r" % epochs)


@check("mix_budget_reached_by_at_most_one_sample")
def _():
    m = full()
    man = m.manifest
    eq(man["budget"], BUDGET, "manifest budget")
    total = sum(row[3] for row in m.rows)
    eq(man["tokens"], total, "manifest tokens vs the sum of KEY.json mix.tokens")
    eq(man["emitted"], len(m.rows), "manifest emitted vs samples in the stream")
    expect(total >= BUDGET, "tokens %d below the budget" % total)
    expect(total - m.rows[-1][3] < BUDGET, "the stream went on after reaching the budget (%d - last %d)" % (
        total, m.rows[-1][3]))
    expect(total < BUDGET + max(row[3] for row in m.rows), "overshoot")


@check("mix_manifest_source_tokens_sum_to_total")
def _():
    m = full()
    man = m.manifest
    eq(sum(s["tokens"] for s in man["sources"]), man["tokens"], "sum of sources' tokens")
    eq(sum(s["samples"] for s in man["sources"]), man["emitted"], "sum of sources' samples")
    for s in man["sources"]:
        rows = m.by_source(s["name"])
        eq((s["tokens"], s["samples"]), (sum(r[3] for r in rows), len(rows)), "%s tokens, samples" % s["name"])
        eq(s["samples_per_epoch"], len(KEYS[s["name"]]), "%s samples_per_epoch" % s["name"])
        eq(s["rejected"], 0, "%s rejected" % s["name"])
        eq(s["epochs"], len(rows) / len(KEYS[s["name"]]), "%s epochs" % s["name"])
        eq(s["shards_opened"], {"caps": 3, "text": 2, "conv": 1}[s["name"]] * max(r[1] for r in rows),
           "%s shards opened" % s["name"])
    eq((man["stage"], man["seed"]), ("warmup", 11), "manifest stage, seed")


@check("mix_sample_tokens_match_reference")
def _():
    m = full()
    for src, ep, key, tokens, _, _ in m.rows:
        if src in ("caps", "text"):
            eq(tokens, ref_tokens(src, key), "tokens of %s/%d/%s" % (src, ep, key))
    # multitask's max_pixels shrinks the large images
    mt = run_mix(GOOD_PATH, "multitask", "-q")
    for src, ep, key, tokens, _, _ in mt.rows:
        eq(tokens, ref_tokens(src, key, max_pixels=50176), "multitask tokens of %s/%d/%s" % (src, ep, key))
    expect(any(ref_tokens("caps", k, max_pixels=50176) < ref_tokens("caps", k) for k in CAPS_KEYS),
           "fixture: no image above 50176 pixels")
    # conversations: the same sample counts the same every epoch
    conv = collections.defaultdict(set)
    for src, ep, key, tokens, _, _ in m.by_source("conv"):
        conv[key].add(tokens)
    eq(sorted(conv), CONV_KEYS, "conv keys")
    for key, ts in conv.items():
        eq(len(ts), 1, "%s token counts across epochs" % key)


@check("mix_keys_json_and_members")
def _():
    m = full()
    keys = [k for k, _ in m.samples]
    eq(len(set(keys)), len(keys), "unique output keys")
    orig = {}
    for rows in CAPS.values():
        for k, j, c, _ in rows:
            orig[("caps", k)] = {"jpg": j, "txt": c.encode()}
    for rows in TEXT.values():
        for k, t in rows:
            orig[("text", k)] = {"txt": t.encode()}
    for k, j, meta in CONV:
        orig[("conv", k)] = {"jpg": j, "json": meta}
    kinds = {"caps": "captions", "conv": "conversations", "text": "text"}
    for src, ep, key, tokens, ms, meta in m.rows:
        eq(meta["mix"], {"source": src, "kind": kinds[src], "epoch": ep, "tokens": tokens},
           "KEY.json mix of %s/%d/%s" % (src, ep, key))
        expect(isinstance(tokens, int) and tokens > 0, "tokens %r" % tokens)
        want = orig[(src, key)]
        eq(sorted(ms), sorted(set(want) | {"json"}), "members of %s/%d/%s" % (src, ep, key))
        for ext, data in want.items():
            if ext == "json":
                w = json.loads(data)
                eq({k: v for k, v in meta.items() if k != "mix"}, w, "KEY.json of %s beside mix" % key)
            else:
                expect(ms[ext] == data, "%s/%d/%s.%s differs from the input" % (src, ep, key, ext))


@check("mix_deterministic_and_seed_dependent")
def _():
    a, b = full(), run_mix(GOOD_PATH, "warmup", "-q")
    expect(a.r.out == b.r.out, "two runs of the same recipe differ")
    eq(read_manifest_text(a), read_manifest_text(b), "manifests")
    c = run_mix(recipe(GOOD.replace("seed: 11", "seed: 12")), "warmup", "-q")
    expect(c.r.out != a.r.out, "seed 12 gives the same stream as seed 11")
    ka, kc = [k for k, _ in a.samples], [k for k, _ in c.samples]
    expect(ka[:50] != kc[:50], "seed 12 gives the same first 50 keys")
    for s in c.manifest["sources"]:
        expect(abs(s["share"] - s["weight"]) <= 0.005, "seed 12: %s share %.4f" % (s["name"], s["share"]))


@check("mix_epochs_in_order_each_sample_once_per_epoch")
def _():
    m = full()
    for src in ("caps", "conv", "text"):
        rows = m.by_source(src)
        eps = [r[1] for r in rows]
        eq(eps, sorted(eps), "%s: epochs in stream order" % src)
        eq(eps[0], 1, "%s first epoch" % src)
        last = eps[-1]
        eq(sorted(set(eps)), list(range(1, last + 1)), "%s epochs present" % src)
        for e in range(1, last + 1):
            ks = [r[2] for r in rows if r[1] == e]
            eq(len(ks), len(set(ks)), "%s epoch %d: a sample twice" % (src, e))
            if e < last:
                eq(sorted(ks), sorted(KEYS[src]), "%s epoch %d: samples" % (src, e))
            else:
                expect(set(ks) <= set(KEYS[src]), "%s last epoch: unknown keys" % src)
    # epoch 1 of every source is over before epoch 2 of it begins, in the
    # stream as a whole too (positions)
    for src in ("caps", "conv", "text"):
        idx = [(i, r[1]) for i, r in enumerate(m.rows) if r[0] == src]
        last1 = max(i for i, e in idx if e == 1)
        first2 = min(i for i, e in idx if e == 2)
        expect(last1 < first2, "%s: epoch 1 sample at %d after epoch 2 began at %d" % (src, last1, first2))


@check("mix_shuffles_within_and_across_epochs")
def _():
    m = full()
    rows = m.by_source("caps")
    e1 = [r[2] for r in rows if r[1] == 1]
    e2 = [r[2] for r in rows if r[1] == 2]
    expect(e1 != CAPS_KEYS, "epoch 1 of caps is in stored order")
    expect(e1 != e2, "epochs 1 and 2 of caps in the same order")


@check("mix_shuffle_buffer_1_reads_whole_shards_in_shuffled_order")
def _():
    m = run_mix(GOOD_PATH, "warmup", "--shuffle-buffer", "1", "-q")
    rows = m.by_source("caps")
    shard_of = {k: name for name, rs in CAPS.items() for k, *_ in rs}
    orders = []
    last = max(r[1] for r in rows)
    for e in range(1, last):
        ks = [r[2] for r in rows if r[1] == e]
        # runs of one shard each, in stored order
        runs = []
        for k in ks:
            if not runs or shard_of[runs[-1][-1]] != shard_of[k]:
                runs.append([])
            runs[-1].append(k)
        eq([[k for k, *_ in CAPS[shard_of[run[0]]]] for run in runs], runs,
           "caps epoch %d with buffer 1: whole shards in stored order" % e)
        orders.append(tuple(shard_of[run[0]] for run in runs))
    expect(len(orders) >= 4, "only %d full epochs of caps" % len(orders))
    expect(len(set(orders)) > 1, "the shard order is the same in all %d epochs: %r" % (len(orders), orders[0]))
    for src in m.manifest["sources"]:
        expect(abs(src["share"] - src["weight"]) <= 0.005, "%s share %.4f" % (src["name"], src["share"]))


# ---------------------------------------------------------------------------
# mix: resume, outputs, --from, --budget

@check("mix_limit_then_resume_equals_full_run")
def _():
    f = full()
    d = S.dir("resume")
    m1, m2, m3 = (os.path.join(d, "m%d.json" % i) for i in (1, 2, 3))
    a = mvl("mix", GOOD_PATH, "--stage", "warmup", "--limit", "137", "--manifest", m1, "-q")
    expect_rc(a, 0)
    eq(len(wds_samples(a.out)), 137, "samples with --limit 137")
    eq(json.loads(read(m1))["emitted"], 137, "emitted in the --limit manifest")
    b = mvl("mix", GOOD_PATH, "--stage", "warmup", "--resume", m1, "--limit", "300", "--manifest", m2, "-q")
    expect_rc(b, 0)
    c = mvl("mix", GOOD_PATH, "--stage", "warmup", "--resume", m2, "--manifest", m3, "-q")
    expect_rc(c, 0)
    parts = [write(os.path.join(d, "%s.tar" % n), x.out) for n, x in (("a", a), ("b", b), ("c", c))]
    cat = mvl("cat", *parts)
    expect_rc(cat, 0)
    expect(cat.out == f.r.out, "cat of the three parts (%d bytes) differs from the full run (%d bytes): %s" % (
        len(cat.out), len(f.r.out), describe_keys(wds_samples(cat.out), f.samples)))
    eq(json.loads(read(m3)), f.manifest, "manifest after resuming vs the full run's")


@check("mix_resume_into_the_same_output_pattern_keeps_earlier_shards")
def _():
    d = S.dir("resume-o")
    m1 = os.path.join(d, "m1.json")
    pat = os.path.join(d, "out", "mix-%04d.tar")
    expect_rc(mvl("mix", GOOD_PATH, "--stage", "warmup", "--limit", "137", "--manifest", m1,
                  "-o", pat, "--maxcount", "100", "-q"), 0)
    first = sorted(os.listdir(os.path.join(d, "out")))
    eq(first, ["mix-0000.tar", "mix-0001.tar"], "shards of the first run")
    expect_rc(mvl("mix", GOOD_PATH, "--stage", "warmup", "--resume", m1, "-o", pat, "--maxcount", "100", "-q"), 0)
    files = sorted(os.listdir(os.path.join(d, "out")))
    cat = mvl("cat", *[os.path.join(d, "out", f) for f in files])
    expect_rc(cat, 0)
    got = wds_samples(cat.out)
    expect(cat.out == full().r.out, "shards %s after resuming into the same pattern hold %d samples, the full "
           "run %d (%s): the resumed run overwrote the first run's shards" % (
               files, len(got), len(full().samples), describe_keys(got, full().samples)))


@check("mix_resume_refuses_manifest_of_another_seed")
def _():
    d = S.dir("resume-seed")
    m1 = os.path.join(d, "m1.json")
    expect_rc(mvl("mix", GOOD_PATH, "--stage", "warmup", "--limit", "50", "--manifest", m1, "-q"), 0)
    eq(json.loads(read(m1))["seed"], 11, "seed in the manifest")
    other = recipe(GOOD.replace("seed: 11", "seed: 12"))
    r = mvl("mix", other, "--stage", "warmup", "--resume", m1, "-q")
    expect(r.rc == 1, "resuming seed 12 after a seed 11 manifest: exit %d (the stream would continue another "
           "shuffle: samples repeated and lost); stderr %r" % (r.rc, r.errtext[-200:]))
    expect("seed" in r.errtext, "error does not mention the seed: %r" % r.errtext)


@check("mix_resume_refuses_other_stage_manifest")
def _():
    d = S.dir("resume2")
    m1 = os.path.join(d, "m.json")
    expect_rc(mvl("mix", GOOD_PATH, "--stage", "multitask", "--limit", "5", "--manifest", m1, "-q"), 0)
    r = mvl("mix", GOOD_PATH, "--stage", "warmup", "--resume", m1)
    expect_rc(r, 1)
    expect("multitask" in r.errtext and "warmup" in r.errtext, "stage mismatch message: %r" % r.errtext)
    eq(r.out, b"", "stdout")


@check("mix_output_shards_equal_stdout_stream")
def _():
    d = S.dir("shards")
    r = mvl("mix", GOOD_PATH, "--stage", "warmup", "-o", os.path.join(d, "mix-%04d.tar"), "--maxcount", "300", "-q")
    expect_rc(r, 0)
    eq(r.out, b"", "stdout with -o")
    files = sorted(os.listdir(d))
    n = len(full().rows)
    eq(files, ["mix-%04d.tar" % i for i in range((n + 299) // 300)], "shards written")
    eq([len(wds_samples(read(os.path.join(d, f)))) for f in files][:-1], [300] * (len(files) - 1), "maxcount")
    cat = mvl("cat", *[os.path.join(d, f) for f in files])
    expect(cat.out == full().r.out, "the shards differ from the stdout stream")


@check("mix_compressed_stdout_stream")
def _():
    r = mvl("mix", GOOD_PATH, "--stage", "warmup", "--compress", "zst", "-q")
    expect_rc(r, 0)
    eq(r.out[:4], b"\x28\xb5\x2f\xfd", "zstd magic")
    expect(zstd_decompress(r.out) == full().r.out, "decompressed stream differs from the plain one")


@check("mix_from_dir_reads_dir_name_shards")
def _():
    d = S.dir("from")
    fkeys = ["f%03d" % i for i in range(7)]
    write(os.path.join(d, "caps", "x.tar"), tar_bytes(samples_to_members(
        [(k, [("jpg", jpeg(100 + 30 * i, 90, seed=50 + i)), ("txt", ("filtered caption " + words(6)).encode())])
         for i, k in enumerate(fkeys)])))
    write(os.path.join(d, "conv", "y.tar"), read(os.path.join(FIX, "conv", "conv-0.tar")))
    tkeys = ["g%03d" % i for i in range(4)]
    write(os.path.join(d, "text", "z.tar.gz"), gzip.compress(tar_bytes(samples_to_members(
        [(k, [("txt", words(30 + 10 * i).encode())]) for i, k in enumerate(tkeys)])), mtime=0))
    m = run_mix(GOOD_PATH, "warmup", "--from", d, "--budget", "20000")
    eq(sorted({r[2] for r in m.by_source("caps")}), fkeys, "caps keys with --from")
    eq(sorted({r[2] for r in m.by_source("text")}), tkeys, "text keys with --from (.tar.gz)")
    eq(sorted({r[2] for r in m.by_source("conv")}), CONV_KEYS, "conv keys with --from")
    expect("has filters" not in m.r.errtext, "filters warning with --from: %r" % m.r.errtext)
    expect(re.search(r"source 'caps' has filters", full().r.errtext),
           "no warning that caps' filters are not applied without --from: %r" % full().r.errtext)
    # DIR without NAME/: an error naming the source
    os.makedirs(os.path.join(d + "2", "caps"))
    write(os.path.join(d + "2", "caps", "x.tar"), read(os.path.join(d, "caps", "x.tar")))
    r = run_mix(GOOD_PATH, "warmup", "--from", d + "2", rc=1)
    expect(re.search(r"source '(conv|text)'", r.errtext), "no source named in %r" % r.errtext)
    eq(r.out, b"", "stdout of a failed mix")


@check("mix_budget_override")
def _():
    m = run_mix(GOOD_PATH, "warmup", "--budget", "5k", "-q")
    man = m.manifest
    eq(man["budget"], 5000, "manifest budget")
    total = sum(r[3] for r in m.rows)
    eq(man["tokens"], total, "tokens")
    expect(5000 <= total and total - m.rows[-1][3] < 5000, "tokens %d for a 5000 budget" % total)
    # the budget's first samples are the full run's: a shorter budget is a prefix
    eq([k for k, _ in m.samples], [k for k, _ in full().samples][:len(m.samples)], "prefix of the full run")


# ---------------------------------------------------------------------------
# mix: rejects and errors

BADR = """seed: 3
sources:
  caps:
    kind: captions
    shards: caps/*.tar
  bad:
    kind: captions
    shards: bad/bad-0.tar
  none:
    kind: text
    shards: nothing/*.tar
  badconv:
    kind: conversations
    shards: badconv/
tokenizer:
  file: %s
stages:
  - name: rj
    train: all
    seq_len: 512
    tokens: 6000
    mix: {caps: 0.4, bad: 0.3, badconv: 0.3}
  - name: nomatch
    train: all
    seq_len: 512
    tokens: 6000
    mix: {caps: 0.5, none: 0.5}
""" % TIKTOKEN
BADR_PATH = recipe(BADR)


@check("mix_rejects_counted_with_reasons")
def _():
    d = S.dir("rejects")
    rj = os.path.join(d, "rejects.tsv")
    m = run_mix(BADR_PATH, "rj", "--rejects", rj)
    rows = read_rejects(rj)
    want = sorted([(k, "bad", why) for k, why in BAD_WHY.items()] +
                  [(k, "badconv", why) for k, _, why in BADCONV if why])
    got = sorted((k, "bad" if src.endswith("bad-0.tar") else "badconv" if src.endswith("badconv/x.tar") else src,
                  reason.split(".")[-1]) for k, src, reason, _ in rows)
    eq(got, want, "rejected (key, source shard, reason)")
    for k, src, reason, detail in rows:
        expect(detail, "empty detail for %s" % k)
    s = summary(m.r)
    eq(s["in"], s["kept"] + s["rejected"], "summary in = kept + rejected")
    eq(s["kept"], len(m.rows), "summary kept vs samples in the stream")
    eq(s["rejected"], len(rows), "summary rejected vs TSV rows")
    eq(sorted((r.split(".")[-1], n) for r, n in s["reasons"].items()),
       sorted(collections.Counter(w for _, _, w in want).items()), "summary reasons")
    for src, inputs in (("bad", [k for k, _ in BAD]), ("badconv", [k for k, _, _ in BADCONV])):
        rows_s = m.by_source(src)
        rejected = sorted(k for k, s_, _ in want if s_ == src)
        good = sorted(set(inputs) - set(rejected))
        expect(max(r[1] for r in rows_s) >= 3, "%s read fewer than 3 epochs" % src)
        # the first epoch: every input sample kept or rejected, exactly once
        ep1 = sorted(r[2] for r in rows_s if r[1] == 1)
        eq(ep1, good, "epoch 1 of %s: kept keys" % src)
        eq(len(ep1) + len(rejected), len(inputs), "%s epoch 1: kept + rejected = in" % src)
        eq(sorted(r[2] for r in rows_s if r[1] == 2), good, "epoch 2 of %s: kept keys" % src)
        sm = m.src_manifest(src)
        eq(sm["samples_per_epoch"], len(inputs), "%s samples_per_epoch" % src)
        eq(sm["samples"], len(rows_s), "%s samples" % src)
        last = max(r[1] for r in rows_s)
        expect(sm["rejected"] >= len(rejected) * (last - 1), "%s: %d rejected over %d epochs" % (
            src, sm["rejected"], last))
    for s in m.manifest["sources"]:
        w = {"caps": 0.4, "bad": 0.3, "badconv": 0.3}[s["name"]]
        expect(abs(s["share"] - w) <= 0.02, "%s share %.4f" % (s["name"], s["share"]))


def empty_conv_recipe(d, samples):
    write(os.path.join(d, "ec", "x.tar"), tar_bytes(samples_to_members(samples)))
    return recipe("""seed: 1
sources:
  caps: {kind: captions, shards: %s/caps/*.tar}
  ec: {kind: conversations, shards: ec/x.tar}
tokenizer: {file: %s}
stages:
  - {name: a, train: all, seq_len: 512, tokens: 5000, mix: {caps: 0.5, ec: 0.5}}
""" % (FIX, TIKTOKEN), d)


@check("mix_empty_conversation_is_rejected_not_emitted_with_0_tokens")
def _():
    d = S.dir("emptyconv")
    path = empty_conv_recipe(d, [
        ("e0", [("jpg", jpeg(90, 90, seed=1)), ("json", json.dumps(GOODCONV).encode())]),
        ("e1", [("jpg", jpeg(90, 90, seed=2)), ("json", b'{"conversations": []}')])])
    rj = os.path.join(d, "rejects.tsv")
    m = run_mix(path, "a", "--rejects", rj, "-q")
    zero = sorted({"%s/%s" % (r[0], r[2]) for r in m.rows if not r[3]})
    eq(zero, [], "samples emitted with 0 tokens (an empty conversation, its image placed nowhere)")
    eq([k for k, *_ in read_rejects(rj)], ["e1"], "rejected keys")


@check("mix_source_of_empty_conversations_ends_with_an_error")
def _():
    d = S.dir("emptyconv2")
    path = empty_conv_recipe(d, [("e%d" % i, [("jpg", jpeg(40, 40, seed=i)), ("json", b'{"conversations": []}')])
                                 for i in range(3)])
    # --limit bounds the run: without a guard, 0-token samples never bring
    # the source level with its share and the stream never ends
    r = mvl("mix", path, "--stage", "a", "--limit", "3000", "-q")
    n = len(wds_samples(r.out)) if r.rc == 0 else 0
    expect(r.rc == 1, "exit %d after %d samples for a 5000-token budget" % (r.rc, n))
    expect("source 'ec'" in r.errtext, "error does not name 'ec': %r" % r.errtext)


@check("mix_source_matching_nothing_is_an_error")
def _():
    r = run_mix(BADR_PATH, "nomatch", rc=1)
    expect("source 'none'" in r.errtext, "error does not name the source: %r" % r.errtext)
    expect("nothing/" in r.errtext, "error does not show the pattern: %r" % r.errtext)
    eq(r.out, b"", "stdout")
    # recipe check counts its sources too, and fails on it
    r = mvl("recipe", "check", BADR_PATH)
    expect_rc(r, 1)
    expect("'none'" in r.errtext, "recipe check does not name 'none': %r" % r.errtext)


@check("mix_source_with_every_sample_rejected_is_an_error")
def _():
    d = S.dir("allbad")
    write(os.path.join(d, "allbad", "x.tar"), tar_bytes(samples_to_members(
        [("z%d" % i, [("jpg", jpeg(60, 60, seed=i))]) for i in range(4)])))
    write(os.path.join(d, "empty", "x.tar"), b"\0" * 1024)
    t = """seed: 1
sources:
  caps: {kind: captions, shards: %s/caps/*.tar}
  allbad: {kind: captions, shards: allbad/x.tar}
  empty: {kind: text, shards: empty/x.tar}
tokenizer: {file: %s}
stages:
  - {name: a, train: all, seq_len: 512, tokens: 5000, mix: {caps: 0.5, allbad: 0.5}}
  - {name: e, train: all, seq_len: 512, tokens: 5000, mix: {caps: 0.5, empty: 0.5}}
""" % (FIX, TIKTOKEN)
    path = recipe(t, d)
    r = mvl("mix", path, "--stage", "a", timeout=20)
    expect_rc(r, 1)
    expect("source 'allbad'" in r.errtext and "rejected" in r.errtext, "allbad: %r" % r.errtext)
    r = mvl("mix", path, "--stage", "e", timeout=20)
    expect_rc(r, 1)
    expect("source 'empty'" in r.errtext, "empty: %r" % r.errtext)
    r = mvl("recipe", "check", path)
    expect_rc(r, 1)
    for name in ("allbad", "empty"):
        expect(re.search(r"source '%s' has no usable sample" % name, r.errtext), "recipe check on %s: %r" % (
            name, r.errtext))


@check("mix_unknown_stage_is_an_error")
def _():
    r = run_mix(GOOD_PATH, "sft", rc=1)
    expect("'sft'" in r.errtext, "error does not name the stage: %r" % r.errtext)
    eq(r.out, b"", "stdout")
    r = mvl("mix", GOOD_PATH)
    expect_rc(r, 2)


@check("mix_refuses_a_broken_recipe")
def _():
    t = sub(GOOD, "lr: 1e-3", "lr: fast")
    path = recipe(t)
    r = mvl("mix", path, "--stage", "warmup")
    expect_rc(r, 1)
    l, c = pos(t, "fast")
    expect("%s:%d:%d: " % (path, l, c) in r.errtext, "recipe error not shown: %r" % r.errtext)
    eq(r.out, b"", "stdout")


S.finish()
