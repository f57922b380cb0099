"""test_nasty_model.py: the commands that read a checkpoint (eval, score,
generate, average, train --init / --resume) over hostile checkpoints,
tokenizers and held-out data (issue 10, "Hardening").

A tiny real checkpoint (micro preset, synthetic, two steps) and a tokenizer
are made first; every hostile variant is derived from them here, at run
time: model.safetensors cut, zero bytes, with a header length of 2^63, a
header that is not JSON, not an object or nested deep, tensors of another
shape, dtype or count, data_offsets out of range, reversed or overlapping,
NaN and Inf weights; a model config (the file's __metadata__ "config",
where mvl keeps it) missing, malformed, of another preset, of absurd
sizes; checkpoint paths that are empty directories, files, symlink loops,
devices or nothing; tokenizers missing, garbage, or larger than the model;
average over members that disagree, a damaged member, bad weights; a
resumed run whose state.json or optim.safetensors lies.

For each: no death by signal, no sanitizer report, exit status 1 for bad
input and 2 for bad usage, a message on stderr that names the file and
says why, nothing left behind that looks complete (average -o, eval
--report, score -o, a checkpoint of the failed run), and bounded memory
where a file claims huge sizes.  Eval and score over hostile samples
account for every sample: score's summary in = kept + rejected, eval's
report counts the samples it could not use, by reason."""
import sys
sys.dont_write_bytecode = True

import json
import math
import os
import re
import shutil
import struct

from mvltest import (Fail, Suite, eq, expect, expect_rc, jpeg, mvl, read, summary,
                     tar_bytes, tmp_leftovers, wds_samples, write)

# an OpenMP pool spinning on 2 loaded cores costs 100x (test_train.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

S = Suite("nasty_model")
check = S.check
T = 20          # seconds one run over one hostile input may take
MB = 1024       # ru_maxrss is in KiB
RSS_LIMIT = (600 if os.environ.get("MVL_SANITIZED") else 200) * MB
VOCAB = 320     # the model's; the tokenizer has 306 ids (its specials included)

W = S.dir("work")
TOK = os.path.join(W, "tok")
TOKF = TOK + ".tiktoken"
RUN = os.path.join(W, "run")
GOOD = os.path.join(RUN, "step-00000002")
IMG = os.path.join(W, "img.jpg")
EV = os.path.join(W, "ev.tar")


def train(*args, timeout=60):
    return mvl("train", "--preset", "micro", "-q", "-j2", "--vocab", VOCAB, *args, timeout=timeout)


@check("setup_checkpoint_tokenizer_data")
def _():
    text = write(os.path.join(W, "corpus.txt"),
                 b"a photo of a small red cat sitting on a wooden table\n" * 50 +
                 b"a sunny beach with palm trees and an old locomotive crossing a bridge\n" * 20)
    expect_rc(mvl("tok", "train", "--vocab", "300", "-o", TOK, text, timeout=60), 0)
    expect_rc(train("--synthetic", "--steps", 2, "-o", RUN), 0)
    for f in ("model.safetensors", "optim.safetensors", "state.json"):
        expect(os.path.exists(os.path.join(GOOD, f)), "no %s in %s" % (f, GOOD))
    write(IMG, jpeg(64, 64, seed=1))
    ms = []
    for i in range(3):
        ms += [("g%d.jpg" % i, jpeg(64, 64, seed=i)), ("g%d.txt" % i, b"a photo of a small red cat")]
    write(EV, tar_bytes(ms))


# ---------------------------------------------------------------------------
# safetensors, from the format's definition

def st_load(path):
    data = read(path)
    hl = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + hl]), data[8 + hl:]


def st_bytes(header, body, raw_header=None):
    h = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


def tensors(h):
    return [k for k in h if k != "__metadata__"]


def config(h):
    return json.loads(h["__metadata__"]["config"])


def with_config(h, body, **kw):
    h = json.loads(json.dumps(h))
    c = config(h)
    c.update(kw)
    h["__metadata__"]["config"] = json.dumps(c)
    return st_bytes(h, body)


def set_float(h, body, name, index, value):
    b = bytearray(body)
    struct.pack_into("<f", b, h[name]["data_offsets"][0] + 4 * index, value)
    return st_bytes(h, bytes(b))


def repack(h, body, drop=(), add=()):
    """The file again without the tensors in drop and with add's (name,
    entry, bytes) at the end: offsets stay consistent."""
    h2, parts, at = {"__metadata__": h["__metadata__"]}, [], 0
    for n in sorted(tensors(h), key=lambda n: h[n]["data_offsets"][0]):
        if n in drop:
            continue
        b0, b1 = h[n]["data_offsets"]
        h2[n] = dict(h[n], data_offsets=[at, at + b1 - b0])
        parts.append(body[b0:b1])
        at += b1 - b0
    for n, entry, data in add:
        h2[n] = dict(entry, data_offsets=[at, at + len(data)])
        parts.append(data)
        at += len(data)
    return st_bytes(h2, b"".join(parts))


def edit(h, body, fn):
    h = json.loads(json.dumps(h))
    fn(h)
    return st_bytes(h, body)


def model_variants():
    """(name, model.safetensors bytes, what stderr must say (a regex))."""
    h, body = st_load(os.path.join(GOOD, "model.safetensors"))
    raw = read(os.path.join(GOOD, "model.safetensors"))
    hl = struct.unpack("<Q", raw[:8])[0]
    names = tensors(h)
    first = names[0]
    emb = "model.embed_tokens.weight"
    norm = "model.norm.weight"
    by_off = sorted(names, key=lambda n: h[n]["data_offsets"][0])
    a, b = by_off[1], by_off[2]

    def drop(name):
        return lambda x: x.pop(name)

    def put(name, key, value):
        def f(x):
            x[name][key] = value
        return f

    def overlap(x):
        # b's range moves onto a's: the same bytes twice, a hole where b was
        x[b]["data_offsets"] = list(x[a]["data_offsets"])
        x[b]["shape"] = list(x[a]["shape"])

    def extra(x):
        x["model.layers.9.mlp.extra.weight"] = dict(x[norm])

    def dims(n):
        return [int(v) for v in h[n]["shape"]]

    fd = dims(first)
    v = [
        ("zero_bytes", b"", r"not a safetensors|shorter"),
        ("four_bytes", raw[:4], r"not a safetensors|shorter"),
        ("header_only", raw[:8 + hl], r"data_offsets|does not fit|truncated"),
        ("half_data", raw[:8 + hl + len(body) // 2], r"data_offsets|does not fit|truncated"),
        ("last_byte_cut", raw[:-1], r"data_offsets|does not fit|truncated"),
        ("header_len_2_63", struct.pack("<Q", 1 << 63) + raw[8:], r"header length"),
        ("header_len_past_end", struct.pack("<Q", len(raw)) + raw[8:], r"header length"),
        ("header_len_odd", struct.pack("<Q", hl - 1) + raw[8:], r"header"),
        ("header_not_json", st_bytes(None, body, raw_header=b"{\"a\": not json"), r"header"),
        ("header_array", st_bytes(None, body, raw_header=b"[1,2,3]"), r"header.*not an object"),
        ("header_string", st_bytes(None, body, raw_header=b"\"model\""), r"header"),
        ("header_deep_nesting", st_bytes(None, body, raw_header=b"{\"a\":" + b"[" * 200000 + b"]" * 200000 + b"}"),
         r"header|nest|depth"),
        ("header_invalid_utf8", st_bytes(None, body, raw_header=b"{\"\xff\xfe\": 1}"), r"header"),
        ("header_nul", st_bytes(None, body, raw_header=b"{\"a\0b\": {}}"), r"header|NUL|dtype"),
        ("tensor_not_object", edit(h, body, lambda x: x.__setitem__(first, [1, 2])), r"dtype|shape|F32"),
        ("tensor_missing", repack(h, body, drop=[norm]), r"model\.norm\.weight"),
        ("tensor_extra_unknown", repack(h, body, add=[("model.layers.9.mlp.extra.weight", h[norm],
                                                       b"\0" * 4 * dims(norm)[0])]), r"extra\.weight"),
        ("tensor_extra_overlapping", edit(h, body, extra), r"overlap|extra\.weight"),
        ("data_hole", edit(h, body, drop(norm)), r"hole"),
        ("data_trailing_bytes", st_bytes(h, body + b"\0" * 64), r"after the last tensor"),
        ("shape_transposed", edit(h, body, put(first, "shape", fd[::-1])), r"shape"),
        ("shape_other_count", edit(h, body, put(norm, "shape", [dims(norm)[0] // 2])), r"shape|data_offsets"),
        ("shape_negative", edit(h, body, put(norm, "shape", [-64])), r"shape"),
        ("shape_float", edit(h, body, put(norm, "shape", [64.0])), r"shape"),
        ("shape_huge", edit(h, body, put(norm, "shape", [1 << 40, 1 << 40])), r"shape|data_offsets"),
        ("shape_5d", edit(h, body, put(norm, "shape", [1, 1, 1, 1, 64])), r"shape"),
        ("dtype_f16", edit(h, body, put(first, "dtype", "F16")), r"F16"),
        ("dtype_i32", edit(h, body, put(first, "dtype", "I32")), r"I32"),
        ("dtype_bf16", edit(h, body, put(first, "dtype", "BF16")), r"BF16"),
        ("dtype_missing", edit(h, body, lambda x: x[first].pop("dtype")), r"untyped|dtype"),
        ("dtype_number", edit(h, body, put(first, "dtype", 32)), r"untyped|dtype"),
        ("offsets_past_end", edit(h, body, put(b, "data_offsets", [len(body), len(body) + 4 * math.prod(dims(b))])),
         r"data_offsets"),
        ("offsets_huge", edit(h, body, put(b, "data_offsets", [(1 << 62), (1 << 62) + 4 * math.prod(dims(b))])),
         r"data_offsets"),
        ("offsets_reversed", edit(h, body, put(b, "data_offsets", h[b]["data_offsets"][::-1])), r"data_offsets"),
        ("offsets_negative", edit(h, body, put(b, "data_offsets", [-4, 4 * math.prod(dims(b)) - 4])),
         r"data_offsets"),
        ("offsets_overlap", edit(h, body, overlap), r"overlap|data_offsets"),
        ("offsets_one_number", edit(h, body, put(b, "data_offsets", [0])), r"data_offsets"),
        ("nan_weight", set_float(h, body, emb, 7, float("nan")), r"NaN|non-finite"),
        ("inf_weight", set_float(h, body, norm, 3, float("inf")), r"NaN|Inf|non-finite"),
        ("config_missing", edit(h, body, lambda x: x["__metadata__"].pop("config")), r"config"),
        ("metadata_missing", edit(h, body, lambda x: x.pop("__metadata__")), r"config"),
        ("metadata_not_object", edit(h, body, lambda x: x.__setitem__("__metadata__", [1])), r"config"),
        ("config_not_json", edit(h, body, lambda x: x["__metadata__"].__setitem__("config", "{dim: 64")), r"config"),
        ("config_array", edit(h, body, lambda x: x["__metadata__"].__setitem__("config", "[64]")), r"config"),
        ("config_other_preset", with_config(h, body, vit_dim=192, vit_layers=4, vit_heads=3, vit_mlp=512, dim=256,
                                            layers=4, mlp=688), r"shape|tensor|config"),
        ("config_other_vocab", with_config(h, body, vocab=512), r"shape"),
        ("config_tied_lm_head_left", with_config(h, body, tied=1), r"lm_head|tensor"),
        ("config_dim_2_40", with_config(h, body, dim=1 << 40), r"dim"),
        ("config_layers_minus_1", with_config(h, body, layers=-1), r"layers"),
        ("config_heads_0", with_config(h, body, heads=0), r"heads"),
        ("config_dim_not_int", with_config(h, body, dim="64"), r"dim"),
        ("config_huge_but_in_range", with_config(h, body, dim=1 << 24, vocab=1 << 24, mlp=1 << 24, layers=1 << 24,
                                                 heads=1 << 22, kv_heads=1 << 22, vit_layers=1 << 24),
         r"config|tensor|shape"),
        ("config_norm_eps_nan", edit(h, body, lambda x: x["__metadata__"].__setitem__(
            "config", x["__metadata__"]["config"].replace('"norm_eps":', '"norm_eps":NaN,"x":'))), r"config"),
        ("config_moe_huge", with_config(h, body, n_experts=1 << 24, top_k=1, expert_mlp=1 << 24, shared_mlp=0,
                                        first_moe_layer=0, routed_scale=1.0, bias_gamma=0.0, balance_alpha=0.0,
                                        capacity=0.0), r"config|tensor|shape"),
    ]
    return v


VARIANTS = []


@check("variants_made")
def _():
    VARIANTS.extend(model_variants())
    expect(len(VARIANTS) >= 45, "only %d variants" % len(VARIANTS))


def ckpt_dir(name, model_bytes):
    """A copy of the good checkpoint with model.safetensors replaced."""
    d = os.path.join(S.dir("ck-" + name), "step-00000002")
    shutil.copytree(GOOD, d)
    write(os.path.join(d, "model.safetensors"), model_bytes)
    return d


# ---------------------------------------------------------------------------
# running each command over a bad checkpoint

def commands(ck, out):
    """(name, argv, files that must not exist afterwards)."""
    rep = os.path.join(out, "report.json")
    avg = os.path.join(out, "avg.safetensors")
    sc = os.path.join(out, "scored-%06d.tar")
    tr = os.path.join(out, "train")
    return [
        ("eval", ["eval", "--ckpt", ck, "--tokenizer", TOKF, "--captions-dev", EV, "--resolutions", "3136",
                  "--default-pixels", "3136", "--max-tokens", "2", "-k", "2", "--report", rep], [rep]),
        ("score", ["score", "--ckpt", ck, "--tokenizer", TOKF, "-o", sc, EV], [sc % 0]),
        ("generate", ["generate", "--ckpt", ck, "--tokenizer", TOKF, "--image", IMG, "--max-tokens", "2"], []),
        ("average", ["average", "-o", avg, GOOD, ck], [avg]),
        ("train_init", ["train", "--preset", "micro", "-q", "-j2", "--synthetic", "--steps", "1", "--init", ck,
                        "-o", tr], [os.path.join(tr, "step-00000001"), os.path.join(tr, "latest")]),
        ("train_resume", ["train", "--preset", "micro", "-q", "-j2", "--synthetic", "--steps", "3", "--resume", ck,
                          "-o", tr], [os.path.join(tr, "step-00000003"), os.path.join(tr, "latest")]),
    ]


def names_file(r, paths, reason):
    """stderr has a line that names one of paths and matches reason."""
    lines = [l for l in r.errtext.splitlines() if any(p in l for p in paths)]
    expect(lines, "stderr does not name %s: %r" % (os.path.basename(paths[0]), r.errtext[-300:]))
    expect(any(re.search(reason, l) for l in lines), "no reason /%s/ given: %r" % (reason, lines[-1][-300:]))


def refused(r, out, gone, paths, reason, peak=False):
    """Exit 1, a message naming the file and why, nothing complete left."""
    expect_rc(r, 1)
    names_file(r, paths, reason)
    for g in gone:
        expect(not os.path.exists(g), "%s left behind" % os.path.basename(g))
    expect(not tmp_leftovers(out), "temporary files left: %s" % tmp_leftovers(out))
    expect(not r.out.strip() or b"max_pixels" in r.out, "output on stdout: %r" % r.out[:200])
    if peak:
        expect(r.maxrss_kb < RSS_LIMIT, "peak RSS %d MB" % (r.maxrss_kb // MB))


def variant_check(name, data, reason):
    def fn():
        ck = ckpt_dir(name, data)
        mp = os.path.join(ck, "model.safetensors")
        bad = []
        for cmd, argv, gone in commands(ck, os.path.dirname(ck)):
            out = os.path.dirname(ck)
            try:
                r = mvl(*argv, timeout=T, rusage=True)
                refused(r, out, gone, [mp], reason, peak=True)
            except Fail as e:
                bad.append("%s: %s" % (cmd, e))
            for g in gone:  # the next command starts clean
                if os.path.isdir(g):
                    shutil.rmtree(g)
        if bad:
            raise Fail("; ".join(bad))
    return fn


@check("good_checkpoint_runs_everywhere")
def _():
    out = S.dir("good")
    for cmd, argv, gone in commands(GOOD, out):
        r = mvl(*argv, timeout=60)
        expect_rc(r, 0)


def _variant_checks():
    for name, data, reason in VARIANTS:
        S.run("model_" + name, variant_check(name, data, reason))


_variant_checks()


# ---------------------------------------------------------------------------
# checkpoint paths that are not checkpoints

def path_cases():
    d = S.dir("paths")
    empty = os.path.join(d, "empty")
    os.makedirs(empty)
    loop = os.path.join(d, "loop")
    os.symlink(loop, loop)
    loop_dir = os.path.join(d, "loopdir")
    os.makedirs(loop_dir)
    os.symlink(os.path.join(loop_dir, "latest"), os.path.join(loop_dir, "latest"))
    notdir = write(os.path.join(d, "state-only"), b"{\"step\": 2}\n")
    latest_bad = os.path.join(d, "latest_bad")
    os.makedirs(latest_bad)
    write(os.path.join(latest_bad, "latest"), b"step-00000099\n")
    latest_empty = os.path.join(d, "latest_empty")
    os.makedirs(latest_empty)
    write(os.path.join(latest_empty, "latest"), b"")
    latest_escapes = os.path.join(d, "latest_escapes")
    os.makedirs(latest_escapes)
    shutil.copytree(GOOD, os.path.join(d, "elsewhere"))
    write(os.path.join(latest_escapes, "latest"), b"../elsewhere\n")
    no_model = os.path.join(d, "no_model")
    shutil.copytree(GOOD, no_model)
    os.remove(os.path.join(no_model, "model.safetensors"))
    model_is_dir = os.path.join(d, "model_is_dir")
    shutil.copytree(GOOD, model_is_dir)
    os.remove(os.path.join(model_is_dir, "model.safetensors"))
    os.makedirs(os.path.join(model_is_dir, "model.safetensors"))
    return [
        ("nonexistent", os.path.join(d, "nothing-here"), r"No such file|cannot"),
        ("empty_dir", empty, r"No such file|not a checkpoint|cannot"),
        ("symlink_loop", loop, r"symbolic links|cannot"),
        ("latest_symlink_loop", loop_dir, r"symbolic links|cannot"),
        ("a_file", notdir, r"not a safetensors|header|Not a directory"),
        ("latest_names_nothing", latest_bad, r"No such file|cannot"),
        ("latest_empty", latest_empty, r"No such file|not a checkpoint|cannot|empty"),
        ("latest_escapes_the_directory", latest_escapes, r"not a checkpoint of this directory"),
        ("model_missing", no_model, r"No such file|cannot"),
        ("model_is_dir", model_is_dir, r"directory|not a regular file|cannot"),
        ("dev_zero", "/dev/zero", r"not a regular file|Not a directory"),
    ]


def path_check(name, path, reason):
    def fn():
        out = S.dir("p-" + name)
        bad = []
        for cmd, argv, gone in commands(path, out):
            try:
                r = mvl(*argv, timeout=T, rusage=True)
                refused(r, out, gone, [path], reason, peak=True)
            except Fail as e:
                bad.append("%s: %s" % (cmd, e))
        if bad:
            raise Fail("; ".join(bad))
    return fn


def _path_checks():
    try:
        cases = path_cases()
    except Exception as e:  # noqa: BLE001
        msg = "%s: %s" % (type(e).__name__, e)

        def fail():
            raise Fail(msg)
        S.run("path_cases_made", fail)
        return
    for name, path, reason in cases:
        S.run("path_" + name, path_check(name, path, reason))


_path_checks()


# ---------------------------------------------------------------------------
# tokenizers

def tok_cases():
    d = S.dir("toks")
    garbage = write(os.path.join(d, "garbage.tiktoken"), bytes(range(256)) * 40)
    empty = write(os.path.join(d, "empty.tiktoken"), b"")
    badrank = write(os.path.join(d, "badrank.tiktoken"), b"YQ== 99999999999\n")
    # the good ranks and 200 more pieces: 506 ids for a model of 320
    lines = read(TOKF).splitlines()
    import base64
    extra, n = [], len(lines)
    for i in range(200):
        extra.append(base64.b64encode(b"\xee" + bytes([i % 256, i // 256 + 1])) + b" %d" % (n + i))
    big = write(os.path.join(d, "big.tiktoken"), b"\n".join(lines + extra) + b"\n")
    shutil.copy(TOK + ".json", os.path.join(d, "big.json"))
    bad_json = write(os.path.join(d, "badjson.tiktoken"), read(TOKF))
    write(os.path.join(d, "badjson.json"), b"{\"pattern\": \"(unclosed\", \"special_tokens\": 7}")
    return [
        ("missing", os.path.join(d, "nothing.tiktoken"), r"No such file|cannot"),
        ("garbage", garbage, r"line|base64|rank|token|bad"),
        ("empty", empty, r"empty|no token|rank|line|bad"),
        ("rank_too_large", badrank, r"rank|id|large"),
        ("more_ids_than_the_model", big, r"506|ids|vocab"),
        ("sidecar_json_bad", bad_json, r"pattern|special|json"),
    ]


def tok_check(name, path, reason):
    def fn():
        out = S.dir("t-" + name)
        rep = os.path.join(out, "report.json")
        sc = os.path.join(out, "scored-%06d.tar")
        runs = [
            ("eval", ["eval", "--ckpt", GOOD, "--tokenizer", path, "--captions-dev", EV, "--resolutions", "3136",
                      "--default-pixels", "3136", "--max-tokens", "2", "-k", "2", "--report", rep], [rep]),
            ("score", ["score", "--ckpt", GOOD, "--tokenizer", path, "-o", sc, EV], [sc % 0]),
            ("generate", ["generate", "--ckpt", GOOD, "--tokenizer", path, "--image", IMG, "--max-tokens", "2"], []),
        ]
        bad = []
        for cmd, argv, gone in runs:
            try:
                r = mvl(*argv, timeout=T, rusage=True)
                refused(r, out, gone, [path, os.path.splitext(path)[0]], reason, peak=True)
            except Fail as e:
                bad.append("%s: %s" % (cmd, e))
        if bad:
            raise Fail("; ".join(bad))
    return fn


def _tok_checks():
    for name, path, reason in tok_cases():
        S.run("tokenizer_" + name, tok_check(name, path, reason))


_tok_checks()


# ---------------------------------------------------------------------------
# average

@check("average_members_of_other_configs")
def _():
    d = S.dir("avg-configs")
    other = os.path.join(d, "other")
    expect_rc(train("--synthetic", "--steps", 1, "--tied", 1, "-o", other), 0)
    o = os.path.join(d, "avg.safetensors")
    r = mvl("average", "-o", o, GOOD, os.path.join(other, "step-00000001"), timeout=T)
    expect_rc(r, 1)
    expect("another model config" in r.errtext and "step-00000001" in r.errtext, "message: %r" % r.errtext[-300:])
    expect(not os.path.exists(o) and not tmp_leftovers(d), "output left behind")


@check("average_bad_weights_are_usage_errors")
def _():
    d = S.dir("avg-weights")
    o = os.path.join(d, "avg.safetensors")
    for w in ("1", "1,2,3", "1,-1", "nan,1", "inf,1", "1,,", "", "0,0", "1,x", "1e400,1", ",1"):
        r = mvl("average", "-o", o, "--weights", w, GOOD, GOOD, timeout=T)
        expect(r.rc == 2, "--weights %r: exit %d, expected 2; %r" % (w, r.rc, r.errtext[-200:]))
        expect("--weights" in r.errtext, "--weights %r: message %r" % (w, r.errtext[-200:]))
        expect(not os.path.exists(o), "--weights %r: output left behind" % w)
    r = mvl("average", "-o", o, "--weights", "1,3", GOOD, GOOD, timeout=T)
    expect_rc(r, 0)
    expect(os.path.exists(o), "no average with --weights 1,3")


@check("average_output_is_a_directory_or_unwritable")
def _():
    d = S.dir("avg-out")
    r = mvl("average", "-o", d, GOOD, GOOD, timeout=T)
    expect_rc(r, 1)
    expect(d in r.errtext, "message does not name %r: %r" % (d, r.errtext[-200:]))
    r = mvl("average", "-o", os.path.join(d, "no", "such", "dir.safetensors"), GOOD, timeout=T)
    expect_rc(r, 1)
    expect("no/such" in r.errtext, "message: %r" % r.errtext[-200:])


@check("average_then_eval_round_trip")
def _():
    d = S.dir("avg-ok")
    o = os.path.join(d, "avg.safetensors")
    expect_rc(mvl("average", "-o", o, GOOD, GOOD, timeout=T), 0)
    h, body = st_load(o)
    h0, body0 = st_load(os.path.join(GOOD, "model.safetensors"))
    eq(body, body0, "the average of a checkpoint with itself")
    r = mvl("generate", "--ckpt", o, "--tokenizer", TOKF, "--image", IMG, "--max-tokens", "2", timeout=T)
    expect_rc(r, 0)


# ---------------------------------------------------------------------------
# resume: state.json and optim.safetensors

def resume_cases():
    st = json.loads(read(os.path.join(GOOD, "state.json")))
    oh, obody = st_load(os.path.join(GOOD, "optim.safetensors"))
    first = tensors(oh)[0]

    def state(**kw):
        s = dict(st)
        s.update(kw)
        return ("state.json", json.dumps(s).encode())

    def state_drop(k):
        s = dict(st)
        s.pop(k)
        return ("state.json", json.dumps(s).encode())

    def optim(fn):
        h = json.loads(json.dumps(oh))
        fn(h)
        return ("optim.safetensors", st_bytes(h, obody))

    return [
        ("state_not_json", ("state.json", b"{\"step\": "), r"state\.json"),
        ("state_empty", ("state.json", b""), r"state\.json"),
        ("state_array", ("state.json", b"[1]"), r"state\.json"),
        ("state_step_negative", state(step=-1000), r"state\.json.*step"),
        ("state_step_string", state(step="2"), r"state\.json.*step"),
        ("state_step_missing", state_drop("step"), r"state\.json.*step"),
        ("state_data_pos_negative", state(data_pos=-8), r"state\.json.*data_pos"),
        ("state_adam_t_negative", state(adam_t=-5), r"state\.json.*adam_t"),
        ("state_skipped_negative", state(skipped=-1), r"state\.json.*skipped"),
        ("state_trainable_other", state(trainable=2), r"parts|trainable"),
        ("state_trainable_string", state(trainable="all"), r"trainable|parts"),
        ("optim_missing", ("optim.safetensors", None), r"optim\.safetensors"),
        ("optim_zero_bytes", ("optim.safetensors", b""), r"optim\.safetensors"),
        ("optim_tensor_missing", optim(lambda h: h.pop(first)), r"optim|" + re.escape(first)),
        ("optim_nan", ("optim.safetensors", set_float(oh, obody, first, 0, float("nan"))), r"NaN|non-finite"),
        ("optim_header_len_2_63", ("optim.safetensors", struct.pack("<Q", 1 << 63) + read(
            os.path.join(GOOD, "optim.safetensors"))[8:]), r"header length"),
    ]


def resume_check(name, change, reason):
    def fn():
        d = S.dir("r-" + name)
        ck = os.path.join(d, "step-00000002")
        shutil.copytree(GOOD, ck)
        fname, data = change
        if data is None:
            os.remove(os.path.join(ck, fname))
        else:
            write(os.path.join(ck, fname), data)
        out = os.path.join(d, "out")
        r = mvl("train", "--preset", "micro", "-q", "-j2", "--synthetic", "--steps", "3", "--resume", ck, "-o", out,
                timeout=T, rusage=True)
        refused(r, d, [os.path.join(out, "step-00000003")], [ck], reason, peak=True)
    return fn


def _resume_checks():
    for name, change, reason in resume_cases():
        S.run("resume_" + name, resume_check(name, change, reason))


_resume_checks()


@check("resume_good_checkpoint_still_works")
def _():
    d = S.dir("r-good")
    out = os.path.join(d, "out")
    r = mvl("train", "--preset", "micro", "-q", "-j2", "--synthetic", "--steps", "3", "--resume", GOOD, "-o", out,
            timeout=60)
    expect_rc(r, 0)
    expect(os.path.exists(os.path.join(out, "step-00000003", "model.safetensors")), "no step 3")


# ---------------------------------------------------------------------------
# hostile held-out data: eval and score account for every sample

def hostile_samples():
    """(key, members) and what eval should make of each."""
    img = jpeg(64, 64, seed=5)
    return [
        ("a_good", [("jpg", img), ("txt", b"a photo of a small red cat")]),
        ("b_corrupt_image", [("jpg", b"\xff\xd8\xff\xe0 this is not a jpeg"), ("txt", b"a photo")]),
        ("c_truncated_image", [("jpg", img[:len(img) // 3]), ("txt", b"a photo of a cat")]),
        ("d_empty_caption", [("jpg", img), ("txt", b"")]),
        ("e_bad_utf8", [("jpg", img), ("txt", b"a \xff\xfe photo \xc0\xaf of")]),
        ("f_no_image", [("txt", b"a caption without its image")]),
        ("g_no_caption", [("jpg", img)]),
        ("h_special_token", [("jpg", img), ("txt", b"a cat <|endoftext|> <|image_pad|>")]),
        ("i_zero_bytes_image", [("jpg", b""), ("txt", b"a photo")]),
        ("j_png_bomb_header", [("png", png_bomb()), ("txt", b"a photo")]),
        ("k_long_caption", [("jpg", img), ("txt", b"cat " * 200000)]),
        ("l_json_only", [("json", b"{\"x\": 1}")]),
        ("m_nul_caption", [("jpg", img), ("txt", b"a \0 cat")]),
        ("z_good", [("jpg", jpeg(56, 84, seed=9)), ("txt", b"a sunny beach with palm trees")]),
    ]


def png_bomb():
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + \
        chunk(b"IEND", b"")


def hostile_tar(d):
    ms = []
    for k, members in hostile_samples():
        ms += [("%s.%s" % (k, ext), data) for ext, data in members]
    return write(os.path.join(d, "hostile.tar"), tar_bytes(ms))


def qa_tar(d):
    img = jpeg(56, 56, seed=3)

    def conv(*turns):
        return json.dumps({"conversations": [{"from": f, "value": v} for f, v in turns]}).encode()
    ms = [
        ("q_good.jpg", img), ("q_good.json", conv(("human", "<image>\nwhat is it?"), ("gpt", "a cat"))),
        ("q_bad_json.jpg", img), ("q_bad_json.json", b"{\"conversations\": [{"),
        ("q_one_turn.jpg", img), ("q_one_turn.json", conv(("human", "what?"))),
        ("q_not_strings.jpg", img), ("q_not_strings.json", b"{\"conversations\": [{\"value\": 1}, {\"value\": []}]}"),
        ("q_no_image.json", conv(("human", "what?"), ("gpt", "nothing"))),
        ("q_special.jpg", img), ("q_special.json", conv(("human", "<|im_end|> what?"), ("gpt", "<|im_start|>"))),
    ]
    return write(os.path.join(d, "qa.tar"), tar_bytes(ms))


def eval_args(out, *sets):
    return ["eval", "--ckpt", GOOD, "--tokenizer", TOKF, "--resolutions", "3136", "--default-pixels", "3136",
            "--max-tokens", "2", "-k", "2", "--report", os.path.join(out, "report.json")] + list(sets)


def accounted_in_report(rep, name, nsamples):
    s = rep.get("samples", {}).get(name)
    expect(isinstance(s, dict), "report has no samples.%s: %s" % (name, list(rep.get("samples", {}))))
    skipped = s.get("skipped", {})
    eq(s.get("read"), nsamples, "samples.%s.read" % name)
    eq(s.get("used", -1) + sum(skipped.values()), s.get("read"), "samples.%s used + skipped" % name)
    return s


@check("eval_hostile_captions_accounted")
def _():
    d = S.dir("ev-hostile")
    t = hostile_tar(d)
    r = mvl(*eval_args(d, "--captions-dev", t, "--captions-test", t), timeout=60, rusage=True)
    expect_rc(r, 0)
    expect(r.maxrss_kb < RSS_LIMIT, "peak RSS %d MB" % (r.maxrss_kb // MB))
    rep = json.loads(read(os.path.join(d, "report.json")))
    n = len(hostile_samples())
    s = accounted_in_report(rep, "captions_dev", n)
    expect(s["used"] >= 2, "the good samples not used: %s" % s)
    expect(sum(s["skipped"].values()) >= 6, "too few skipped: %s" % s)
    accounted_in_report(rep, "captions_test", n)
    expect("skipped" in r.errtext and t in r.errtext, "no skip line naming %r on stderr: %r" % (t, r.errtext[-300:]))


@check("eval_hostile_questions_accounted")
def _():
    d = S.dir("ev-qa")
    t = qa_tar(d)
    r = mvl(*eval_args(d, "--qa-dev", t, "--qa-test", t), timeout=60)
    expect_rc(r, 0)
    rep = json.loads(read(os.path.join(d, "report.json")))
    s = accounted_in_report(rep, "qa_dev", 6)
    expect(s["used"] >= 1, "the good question not used: %s" % s)
    expect(sum(s["skipped"].values()) >= 4, "too few skipped: %s" % s)


@check("eval_nothing_usable_fails_without_report")
def _():
    d = S.dir("ev-none")
    t = write(os.path.join(d, "none.tar"), tar_bytes([("x.txt", b"no image"), ("y.jpg", b"garbage")]))
    r = mvl(*eval_args(d, "--captions-dev", t), timeout=T)
    expect_rc(r, 1)
    names_file(r, [t], r"no usable")
    expect(not os.path.exists(os.path.join(d, "report.json")), "report written")


@check("eval_truncated_shard")
def _():
    d = S.dir("ev-trunc")
    whole = read(hostile_tar(d))
    t = write(os.path.join(d, "cut.tar"), whole[:len(whole) // 2 + 100])
    r = mvl(*eval_args(d, "--captions-dev", t), timeout=T)
    expect_rc(r, 1)
    names_file(r, [t], r"truncated|ends|broke|corrupt")
    expect(not os.path.exists(os.path.join(d, "report.json")), "report written over a broken held-out set")


@check("eval_missing_and_empty_sets")
def _():
    d = S.dir("ev-missing")
    nothing = os.path.join(d, "nothing.tar")
    r = mvl(*eval_args(d, "--captions-dev", nothing), timeout=T)
    expect_rc(r, 1)
    names_file(r, [nothing], r"No such file|cannot|no input|matches")
    empty = write(os.path.join(d, "empty.tar"), b"")
    r = mvl(*eval_args(d, "--captions-dev", empty), timeout=T)
    expect_rc(r, 1)
    names_file(r, [empty], r"no usable|empty|not a tar")
    expect(not os.path.exists(os.path.join(d, "report.json")), "report written")


@check("score_hostile_samples_accounted")
def _():
    d = S.dir("sc-hostile")
    t = hostile_tar(d)
    stats = os.path.join(d, "stats.json")
    o = os.path.join(d, "out-%06d.tar")
    r = mvl("score", "--ckpt", GOOD, "--tokenizer", TOKF, "--stats", stats, "-o", o, t, timeout=60, rusage=True)
    expect_rc(r, 0)
    expect(r.maxrss_kb < RSS_LIMIT, "peak RSS %d MB" % (r.maxrss_kb // MB))
    s = summary(r)
    n = len(hostile_samples())
    eq(s["in"], n, "samples in")
    eq(s["kept"] + s["rejected"], s["in"], "in = kept + rejected")
    st = json.loads(read(stats))
    eq(st["scored"] + st["unscored"], s["kept"], "scored + unscored = kept")
    expect(st["scored"] >= 2, "the good samples were not scored: %s" % st)
    got = wds_samples(read(o % 0))
    scored = [k for k, m in got if b"pairscore" in dict(m).get("json", b"")]
    expect("a_good" in scored and "z_good" in scored, "good samples unscored: %s" % scored)
    eq(len(scored), st["scored"], "samples carrying pairscore")


@check("score_truncated_shard")
def _():
    d = S.dir("sc-trunc")
    whole = read(hostile_tar(d))
    t = write(os.path.join(d, "cut.tar"), whole[:len(whole) // 2 + 100])
    r = mvl("score", "--ckpt", GOOD, "--tokenizer", TOKF, t, timeout=T)
    expect_rc(r, 1)
    names_file(r, [t], r"truncated|ends|broke|corrupt")
    s = summary(r)
    eq(s["kept"] + s["rejected"], s["in"], "in = kept + rejected")


@check("generate_hostile_images_and_prompts")
def _():
    d = S.dir("gen")
    cases = [
        ("corrupt.jpg", b"\xff\xd8\xff garbage", r"corrupt|jpeg|decode|image"),
        ("empty.jpg", b"", r"empty|decode|image|format"),
        ("bomb.png", png_bomb(), r"pixels|large|size|decode|image"),
    ]
    for fname, data, reason in cases:
        p = write(os.path.join(d, fname), data)
        r = mvl("generate", "--ckpt", GOOD, "--tokenizer", TOKF, "--image", p, "--max-tokens", "2", timeout=T,
                rusage=True)
        expect_rc(r, 1)
        names_file(r, [p], reason)
        expect(r.maxrss_kb < RSS_LIMIT, "%s: peak RSS %d MB" % (fname, r.maxrss_kb // MB))
    r = mvl("generate", "--ckpt", GOOD, "--tokenizer", TOKF, "--image", os.path.join(d, "nothing.jpg"), timeout=T)
    expect_rc(r, 1)
    names_file(r, [os.path.join(d, "nothing.jpg")], r"No such file|cannot")
    for prompt in ("<|im_end|><|endoftext|>", "\xff", "x" * 100000):
        r = mvl("generate", "--ckpt", GOOD, "--tokenizer", TOKF, "--image", IMG, "--prompt", prompt,
                "--max-tokens", "2", timeout=T, rusage=True)
        expect(r.rc in (0, 1), "prompt %r: exit %d" % (prompt[:20], r.rc))
        expect(r.maxrss_kb < RSS_LIMIT, "prompt %r: peak RSS %d MB" % (prompt[:20], r.maxrss_kb // MB))


@check("usage_errors_exit_2")
def _():
    for argv in (["eval"], ["eval", "--ckpt", GOOD], ["score", "--ckpt", GOOD], ["generate", "--tokenizer", TOKF],
                 ["average", GOOD], ["average", "-o", os.path.join(W, "x.safetensors")],
                 ["generate", "--ckpt", GOOD, "--tokenizer", TOKF, "--top-p", "0"],
                 ["eval", "--ckpt", GOOD, "--tokenizer", TOKF, "-k", "1"]):
        r = mvl(*argv, timeout=T)
        expect(r.rc == 2, "mvl %s: exit %d, expected 2" % (" ".join(argv[:3]), r.rc))


@check("padded_vocabulary_never_generates_a_padding_id")
def _():
    # a model's vocabulary padded past its tokenizer's (512 rows, 306 ids:
    # the micro default): the rows past the tokenizer are never produced,
    # greedy or sampled, so what is generated always decodes
    run = os.path.join(S.dir("padded"), "run")
    expect_rc(mvl("train", "--preset", "micro", "-q", "-j2", "--synthetic", "--steps", 2, "-o", run, timeout=60), 0)
    for extra in ([], ["--temperature", "1.5", "--top-p", "1"], ["--temperature", "0.7", "--seed", "3"]):
        r = mvl("generate", "--ckpt", run, "--tokenizer", TOKF, "--image", IMG, "--max-tokens", "48", *extra,
                timeout=T)
        expect_rc(r, 0)
    d = S.dir("padded-eval")
    r = mvl("eval", "--ckpt", run, "--tokenizer", TOKF, "--captions-test", EV, "--resolutions", "3136",
            "--default-pixels", "3136", "-k", "2", "--report", os.path.join(d, "r.json"), timeout=60)
    expect_rc(r, 0)


S.finish()
