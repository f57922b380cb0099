"""End-to-end tests of `mvl report RUN_DIR`: one self-contained HTML page
of what a run did.

The run directory is made here the way `mvl run` lays it out: a real
`mvl filter --stats --rejects` over a raw shard of PIL-made samples (clean
ones, exact duplicates, a tiny image, a corrupt one, an empty caption, and
a caption and a key that are HTML), and hand-written JSON for the rest in
the shapes the commands write (mix --manifest, pack --stats, train's
metrics.jsonl, average --report, eval --report).  Checks: the page is one
file with no external references (only data: URIs), every section is
there with an SVG per chart, data is escaped, thumbnails are real images,
the numbers match the inputs, and partial, empty, malformed and missing
run directories behave.  When Debian's chromium is installed the page is
also rendered headless (a PNG, no console errors); otherwise that check is
skipped with a note."""
import sys
sys.dont_write_bytecode = True

import base64
import html.parser
import io
import json
import os
import re
import shutil
import subprocess
import tempfile

from mvltest import (
    Fail, Suite, eq, expect, expect_rc, jpeg, mvl, read, read_rejects, samples_to_members, tar_bytes,
    tmp_leftovers, write,
)

S = Suite("report")
check = S.check

SECTIONS = ["run", "funnel", "examples", "histograms", "mixture", "training", "averaging", "eval"]
HOSTILE = "<script>alert(1)</script>"
EVIL_KEY = 'evil<b>&"k'

# ---------------------------------------------------------------------------
# fixtures


def raw_shard(path):
    """A raw captions shard with dirt each filter of the chain drops."""
    caps = ["a red circle above a blue square", "two small green stars on the left",
            "a large yellow triangle in the centre", "three blue squares at the top",
            "a purple circle to the right of a red star", "one small orange square below a circle"]
    samples = []
    for i, c in enumerate(caps):
        samples.append(("clean%02d" % i, [("jpg", jpeg(160 + 8 * i, 120, seed=i)), ("txt", c.encode())]))
    dup = jpeg(160, 120, seed=0)  # the bytes of clean00 again
    samples.append(("dup01", [("jpg", dup), ("txt", b"a red circle over a blue square")]))
    samples.append(("dup02", [("jpg", dup), ("txt", b"red circle and blue square again")]))
    samples.append(("hostile", [("jpg", jpeg(150, 130, seed=9)), ("txt", HOSTILE.encode())]))
    samples.append((EVIL_KEY, [("jpg", jpeg(140, 140, seed=10)), ("txt", b"hi <i>there</i>")]))
    samples.append(("tiny", [("jpg", jpeg(20, 20, seed=11)), ("txt", b"a tiny picture of a red circle")]))
    samples.append(("corrupt", [("jpg", b"\xff\xd8\xff\xe0 not a jpeg at all" * 3),
                                ("txt", b"a broken image of a square")]))
    samples.append(("empty", [("jpg", jpeg(150, 150, seed=12)), ("txt", b"   ")]))
    samples.append(("nocaption", [("jpg", jpeg(150, 150, seed=13))]))
    write(path, tar_bytes(samples_to_members(samples)))
    return [k for k, _ in samples]


def metrics_lines(steps, start_loss, evals=()):
    lines = []
    for s in range(1, steps + 1):
        lines.append(json.dumps({"step": s, "loss": start_loss * (0.97 ** s), "lr": 1e-3, "grad_norm": 1.5,
                                 "tokens_per_s": 1800.0 + s, "mfu": 0.12}))
        if s in evals:
            lines.append(json.dumps({"step": s, "eval_loss": start_loss * (0.975 ** s) + 0.1}))
    return "\n".join(lines) + "\n"


def eval_doc(base):
    grid = []
    for i, px in enumerate([12544, 50176, 200704]):
        grid.append({"caption_loss": 2.5 - 0.1 * i, "perplexity": 12.0 - i, "retrieval_accuracy": base + 0.05 * i,
                     "caption_exact_match": 0.1 + 0.01 * i, "caption_token_accuracy": 0.4 + 0.02 * i,
                     "qa_accuracy": base - 0.1 + 0.03 * i, "max_pixels": px})
    dflt = {"caption_loss": 2.45, "perplexity": 11.6, "retrieval_accuracy": base + 0.02,
            "caption_exact_match": 0.105, "caption_token_accuracy": 0.41, "qa_accuracy": base - 0.08}
    chosen = {"retrieval_accuracy": {"max_pixels": 200704, "score": base + 0.11, "default_score": base + 0.02},
              "caption_exact_match": {"max_pixels": 200704, "score": 0.12, "default_score": 0.105},
              "qa_accuracy": {"max_pixels": 200704, "score": base - 0.04, "default_score": base - 0.08},
              "caption_loss": {"max_pixels": 200704, "score": 2.31, "default_score": 2.45}}
    return {"dev_grid": grid, "test": {"default": dflt, "default_max_pixels": 50176, "chosen": chosen},
            "retrieval_candidates": 8}


def jwrite(path, doc):
    write(path, (json.dumps(doc, indent=1) + "\n").encode())


def make_run(d, inputs="file"):
    """A complete run directory under d.  The captions filter step's
    "inputs": the raw shard ("file"), its directory relative to d with every
    manifest path relative to d too ("relative": as `mvl run -o run` in d
    writes them), or none (None).  Returns (run_dir, facts)."""
    run = os.path.join(d, "run")
    raw = os.path.join(d, "raw", "captions-000000.tar")
    keys = raw_shard(raw)
    os.makedirs(os.path.join(run, "filter", "captions"))
    chain = "clean,capfilter:min_words=3,imgfilter:min_side=56,dedup"
    r = mvl("filter", chain, "-q", "--stats", os.path.join(run, "filter", "captions.stats.json"),
            "--rejects", os.path.join(run, "filter", "captions.rejects.tsv"),
            "-o", os.path.join(run, "filter", "captions", "%06d.tar"), raw)
    expect_rc(r, 0)
    stats = json.loads(read(os.path.join(run, "filter", "captions.stats.json")))
    rejects = read_rejects(os.path.join(run, "filter", "captions.rejects.tsv"))
    # a second source filtered without --stats histograms and without rejects
    jwrite(os.path.join(run, "filter", "conversations.stats.json"),
           {"chain": "clean", "in": 40, "kept": 39, "dropped": 1,
            "filters": [{"name": "clean", "in": 40, "kept": 39, "dropped": 1,
                         "reasons": {"clean.empty": 1}}]})
    # a third source that dropped nothing (rejects with the header only)
    write(os.path.join(run, "filter", "text.rejects.tsv"), b"key\tsource\treason\tdetail\n")
    # stages: multitask's files are written first, so that only the
    # manifest can put warmup first
    mt = os.path.join(run, "stages", "multitask")
    jwrite(os.path.join(mt, "mix.json"),
           {"stage": "multitask", "seed": 1, "budget": 1048576, "emitted": 5123, "tokens": 1049000,
            "sources": [{"name": "captions", "weight": 0.5, "share": 0.487, "tokens": 510000, "samples": 3000,
                         "epochs": 2.5, "samples_per_epoch": 1200, "shards_opened": 3, "rejected": 0},
                        {"name": "conversations", "weight": 0.3, "share": 0.311, "tokens": 326000,
                         "samples": 1500, "epochs": 1.2, "samples_per_epoch": 1250, "shards_opened": 2,
                         "rejected": 2},
                        {"name": "text", "weight": 0.2, "share": 0.202, "tokens": 213000, "samples": 623,
                         "epochs": 0.8, "samples_per_epoch": 0, "shards_opened": 1, "rejected": 0}]})
    for L, n in ((256, 30), (512, 24)):
        jwrite(os.path.join(mt, "pack-%d.json" % L),
               {"samples": 5123, "sequences": 4200 // (L // 256), "seq_len": L, "tokens": 1049000,
                "padding": 0.0421, "samples_per_sequence": 1.22 * (L // 256), "truncated": 3, "images": 3000,
                "rejected": 0, "packer": "bfd-window"})
        write(os.path.join(mt, "train-%d" % L, "metrics.jsonl"),
              metrics_lines(n, 6.0 + L / 512, evals=(10, 20)).encode())
    jwrite(os.path.join(mt, "average.json"),
           {"weights": [0.5, 0.5], "dev_loss": 2.95,
            "members": [{"name": "train-256/final", "dev_loss": 3.0}, {"name": "train-512/final", "dev_loss": 3.1}],
            "method": "uniform"})
    wu = os.path.join(run, "stages", "warmup")
    jwrite(os.path.join(wu, "mix.json"),
           {"stage": "warmup", "seed": 1, "budget": 262144, "emitted": 2000, "tokens": 262500,
            "sources": [{"name": "captions", "weight": 1.0, "share": 1.0, "tokens": 262500, "samples": 2000,
                         "epochs": 1.7, "samples_per_epoch": 1200, "shards_opened": 3, "rejected": 0}]})
    jwrite(os.path.join(wu, "pack-256.json"),
           {"samples": 2000, "sequences": 1100, "seq_len": 256, "tokens": 262500, "padding": 0.0677,
            "samples_per_sequence": 1.82, "truncated": 0, "images": 2000, "rejected": 0, "packer": "bfd-window"})
    write(os.path.join(wu, "train-256", "metrics.jsonl"), metrics_lines(32, 8.0, evals=(16, 32)).encode())
    jwrite(os.path.join(run, "eval.json"), eval_doc(0.6))
    jwrite(os.path.join(run, "ablation", "eval.json"), eval_doc(0.45))
    fstep = {"name": "filter.captions", "status": "done", "seconds": 1.25,
             "outputs": [os.path.join(run, "filter", "captions.rejects.tsv")]}
    if inputs == "file":
        fstep["inputs"] = [raw]
    elif inputs == "relative":
        fstep["inputs"] = ["raw"]
        fstep["outputs"] = ["run/filter/captions.rejects.tsv"]
    steps = [fstep,
             {"name": "filter.conversations", "status": "done", "seconds": 0.5, "outputs": []},
             {"name": "filter.text", "status": "done", "seconds": 0.1,
              "outputs": [os.path.join(run, "filter", "text.rejects.tsv")]},
             {"name": "tokenizer", "status": "skipped", "seconds": 0, "outputs": []},
             {"name": "mix.warmup", "status": "done", "seconds": 2.0,
              "outputs": [os.path.join(wu, "mix.json")]},
             {"name": "pack.warmup.256", "status": "done", "seconds": 1.0, "outputs": []},
             {"name": "train.warmup.256", "status": "done", "seconds": 30.0, "outputs": []},
             {"name": "mix.multitask", "status": "done", "seconds": 3.0,
              "outputs": [os.path.join(mt, "mix.json")]},
             {"name": "train.multitask.256", "status": "done", "seconds": 60.0, "outputs": []},
             {"name": "train.multitask.512", "status": "done", "seconds": 70.0, "outputs": []},
             {"name": "average.multitask", "status": "done", "seconds": 4.0, "outputs": []},
             {"name": "eval", "status": "failed", "seconds": 9.5, "outputs": []}]
    jwrite(os.path.join(run, "manifest.json"), {"recipe": "recipes/demo.yaml", "steps": steps})
    return run, {"keys": keys, "stats": stats, "rejects": rejects, "raw": raw}


def report(run, *extra, rc=0):
    r = mvl("report", run, *extra)
    expect_rc(r, rc)
    return r


def page(run):
    p = os.path.join(run, "report.html")
    expect(os.path.isfile(p), "no report.html in %s" % run)
    data = read(p)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Fail("report.html is not valid UTF-8: %s" % e)


def sections(text):
    """{section id: its html}."""
    out = {}
    parts = re.split(r'<section id="([a-z0-9_-]+)">', text)
    for i in range(1, len(parts), 2):
        out[parts[i]] = parts[i + 1].split("</section>")[0]
    return out


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Structure(html.parser.HTMLParser):
    """Tag balance and every URL-bearing attribute."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.urls, self.tags, self.imgs = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "action", "srcset", "poster", "data", "background") or \
                    (v and "url(" in v):
                self.urls.append((tag, k, v or ""))
        if tag == "img":
            self.imgs.append(dict(attrs))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID and self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append("</%s> closes <%s> at %s" % (tag, self.stack[-1] if self.stack else "nothing",
                                                            self.getpos()))
            if tag in self.stack:
                while self.stack.pop() != tag:
                    pass
        else:
            self.stack.pop()


def structure(text):
    p = Structure()
    p.feed(text)
    p.close()
    return p


def expect_self_contained(text):
    p = structure(text)
    expect(not p.errors, "unbalanced tags: %s" % p.errors[:3])
    eq(p.stack, [], "elements left open at the end")
    for tag, k, v in p.urls:
        expect(v.startswith("data:") or v.startswith("#"),
               "<%s %s=%r...> refers outside the page" % (tag, k, v[:60]))
    for t in ("script", "link", "iframe", "object", "embed", "base"):
        expect(t not in p.tags, "the page has a <%s> element" % t)
    style = "".join(re.findall(r"<style>(.*?)</style>", text, re.S))
    expect("url(" not in style and "@import" not in style and "@font-face" not in style,
           "the CSS loads something")
    return p


# ---------------------------------------------------------------------------
# a complete run

FULL = S.dir("full")
RUN = FACTS = None
TEXT = ""


@check("report_writes_one_file")
def _():
    global RUN, FACTS, TEXT
    RUN, FACTS = make_run(FULL)
    before = set(os.listdir(RUN))
    r = report(RUN)
    eq(set(os.listdir(RUN)) - before, {"report.html"}, "files added to the run directory")
    eq(tmp_leftovers(RUN), [], "temporary files left")
    expect(b"report.html" in r.err, "stderr does not say where the page went: %r" % r.err[:200])
    TEXT = page(RUN)
    expect(TEXT.startswith("<!DOCTYPE html>"), "no doctype")
    expect(len(TEXT) < 2_000_000, "the page is %d bytes" % len(TEXT))


@check("page_is_self_contained")
def _():
    p = expect_self_contained(TEXT)
    expect(len(p.imgs) >= 5, "only %d thumbnails" % len(p.imgs))


@check("every_section_with_its_charts")
def _():
    sec = sections(TEXT)
    eq([s for s in SECTIONS if s not in sec], [], "sections missing")
    for s in SECTIONS:
        expect(re.search(r'href="#%s"' % s, TEXT), "no contents link to #%s" % s)
    want = {"funnel": 3, "histograms": 5, "mixture": 2, "training": 2, "eval": 1}
    for s, n in want.items():
        got = sec[s].count("<svg")
        expect(got >= n, "section %s: %d SVG charts, expected at least %d" % (s, got, n))
        eq(sec[s].count("<svg"), sec[s].count("</svg>"), "section %s: SVG elements closed" % s)
    # charts carry their data: bars and lines
    expect("<rect" in sec["funnel"] and "<rect" in sec["mixture"], "bar charts without bars")
    expect("<polyline" in sec["training"] and "<circle" in sec["training"], "loss chart without lines/points")


@check("captions_and_keys_escaped")
def _():
    expect(HOSTILE not in TEXT, "the hostile caption appears unescaped")
    expect("&lt;script&gt;alert(1)&lt;/script&gt;" in TEXT, "the hostile caption is not shown escaped")
    expect(EVIL_KEY not in TEXT, "the hostile key appears unescaped")
    expect("evil&lt;b&gt;&amp;&quot;k" in TEXT, "the hostile key is not shown escaped")
    expect("<script" not in TEXT.lower(), "a <script appears in the page")


@check("thumbnails_are_small_jpegs")
def _():
    from PIL import Image
    p = structure(TEXT)
    for a in p.imgs:
        m = re.match(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)$", a.get("src", ""))
        expect(m, "img src is not a base64 JPEG data URI: %r" % a.get("src", "")[:60])
        im = Image.open(io.BytesIO(base64.b64decode(m.group(1))))
        im.load()
        expect(max(im.size) <= 96, "thumbnail %s is larger than 96 px" % (im.size,))
        eq((int(a["width"]), int(a["height"])), im.size, "img width/height attributes")


@check("funnel_matches_stats")
def _():
    sec = sections(TEXT)["funnel"]
    st = FACTS["stats"]
    eq(st["in"], len(FACTS["keys"]), "fixture: samples into the filter")
    for f in st["filters"]:
        for reason, n in f["reasons"].items():
            expect(reason in sec, "reason %s not in the funnel" % reason)
    expect(">%d</td>" % st["in"] in sec and ">%d</td>" % st["kept"] in sec, "in/kept counts not in the table")
    expect("clean.empty" in sec and "conversations" in sec, "the second source is not in the funnel")
    expect(re.search(r"<h3>text</h3>\s*<p class=\"missing\">No filter chain", sec),
           "the source without filters is not said to have none")
    expect("text.stats.json" not in TEXT, "a source without filters is listed as missing its stats")
    reasons = {r for _, _, r, _ in FACTS["rejects"]}
    for want in ("capfilter.too_few_words", "imgfilter.too_small", "clean.empty", "clean.no_text"):
        expect(want in reasons, "fixture: nothing dropped as %s (%s)" % (want, sorted(reasons)))


@check("examples_show_dropped_samples")
def _():
    sec = sections(TEXT)["examples"]
    for r in ("capfilter.too_few_words", "imgfilter.too_small"):
        expect("<code>%s</code>" % r in sec, "no examples of %s" % r)
    expect("a tiny picture of a red circle" in sec, "the tiny image's caption is not shown")
    expect("(no caption)" in sec, "the sample without a caption does not say so")
    # the corrupt image is dropped; its card says why instead of a picture
    expect("corrupt" in sec, "the corrupt sample is not among the examples")
    dedup = [r for r in FACTS["rejects"] if r[2].startswith("dedup.")]
    if dedup:
        expect("Duplicate cluster of <code>clean00</code>" in sec, "no duplicate cluster led by clean00")
        expect("dup01" in sec and "dup02" in sec, "the duplicates are not shown in their cluster")
    expect(re.search(r"<h3>text</h3>\s*<p>Nothing was dropped", sec), "text: no 'Nothing was dropped'")
    missing = sections(TEXT)["examples"]
    expect("conversations.rejects.tsv" in missing, "the missing rejects of conversations are not mentioned")


@check("examples_fall_back_on_rejects_sources")
def _():
    d = S.dir("noinputs")
    run, _ = make_run(d, inputs=None)
    report(run)
    sec = sections(page(run))["examples"]
    expect("data:image/jpeg;base64," in sec, "no thumbnails from the rejects' source files")
    os.unlink(os.path.join(d, "raw", "captions-000000.tar"))
    report(run)
    text = page(run)
    sec = sections(text)["examples"]
    expect("data:image" not in sec, "thumbnails without raw shards?")
    expect("tiny" in sec and "imgfilter.too_small" in sec, "keys and reasons not shown without the shards")
    expect("no filter step with &quot;inputs&quot;" in text, "the missing raw shards are not mentioned")


@check("relative_manifest_paths_resolve_from_elsewhere")
def _():
    d = S.dir("relative")
    run, _ = make_run(d, inputs="relative")
    expect_rc(mvl("report", run, cwd="/"), 0)
    sec = sections(page(run))["examples"]
    expect("data:image/jpeg;base64," in sec, "no thumbnails from the raw directory named relative to the run's cwd")
    expect("source column" not in sec, "fell back on the rejects' sources although the manifest names inputs")


@check("histograms_from_stats")
def _():
    sec = sections(TEXT)["histograms"]
    for what in ("caption length (words)", "caption length (characters)", "image shorter side (px)",
                 "aspect ratio"):
        expect(what in sec, "no %s histogram" % what)
    h = list(FACTS["stats"]["filters"][0]["histograms"]["caption_words"].items())
    while h and h[-1][1] == 0:  # empty buckets at the end are left out
        h.pop()
    expect(len(h) > 3, "fixture: caption words in only %d buckets" % len(h))
    for label, n in h:
        expect(">%s</text>" % label in sec, "histogram label %s missing" % label)
    expect("has no histograms" in sec, "the source without histograms is not mentioned")


@check("mixture_requested_vs_realized")
def _():
    sec = sections(TEXT)["mixture"]
    for v in ("50.0%", "48.7%", "30.0%", "31.1%", "20.0%", "20.2%"):
        expect(v in sec, "%s not in the mixture section" % v)
    expect(sec.index("<h3>warmup</h3>") < sec.index("<h3>multitask</h3>"),
           "stages not in the manifest's order")
    tr = sections(TEXT)["training"]
    expect(tr.index("<h3>warmup</h3>") < tr.index("<h3>multitask</h3>"), "training not in stage order")
    expect("seq 256" in tr and "seq 512" in tr, "loss curves for both lengths not labelled")
    expect("4.2%" in tr, "padding not shown")


@check("eval_and_averaging_tables")
def _():
    ev = sections(TEXT)["eval"]
    expect("recipe: dev-chosen" in ev and "ablation (raw): dev-chosen" in ev, "recipe and ablation not side by side")
    expect("0.7100" in ev and "0.5600" in ev, "chosen test retrieval scores missing")
    expect("+0.1500" in ev, "recipe minus ablation on retrieval missing")
    expect("200,704" in ev and "50,176" in ev, "max-pixel settings missing")
    expect("chance is 0.1250" in ev, "retrieval chance missing")
    av = sections(TEXT)["averaging"]
    expect("train-256/final" in av and "3.1000" in av and "2.9500" in av, "averaging table incomplete")
    expect("-0.0500" in av, "the averaging gain against the best member is missing")
    run = sections(TEXT)["run"]
    expect("12 steps: 10 done, 1 failed, 1 skipped" in run, "step summary wrong")
    expect('class="l failed"' in run, "the failed step is not marked")


@check("output_option")
def _():
    out = os.path.join(S.dir("out"), "r.html")
    report(RUN, "-q", "-o", out, "--examples", "0")
    text = read(out).decode()
    expect("Not shown (--examples 0)" in text and "data:image" not in text, "--examples 0 still shows images")
    expect_self_contained(text)


# ---------------------------------------------------------------------------
# partial, empty, broken, missing


@check("partial_run_only_manifest")
def _():
    run = os.path.join(S.dir("partial"), "run")
    jwrite(os.path.join(run, "manifest.json"),
           {"recipe": "r.yaml", "steps": [{"name": "filter.captions", "status": "failed", "seconds": 0.3,
                                           "outputs": []}]})
    report(run)
    text = page(run)
    expect_self_contained(text)
    sec = sections(text)
    eq([s for s in SECTIONS if s not in sec], [], "sections missing from a partial report")
    expect("Missing or unreadable inputs" in text, "no list of what is missing")
    for what in ("filter/", "stages/", "eval.json"):
        expect(what in text.split("</details>")[0], "the missing list does not mention %s" % what)
    for s in ("funnel", "mixture", "training", "averaging", "eval"):
        expect('class="missing"' in sec[s], "section %s does not say what is missing" % s)
    expect("filter.captions" in sec["run"], "the manifest's step is not shown")


@check("empty_run_dir")
def _():
    run = S.dir("empty")
    report(run)
    text = page(run)
    expect_self_contained(text)
    expect("manifest.json: missing" in text, "the missing manifest is not mentioned")


@check("malformed_inputs_do_not_stop_the_report")
def _():
    run = os.path.join(S.dir("bad"), "run")
    write(os.path.join(run, "manifest.json"), b'{"recipe": 3, "steps": [{"name": 5, "status": null, '
                                              b'"seconds": "x", "outputs": "no"}, 7, {"name": "filter.a", '
                                              b'"inputs": [1, null, "nonexistent.tar"]}]}')
    jwrite(os.path.join(run, "filter", "a.stats.json"),
           {"chain": 5, "in": "many", "kept": None, "filters": [3, {"name": "x", "reasons": {"x.r": "n"},
                                                                   "histograms": {"caption_words": [1, 2]}}]})
    write(os.path.join(run, "filter", "a.rejects.tsv"),
          b"key\tsource\treason\tdetail\nk1\tnonexistent.tar\tx.r\tbad \\t\\n\\\\ detail\nonly-one-column\n"
          b"k2\t\tdedup.exact_image\tduplicate of 'k0\n")
    write(os.path.join(run, "filter", "b.stats.json"), b"{not json")
    write(os.path.join(run, "stages", "s1", "mix.json"), b"[1, 2]")
    write(os.path.join(run, "stages", "s1", "pack-128.json"), b"")
    write(os.path.join(run, "stages", "s1", "train-128", "metrics.jsonl"),
          b'{"step": 1, "loss": 5}\n{"step": 2, "loss": "x"}\ngarbage\n{"step": 3, "eval_loss": NaN}\n'
          b'{"step": 3, "loss": 4.5}\n{"step": 4, "lo')
    write(os.path.join(run, "stages", "s1", "average.json"), b'{"weights": "w", "members": [{"name": 1}]}')
    # values that break naive axes: beyond double precision steps, constant, a single point
    write(os.path.join(run, "stages", "s2", "train-64", "metrics.jsonl"),
          b'{"step": 1, "loss": 1e20}\n{"step": 2, "loss": 1.0000000000000003e20}\n')
    write(os.path.join(run, "stages", "s2", "train-32", "metrics.jsonl"),
          b'{"step": 1, "loss": 1}\n{"step": 1e300, "loss": -1e300}\n')
    write(os.path.join(run, "stages", "s2", "train-128", "metrics.jsonl"),
          b'{"step": 5, "loss": 2}\n{"step": 5, "eval_loss": 2}\n')
    write(os.path.join(run, "eval.json"), b'{"dev_grid": [{"max_pixels": "x"}, 3], "test": []}')
    write(os.path.join(run, "ablation", "eval.json"), b"")
    report(run)
    text = page(run)
    expect_self_contained(text)
    expect("unreadable" in text, "unreadable inputs are not reported")


@check("missing_run_dir_exits_1")
def _():
    r = mvl("report", os.path.join(S.tmp, "no-such-run"))
    expect_rc(r, 1)
    expect(b"cannot open" in r.err and b"no-such-run" in r.err, "stderr does not name the directory: %r" % r.err)
    f = write(os.path.join(S.dir("file"), "plain"), b"x")
    expect_rc(mvl("report", f), 1)
    expect_rc(mvl("report"), 2)
    expect_rc(mvl("report", RUN, "--thumb", "0"), 2)


# ---------------------------------------------------------------------------
# a browser


def chromium():
    for name in ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


CHROMIUM = chromium()
if CHROMIUM is None:
    print("# skip chromium_renders_page: chromium is not installed (Debian package 'chromium')", flush=True)
else:
    @check("chromium_renders_page")
    def _():
        shot = os.path.join(S.dir("shot"), "page.png")
        profile = tempfile.mkdtemp(prefix="mvl-chromium-", dir=S.tmp)
        p = subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                            "--user-data-dir=" + profile, "--window-size=1200,4000",
                            "--screenshot=" + shot, "--enable-logging=stderr", "--v=0",
                            "file://" + os.path.join(RUN, "report.html")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        err = p.stderr.decode("utf-8", "replace")
        expect(os.path.isfile(shot) and os.path.getsize(shot) > 1000,
               "no screenshot (exit %d): %s" % (p.returncode, err[-400:]))
        bad = [l for l in err.splitlines() if "Uncaught" in l or "ERROR:CONSOLE" in l or "CONSOLE(" in l]
        eq(bad, [], "console errors")
        from PIL import Image
        im = Image.open(shot)
        expect(len(set(im.convert("L").resize((64, 256)).getdata())) > 4, "the screenshot is blank")

S.finish()
