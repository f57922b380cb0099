"""test_tok.py: mvl's tokenizer against tiktoken itself (the npm package,
the Rust core compiled to WASM, run under node) on a multilingual corpus:
the ids must be identical, token for token, for gpt2 and cl100k_base.

The rank files come from that package (scripts/tok/export_ranks.js checks
them against OpenAI's published SHA-256); the reference ids are made at
test time by scripts/tok/ref_encode.js.  Needs node and tests/node's
node_modules, which scripts/deps.sh installs (npm ci)."""
import os
import random
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mvltest import MVL, ROOT, Suite, eq, expect, mvl  # noqa: E402

S = Suite("tok")
check = S.check
NODE = "node"
RANKS = S.dir("ranks")


def node(*args, input=None, timeout=300):
    p = subprocess.run([NODE, *args], input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, cwd=ROOT)
    if p.returncode != 0:
        raise AssertionError("node %s failed: %s" % (" ".join(args), p.stderr.decode()[-400:]))
    return p.stdout


def corpus_text():
    """Lines covering what tokenizers get wrong: scripts, emoji sequences,
    code, digit and whitespace runs, contractions in both cases, CRLF."""
    rng = random.Random(5)
    parts = [
        "Hello world! It's a test: don't, can't, WE'LL see, I'M here, they'RE gone, she'D go.",
        "The quick brown fox jumps over the lazy dog 1234567890 times.",
        "中文字符测试，这是一个关于分词器的句子。日本語のテキストです、カタカナとひらがな。",
        "Привет, мир! Как дела? Съешь же ещё этих мягких французских булок.",
        "مرحبا بالعالم، هذا اختبار للنص العربي مع الأرقام ١٢٣ و 456.",
        "नमस्ते दुनिया, यह एक परीक्षण वाक्य है।  สวัสดีชาวโลก ภาษาไทย",
        "👨\u200d👩\u200d👧\u200d👦 family 👍🏽 👍🏿 thumbs 🇫🇷🇩🇪 flags 🏳️\u200d🌈 ❤️\u200d🔥",
        "int main(void) {\n\treturn printf(\"%d\\n\", 42);\n}",
        "def f(x):\n    return {'a': [1, 2, 3], \"b\": None}  # comment",
        '{\n  "key": "value",\n  "list": [1, 2.5e-3, true, null]\n}',
        "0" * 50 + " " + "1234567" * 9,
        "tabs\t\tand   spaces    and\u00a0nbsp\u3000ideographic\u2003em",
        "line one\r\nline two\r\n\r\nline four\n\n\n",
        "caf\u00e9 vs cafe\u0301, na\u00efve, \u212b, \ufb01ne, Ａ full width",
        "!!! ??? ... --- *** ((( ))) <<< >>> ''' \"\"\" ``` ~~~ @@@ ### $$$ %%%",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𐍈 non-BMP 𠀀𠀁",
        "  leading spaces and trailing spaces   ",
        "MiXeD CaSe 'S 'T 'Re 'VE 'M 'LL 'D contractions",
    ]
    lines = []
    for i in range(3000):
        k = rng.randint(1, 4)
        lines.append(" ".join(rng.choice(parts) for _ in range(k)))
    return "\n".join(lines)


@check("export_ranks_from_npm_tiktoken")
def _():
    out = node("scripts/tok/export_ranks.js", RANKS, "--encodings", "gpt2,cl100k_base,o200k_base", "--quiet")
    for e in ("gpt2", "cl100k_base", "o200k_base"):
        expect(os.path.getsize(os.path.join(RANKS, e + ".tiktoken")) > 100000, "%s ranks missing" % e)


CORPUS = os.path.join(S.dir("corpus"), "corpus.txt")
with open(CORPUS, "w", encoding="utf-8", newline="") as f:
    f.write(corpus_text())


def ours(enc, *args, input=None):
    r = mvl("tok", "encode", "--tiktoken", os.path.join(RANKS, enc + ".tiktoken"), "--encoding", enc, *args,
            input=input, timeout=300)
    eq(r.rc, 0, "mvl tok encode exit status")
    return r.out


for enc in ("gpt2", "cl100k_base", "o200k_base"):
    @check("ids_identical_to_tiktoken_lines_%s" % enc)
    def _(enc=enc):
        want = node("scripts/tok/ref_encode.js", "--encoding", enc, "--lines", CORPUS)
        got = ours(enc, "--lines", CORPUS)
        gl, wl = got.split(b"\n"), want.split(b"\n")
        bad = [i for i, (a, b) in enumerate(zip(gl, wl)) if a != b]
        expect(len(gl) == len(wl) and not bad, "%d of %d lines differ (first: line %s)" % (
            len(bad) + abs(len(gl) - len(wl)), len(wl), bad[:3]))

    @check("ids_identical_to_tiktoken_whole_document_%s" % enc)
    def _(enc=enc):
        # newlines and CRLF inside one text: the \s*[\r\n]+ paths
        d = S.dir("doc")
        lines = open(CORPUS, encoding="utf-8").read().split("\n")[:400]
        doc = os.path.join(d, "doc.txt")
        # one document per 'line' of the reference: join with a marker line
        with open(doc, "w", encoding="utf-8", newline="") as f:
            f.write("\r\n".join(lines))
        want = node("scripts/tok/ref_encode.js", "--encoding", enc, "--whole", doc)
        got = ours(enc, doc)
        eq(got.strip(), want.strip(), "whole-document ids")

    @check("decode_round_trip_%s" % enc)
    def _(enc=enc):
        data = open(CORPUS, "rb").read()
        ids = ours(enc, CORPUS)
        r = mvl("tok", "decode", "--tiktoken", os.path.join(RANKS, enc + ".tiktoken"), "--encoding", enc,
                input=ids, timeout=300)
        eq(r.rc, 0, "decode exit status")
        expect(r.out == data, "decode(encode(x)) != x (%d vs %d bytes)" % (len(r.out), len(data)))


@check("random_bytes_round_trip")
def _():
    rng = random.Random(9)
    data = bytes(rng.randrange(256) for _ in range(200000))  # mostly invalid UTF-8
    ids = ours("cl100k_base", input=data)
    r = mvl("tok", "decode", "--tiktoken", os.path.join(RANKS, "cl100k_base.tiktoken"), input=ids)
    expect(r.out == data, "random bytes did not round trip")


@check("long_piece_linear_time")
def _():
    # 1 MB without a pre-token boundary: tiktoken's merge loop is quadratic
    import time
    for piece in (b"a" * 1000000, "\U0001F44D".encode() * 250000):
        t0 = time.time()
        ids = ours("cl100k_base", input=piece)
        dt = time.time() - t0
        expect(dt < 10, "a 1 MB piece took %.1f s" % dt)
        expect(len(ids.split()) > 1000, "suspiciously few ids")


@check("long_piece_ids_identical_to_tiktoken")
def _():
    d = S.dir("long")
    p = os.path.join(d, "w.txt")
    with open(p, "w", encoding="utf-8") as f:
        f.write("\n".join(["a" * 5000, "\U0001F44D" * 3000, "ab" * 4000, "\U0001F1EB\U0001F1F7" * 2000, "x1" * 3000]))
    for enc in ("gpt2", "cl100k_base"):
        eq(ours(enc, "--lines", p), node("scripts/tok/ref_encode.js", "--encoding", enc, "--lines", p),
           "%s ids of long pieces" % enc)


@check("bad_rank_files_rejected_with_line")
def _():
    d = S.dir("bad")
    good = open(os.path.join(RANKS, "gpt2.tiktoken"), "rb").read().split(b"\n")
    cases = {
        "dup_token": b"\n".join(good[:300] + [good[5].split(b" ")[0] + b" 99999"] + good[300:]),
        "bad_base64": b"\n".join(good[:10] + [b"!!notbase64 10"] + good[11:]),
        "no_rank": b"\n".join(good[:10] + [b"QUJD"] + good[11:]),
        "missing_bytes": b"\n".join(good[100:]),
    }
    for name, data in cases.items():
        p = os.path.join(d, name + ".tiktoken")
        open(p, "wb").write(data)
        r = mvl("tok", "encode", "--tiktoken", p, "--encoding", "gpt2", input=b"hello")
        expect(r.rc == 2 and (b"line" in r.err or b"byte" in r.err) and name.encode() in p.encode(),
               "%s: rc %d, stderr %r" % (name, r.rc, r.err[-200:]))


@check("hf_tokenizer_json_ids_identical")
def _():
    # the same tokenizers written as Hugging Face tokenizer.json: GPT-2 with
    # a ByteLevel pre-tokenizer and "a b" merges; cl100k with Split(Regex) +
    # ByteLevel and ["a", "b"] merges
    import json
    d = S.dir("hf")
    lines = os.path.join(d, "lines.txt")
    with open(CORPUS, encoding="utf-8") as f:
        open(lines, "w", encoding="utf-8").write("\n".join(f.read().split("\n")[:800]))
    for enc, extra in (("gpt2", []), ("cl100k_base", ["--merges-format", "pair", "--pattern",
                                                      json.load(open(os.path.join(RANKS, "cl100k_base.json")))["pat_str"]])):
        hf = os.path.join(d, enc + ".json")
        p = subprocess.run(["/usr/bin/python3", "scripts/tok/tiktoken_to_hf.py", os.path.join(RANKS, enc + ".tiktoken"),
                            hf, *extra], cwd=ROOT, stderr=subprocess.PIPE, timeout=120)
        eq(p.returncode, 0, "conversion: %s" % p.stderr[-300:])
        r = mvl("tok", "encode", "--hf", hf, "--lines", lines, timeout=300)
        eq(r.rc, 0, "mvl tok encode --hf exit status")
        eq(r.out, node("scripts/tok/ref_encode.js", "--encoding", enc, "--lines", lines), "%s ids via tokenizer.json" % enc)
    bad = os.path.join(d, "bad.json")
    open(bad, "w").write('{"model": {"type": "Unigram"}}')
    r = mvl("tok", "encode", "--hf", bad, input=b"x")
    expect(r.rc == 2 and b"Unigram" in r.err, "non-BPE tokenizer.json: rc %d %r" % (r.rc, r.err))
    open(bad, "w").write('{"model": {"type": "BPE", "vocab": {"a": 0}, ')
    r = mvl("tok", "encode", "--hf", bad, input=b"x")
    expect(r.rc == 2 and b"line" in r.err, "truncated tokenizer.json: rc %d %r" % (r.rc, r.err))


@check("hf_normalizers_applied")
def _():
    # Qwen2's tokenizer.json normalizes to NFC: decomposed input must give
    # the ids of the composed text; NFKC folds compatibility forms; a
    # normalizer mvl cannot apply is refused by name, never ignored
    import json
    d = S.dir("hfnorm")
    base = os.path.join(d, "gpt2.json")
    p = subprocess.run(["/usr/bin/python3", "scripts/tok/tiktoken_to_hf.py", os.path.join(RANKS, "gpt2.tiktoken"), base],
                       cwd=ROOT, stderr=subprocess.PIPE, timeout=120)
    eq(p.returncode, 0, "conversion: %s" % p.stderr[-300:])
    tj = json.load(open(base))

    def with_norm(name, norm):
        tj["normalizer"] = norm
        path = os.path.join(d, name + ".json")
        json.dump(tj, open(path, "w"))
        return path

    def ids(path, text):
        r = mvl("tok", "encode", "--hf", path, "--special-mode", "ordinary", input=text.encode())
        eq(r.rc, 0, "encode with %s: %r" % (path, r.err[-200:]))
        return r.out

    plain = with_norm("none", None)
    nfc = with_norm("nfc", {"type": "NFC"})
    nfkc = with_norm("nfkc", {"type": "Sequence", "normalizers": [{"type": "NFKC"}]})
    nfd = with_norm("nfd", {"type": "NFD"})
    composed, decomposed = "caf\u00e9 \u00c5ngstr\u00f6m", "cafe\u0301 A\u030angstro\u0308m"
    expect(ids(plain, composed) != ids(plain, decomposed), "the two spellings differ without a normalizer")
    eq(ids(nfc, decomposed), ids(plain, composed), "NFC: decomposed text gets the composed ids")
    eq(ids(nfd, composed), ids(plain, decomposed), "NFD: composed text gets the decomposed ids")
    eq(ids(nfkc, "\ufb01le \uff21\u2460"), ids(plain, "file A1"), "NFKC: ligature, fullwidth, circled digit folded")
    eq(ids(nfc, "plain ascii"), ids(plain, "plain ascii"), "NFC leaves ASCII alone")
    r = mvl("tok", "encode", "--hf", nfc, "--special-mode", "ordinary", input=b"a\xffb")
    eq(r.out, ids(plain, "a\ufffdb"), "invalid UTF-8 under a normalizer becomes U+FFFD")
    bad = with_norm("lower", {"type": "Lowercase"})
    r = mvl("tok", "encode", "--hf", bad, input=b"x")
    expect(r.rc == 2 and b"Lowercase" in r.err and b"lower.json" in r.err, "Lowercase refused by name: rc %d %r" % (r.rc, r.err))
    bad = with_norm("seq2", {"type": "Sequence", "normalizers": [{"type": "NFC"}, {"type": "Lowercase"}]})
    r = mvl("tok", "encode", "--hf", bad, input=b"x")
    expect(r.rc == 2 and b"Sequence" in r.err, "a two-step Sequence refused: rc %d %r" % (r.rc, r.err))


@check("special_tokens_allow_disallow_ordinary")
def _():
    text = b"a <|endoftext|> b <|fim_prefix|>c"
    R = os.path.join(RANKS, "cl100k_base.tiktoken")
    r = mvl("tok", "encode", "--tiktoken", R, input=text)
    expect(r.rc == 1 and b"<|endoftext|>" in r.err, "disallowed special: rc %d %r" % (r.rc, r.err[-200:]))
    r = mvl("tok", "encode", "--tiktoken", R, "--special-mode", "allow", input=text)
    ids = [int(x) for x in r.out.split()]
    expect(100257 in ids and 100258 in ids, "allowed specials missing: %s" % ids)
    r2 = mvl("tok", "encode", "--tiktoken", R, "--special-mode", "ordinary", input=text)
    want = node("scripts/tok/ref_encode.js", "--encoding", "cl100k_base", "--whole", "-", input=text)
    eq(r2.out.strip(), want.strip(), "special text as ordinary text")


@check("count_and_stream_encode_on_samples")
def _():
    import io
    import tarfile
    d = S.dir("stream")
    caps = ["a photo of a cat", "猫が寝ている", "x" * 300, "👍🏽 ok"]
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w") as t:
        for i, c in enumerate(caps):
            data = c.encode()
            ti = tarfile.TarInfo("%03d.txt" % i)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    tarp = os.path.join(d, "in.tar")
    open(tarp, "wb").write(bio.getvalue())
    R = os.path.join(RANKS, "cl100k_base.tiktoken")
    txt = os.path.join(d, "caps.txt")
    open(txt, "w", encoding="utf-8").write("\n".join(caps))
    ref = [l.split() for l in node("scripts/tok/ref_encode.js", "--encoding", "cl100k_base", "--lines",
                                   txt).decode().split("\n")[:len(caps)]]
    r = mvl("tok", "count", "--tiktoken", R, tarp)
    got = [l.split("\t") for l in r.out.decode().strip().split("\n")]
    eq(got, [["%03d" % i, str(len(x))] for i, x in enumerate(ref)], "token counts")
    expect(b"tokens in 4 samples" in r.err, "total line missing: %r" % r.err)
    r = mvl("tok", "encode", "--stream", "--format", "jsonl", "--tiktoken", R, "-j", "2", tarp)
    import json
    rows = [json.loads(l) for l in r.out.decode().strip().split("\n")]
    eq([row["ids"] for row in rows], [[int(v) for v in x] for x in ref], "stream ids")


@check("train_writes_loadable_tokenizer_same_ids")
def _():
    import json
    d = S.dir("train")
    out = os.path.join(d, "tok")
    r = mvl("tok", "train", "--vocab", "600", "--special", "<|image_pad|>,<|im_start|>", "-o", out, CORPUS,
            timeout=300)
    eq(r.rc, 0, "train exit status: %r" % r.err[-300:])
    meta = json.load(open(out + ".json"))
    eq(meta["special_tokens"], {"<|image_pad|>": 600, "<|im_start|>": 601}, "specials after the vocabulary")
    a = mvl("tok", "encode", "--tiktoken", out + ".tiktoken", "--lines", CORPUS, timeout=300)
    b = mvl("tok", "encode", "--hf", out + ".tokenizer.json", "--lines", CORPUS, timeout=300)
    eq(a.rc, 0, "encode with the trained rank file")
    eq(b.out, a.out, "tokenizer.json export gives the same ids")
    ids = [int(x) for x in a.out.split()]
    expect(max(ids) < 600 and len(set(ids)) > 200, "vocabulary used: max %d, distinct %d" % (max(ids), len(set(ids))))
    # deterministic
    r2 = mvl("tok", "train", "--vocab", "600", "--special", "<|image_pad|>,<|im_start|>", "-o", out + "2", CORPUS,
             timeout=300)
    expect(open(out + ".tiktoken", "rb").read() == open(out + "2.tiktoken", "rb").read(), "training is not deterministic")


S.finish()
