"""test_train.py: `mvl train` end to end, on the micro preset (seconds).

Synthetic runs (random tokens, one image per sequence; a function of the
seed and the global sample index) check determinism, bit-exact resume,
gradient accumulation and frozen parts; the checkpoint files are read back
with a safetensors parser written here from the format's definition
(8-byte LE header length, JSON header, data_offsets); a SIGKILLed run must
leave only complete checkpoints; real packs are made with `mvl pack` from
PIL-encoded images and the cl100k_base rank file (exported from the npm
tiktoken package, as test_pack.py does) and trained on, and a single
repeated sample must be overfitted.  Only the standard library, PIL and
numpy are used."""
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mvltest import (MVL, ROOT, Fail, Suite, eq, expect, expect_rc, jpeg, mvl,  # noqa: E402
                     png, read, tar_bytes, write)

import numpy as np  # noqa: E402

# With OpenMP's default (active) waiting a -j2 run is ~100x slower when
# other processes keep the cores busy (micro, 2 loaded cores: ~170 tok/s,
# against ~16k tok/s with passive waiting or -j1); this file checks
# results, not speed.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

S = Suite("train")
check = S.check

J = "-j2"
TOKS_RE = re.compile(r"^tokens/s: ([0-9.eE+-]+)$")
STEP_RE = re.compile(r"^step-(\d{8})$")


def train(*args, timeout=120):
    return mvl("train", "--preset", "micro", "-q", J, *args, timeout=timeout)


def synth(out, *args, steps=3):
    """A synthetic micro run into out; exit 0 expected."""
    r = train("--synthetic", "--steps", steps, "-o", out, *args)
    expect_rc(r, 0)
    return r


def ckpt(out, step):
    return os.path.join(out, "step-%08d" % step)


def state(d):
    with open(os.path.join(d, "state.json"), "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def losses(d):
    ls = state(d).get("losses")
    expect(isinstance(ls, list), "%s/state.json: no losses list" % d)
    return ls


def metrics(out):
    """metrics.jsonl as a list of dicts (every line must parse)."""
    rows = []
    with open(os.path.join(out, "metrics.jsonl"), "rb") as f:
        text = f.read().decode("utf-8")
    for i, line in enumerate(text.split("\n")):
        if not line and i == len(text.split("\n")) - 1:
            break
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise Fail("%s/metrics.jsonl line %d is not JSON: %r" % (out, i + 1, line[:200]))
    return rows


def leftovers(d):
    """Paths under d (files or directories) whose name holds '.tmp'."""
    out = []
    for root, dirs, files in os.walk(d):
        out += [os.path.relpath(os.path.join(root, n), d) for n in dirs + files if ".tmp" in n]
    return out


def no_leftovers(d, what):
    lo = leftovers(d)
    expect(not lo, "%s: temporary files left in %s: %s" % (what, os.path.basename(d), lo[:5]))


def spans(xs):
    """[1, 2, 3, 7] -> '1..3, 7'"""
    out = []
    for x in xs:
        if out and out[-1][1] == x - 1:
            out[-1][1] = x
        else:
            out.append([x, x])
    return ", ".join("%d..%d" % (a, b) if a != b else "%d" % a for a, b in out) or "none"


def tokens_per_s(r):
    lines = r.out.decode("utf-8", "replace").splitlines()
    expect(lines, "nothing on stdout (expected a final `tokens/s: X`)")
    m = TOKS_RE.match(lines[-1])
    expect(m, "last stdout line %r is not `tokens/s: X`" % lines[-1])
    x = float(m.group(1))
    expect(x > 0 and math.isfinite(x), "tokens/s %r" % x)
    return x


# ---------------------------------------------------------------------------
# safetensors, from the format's definition


class StFile:
    def __init__(self, path):
        data = read(path)
        self.path, self.size = path, len(data)
        name = os.path.basename(path)
        expect(len(data) >= 8, "%s: %d bytes" % (name, len(data)))
        n = struct.unpack_from("<Q", data, 0)[0]
        expect(8 + n <= len(data), "%s: header length %d > file size %d" % (name, n, len(data)))
        self.hlen = n
        try:
            hdr = json.loads(data[8:8 + n].decode("utf-8"))
        except ValueError as e:
            raise Fail("%s: header is not JSON: %s" % (name, e))
        expect(isinstance(hdr, dict), "%s: header is not an object" % name)
        self.meta = hdr.pop("__metadata__", None)
        base = 8 + n
        self.names, self.t, self.dtype, spans = [], {}, {}, []
        for k, v in hdr.items():
            expect(isinstance(v, dict) and set(v) >= {"dtype", "shape", "data_offsets"},
                   "%s: entry %r: %r" % (name, k, v))
            shape, (b, e) = v["shape"], v["data_offsets"]
            expect(isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape),
                   "%s: %s: shape %r" % (name, k, shape))
            self.dtype[k] = v["dtype"]
            expect(v["dtype"] == "F32", "%s: %s is %s, not F32" % (name, k, v["dtype"]))
            count = int(np.prod(shape)) if shape else 1
            expect(0 <= b <= e <= len(data) - base and e - b == 4 * count,
                   "%s: %s: data_offsets [%d, %d] vs shape %r (data %d bytes)"
                   % (name, k, b, e, shape, len(data) - base))
            self.t[k] = np.frombuffer(data, "<f4", count, base + b).reshape(shape)
            self.names.append(k)
            spans.append((b, e, k))
        # the tensors tile the data: no gap, no overlap, nothing after
        spans.sort()
        at = 0
        for b, e, k in spans:
            expect(b == at, "%s: %s starts at %d, expected %d (gap or overlap)" % (name, k, b, at))
            at = e
        eq(at, len(data) - base, "%s: end of the last tensor vs the data size" % name)

    def bytes_of(self, k):
        return self.t[k].tobytes()


def model_file(d):
    return StFile(os.path.join(d, "model.safetensors"))


def optim_file(d):
    return StFile(os.path.join(d, "optim.safetensors"))


def config_of(st):
    expect(isinstance(st.meta, dict), "no __metadata__ in %s" % st.path)
    expect("config" in st.meta and isinstance(st.meta["config"], str), "__metadata__ has no config string")
    return json.loads(st.meta["config"])


def expected_tensors(c):
    """name -> shape, as model.h and DESIGN.md list them (Qwen2.5-VL / Qwen3 names)."""
    Dv, Fv, D, F = c["vit_dim"], c["vit_mlp"], c["dim"], c["mlp"]
    H, KV, V = c["heads"], c["kv_heads"], c["vocab"]
    dh = D // H
    e = {"visual.patch_embed.proj.weight": [Dv, 3 * 14 * 14]}
    for i in range(c["vit_layers"]):
        p = "visual.blocks.%d." % i
        e.update({p + "norm1.weight": [Dv], p + "norm2.weight": [Dv],
                  p + "attn.qkv.weight": [3 * Dv, Dv], p + "attn.proj.weight": [Dv, Dv],
                  p + "mlp.gate_proj.weight": [Fv, Dv], p + "mlp.up_proj.weight": [Fv, Dv],
                  p + "mlp.down_proj.weight": [Dv, Fv]})
    e.update({"visual.merger.ln_q.weight": [4 * Dv],
              "visual.merger.mlp.0.weight": [4 * Dv, 4 * Dv], "visual.merger.mlp.0.bias": [4 * Dv],
              "visual.merger.mlp.2.weight": [D, 4 * Dv], "visual.merger.mlp.2.bias": [D],
              "model.embed_tokens.weight": [V, D], "model.norm.weight": [D]})
    for i in range(c["layers"]):
        p = "model.layers.%d." % i
        e.update({p + "input_layernorm.weight": [D], p + "post_attention_layernorm.weight": [D],
                  p + "self_attn.q_proj.weight": [H * dh, D], p + "self_attn.k_proj.weight": [KV * dh, D],
                  p + "self_attn.v_proj.weight": [KV * dh, D], p + "self_attn.o_proj.weight": [D, H * dh],
                  p + "self_attn.q_norm.weight": [dh], p + "self_attn.k_norm.weight": [dh],
                  p + "mlp.gate_proj.weight": [F, D], p + "mlp.up_proj.weight": [F, D],
                  p + "mlp.down_proj.weight": [D, F]})
    if not c["tied"]:
        e["lm_head.weight"] = [V, D]
    return e


def part_of(name):
    if name.startswith(("visual.blocks.", "visual.patch_embed.")):
        return "vit"
    if name.startswith("visual.merger."):
        return "projector"
    if name.startswith("model.") or name == "lm_head.weight":
        return "llm"
    raise Fail("tensor %r belongs to no part" % name)


def expect_model_format(d, what):
    """model.safetensors of checkpoint d: format pt, config, Qwen names, shapes."""
    st = model_file(d)
    meta = st.meta
    expect(isinstance(meta, dict), "%s: no __metadata__" % what)
    expect(all(isinstance(v, str) for v in meta.values()),
           "%s: __metadata__ values must be strings: %r" % (what, meta))
    eq(meta.get("format"), "pt", "%s: __metadata__ format" % what)
    c = config_of(st)
    want = expected_tensors(c)
    got = {k: list(v.shape) for k, v in st.t.items()}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    expect(not missing and not extra, "%s: tensors missing %s, unexpected %s" % (what, missing[:6], extra[:6]))
    for k in want:
        eq(got[k], want[k], "%s: shape of %s" % (what, k))
    for k, a in st.t.items():
        expect(np.isfinite(a).all(), "%s: %s has non-finite values" % (what, k))
    return st, c


def expect_complete_checkpoint(d, what):
    expect(os.path.isdir(d), "%s: no checkpoint %s (%s holds %s)" % (
        what, os.path.basename(d), os.path.basename(os.path.dirname(d)),
        sorted(os.listdir(os.path.dirname(d))) if os.path.isdir(os.path.dirname(d)) else "nothing"))
    for f in ("model.safetensors", "optim.safetensors", "state.json"):
        expect(os.path.isfile(os.path.join(d, f)), "%s: %s has no %s" % (what, os.path.basename(d), f))
    s = state(d)
    m = STEP_RE.match(os.path.basename(d))
    if m:
        eq(s.get("step"), int(m.group(1)), "%s: state.json step of %s" % (what, os.path.basename(d)))
    st, c = expect_model_format(d, what)
    o = optim_file(d)
    return s, st, o


def latest_dir(out):
    with open(os.path.join(out, "latest"), "rb") as f:
        name = f.read().decode("utf-8").strip()
    expect(STEP_RE.match(name), "latest holds %r" % name)
    d = os.path.join(out, name)
    expect(os.path.isdir(d), "latest names %s, which does not exist" % name)
    return d


# ---------------------------------------------------------------------------
# synthetic runs


RUNS = {}


@check("synthetic_same_seed_same_losses_other_seed_other_losses")
def _():
    a, b, c = (S.dir(n) for n in ("seed7a", "seed7b", "seed8"))
    ra = synth(a, "--seed", 7)
    rb = synth(b, "--seed", 7)
    rc = synth(c, "--seed", 8)
    for r in (ra, rb, rc):
        tokens_per_s(r)
    la, lb, lc = (losses(ckpt(d, 3)) for d in (a, b, c))
    eq(len(la), 3, "losses in state.json of a 3-step run")
    expect(all(isinstance(x, float) and math.isfinite(x) for x in la), "losses %r" % la)
    eq(lb, la, "losses of two runs with --seed 7 (exact)")
    expect(all(x != y for x, y in zip(la, lc)), "--seed 7 and --seed 8 share a loss: %r vs %r" % (la, lc))
    expect(read(os.path.join(ckpt(a, 3), "model.safetensors")) ==
           read(os.path.join(ckpt(b, 3), "model.safetensors")), "same seed, different final weights")
    # metrics.jsonl: one line per step, agreeing with state.json
    ma = [m for m in metrics(a) if "loss" in m]  # (eval lines hold eval_loss)
    eq([m.get("step") for m in ma], [0, 1, 2], "metrics.jsonl steps")
    for m, x in zip(ma, la):
        for k in ("loss", "lr", "grad_norm", "tokens_per_s"):
            expect(k in m, "metrics.jsonl line without %r: %r" % (k, m))
        expect(abs(m["loss"] - x) <= 1e-6 * abs(x), "metrics loss %r vs state.json %r" % (m["loss"], x))
    eq([m["loss"] for m in metrics(b)], [m["loss"] for m in ma], "metrics.jsonl losses of the same seed")
    # the initial loss of random tokens is about ln(vocab)
    v = config_of(model_file(ckpt(a, 3)))["vocab"]
    eq(v, 512, "micro's default vocabulary")
    expect(abs(la[0] - math.log(v)) < 0.5, "first loss %.4f, ln(vocab) = %.4f" % (la[0], math.log(v)))
    for d in (a, b, c):
        no_leftovers(d, "a finished run")
    RUNS["det"] = a


@check("resume_is_bit_exact")
def _():
    a, r = S.dir("full6"), S.dir("resumed6")
    synth(a, "--save-every", 3, steps=6)
    eq(sorted(n for n in os.listdir(a) if STEP_RE.match(n)), ["step-00000003", "step-00000006"],
       "checkpoints of --steps 6 --save-every 3")
    eq(os.path.basename(latest_dir(a)), "step-00000006", "latest")
    eq(len(losses(ckpt(a, 3))), 3, "losses in step-00000003/state.json")
    rr = train("--synthetic", "--steps", 6, "--save-every", 3, "--resume", ckpt(a, 3), "-o", r)
    expect_rc(rr, 0)
    tokens_per_s(rr)
    full, res = losses(ckpt(a, 6)), losses(ckpt(r, 6))
    eq(len(full), 6, "losses of the full run")
    eq(res[3:6], full[3:6], "losses of steps 3..5, resumed vs uninterrupted (exact)")
    eq(res, full, "the resumed run's whole loss history")
    expect(read(os.path.join(ckpt(r, 6), "model.safetensors")) == read(os.path.join(ckpt(a, 6), "model.safetensors")),
           "final model.safetensors differ between the resumed and the uninterrupted run")
    expect(read(os.path.join(ckpt(r, 6), "optim.safetensors")) == read(os.path.join(ckpt(a, 6), "optim.safetensors")),
           "final optim.safetensors differ between the resumed and the uninterrupted run")
    sa, sr = state(ckpt(a, 6)), state(ckpt(r, 6))
    for k in ("step", "data_pos", "adam_t"):
        eq(sr.get(k), sa.get(k), "state.json %s" % k)
    mr, ma = [m for m in metrics(r) if "loss" in m], [m for m in metrics(a) if "loss" in m]
    eq([m["step"] for m in mr], [3, 4, 5], "steps in the resumed run's metrics.jsonl")
    for x, y in zip(mr, ma[3:]):
        eq((x["loss"], x["lr"], x["grad_norm"]), (y["loss"], y["lr"], y["grad_norm"]),
           "metrics (loss, lr, grad_norm) of step %d" % x["step"])
    no_leftovers(a, "the full run")
    no_leftovers(r, "the resumed run")
    RUNS["full6"] = a


@check("moe_preset_trains_resumes_bit_exact_and_averages")
def _():
    # micro-moe: DeepSeek-V3 names, the selection bias saved (not optimized),
    # dropped tokens in the metrics, resume exact through the bias updates
    a, r = S.dir("moe4"), S.dir("moe4r")
    moe = lambda *args: mvl("train", "--preset", "micro-moe", "-q", J, "--synthetic", *args, timeout=120)
    expect_rc(moe("--steps", 4, "--save-every", 2, "-o", a), 0)
    st = model_file(ckpt(a, 4))
    c = config_of(st)
    eq((c.get("n_experts"), c.get("top_k")), (4, 2), "micro-moe config n_experts, top_k")
    D, E, Fe, Fs = c["dim"], c["n_experts"], c["expert_mlp"], c["shared_mlp"]
    for l in range(c["layers"]):
        b = "model.layers.%d.mlp." % l
        want = {b + "gate.weight": [E, D], b + "gate.e_score_correction_bias": [E],
                b + "shared_experts.gate_proj.weight": [Fs, D], b + "shared_experts.down_proj.weight": [D, Fs],
                b + "experts.%d.up_proj.weight" % (E - 1): [Fe, D], b + "experts.0.down_proj.weight": [D, Fe]}
        for k, shape in want.items():
            expect(k in st.t, "%s missing from the MoE checkpoint" % k)
            eq(list(st.t[k].shape), shape, "shape of %s" % k)
        expect(b + "gate_proj.weight" not in st.t, "a MoE layer also has a dense mlp")
        bias = st.t[b + "gate.e_score_correction_bias"]
        expect(np.abs(bias).max() > 0, "the selection bias never moved in 4 steps")
        expect("m." + b + "gate.e_score_correction_bias" not in optim_file(ckpt(a, 4)).names,
               "the selection bias has optimizer state")
    mm = [m for m in metrics(a) if "loss" in m]
    expect(all("moe_dropped" in m and m["moe_routed"] > 0 for m in mm), "metrics lack the MoE counts: %r" % mm[:1])
    expect(all(math.isfinite(m["loss"]) for m in mm), "non-finite MoE losses")
    expect_rc(moe("--steps", 4, "--save-every", 2, "--resume", ckpt(a, 2), "-o", r), 0)
    expect(read(os.path.join(ckpt(r, 4), "model.safetensors")) == read(os.path.join(ckpt(a, 4), "model.safetensors")),
           "MoE: final model.safetensors differ between the resumed and the uninterrupted run")
    avg = os.path.join(S.dir("moeavg"), "avg.safetensors")
    expect_rc(mvl("average", "-o", avg, ckpt(a, 2), ckpt(a, 4)), 0)
    eq(sorted(StFile(avg).names), sorted(st.names), "tensors of the averaged MoE model")


@check("resume_earlier_checkpoint_into_the_same_run_dir")
def _():
    # rolling a run back: --resume RUN/step-3 -o RUN, where step-6 exists
    a = RUNS.get("full6")
    expect(a, "no 6-step run (see resume_is_bit_exact)")
    d = os.path.join(S.dir("rollback"), "run")
    shutil.copytree(a, d)
    r = train("--synthetic", "--steps", 6, "--save-every", 3, "--resume", ckpt(d, 3), "-o", d)
    lo = leftovers(d)
    expect_rc(r, 0)
    expect(not lo, "temporary files left: %s" % lo)
    eq(os.path.basename(latest_dir(d)), "step-00000006", "latest")
    expect(read(os.path.join(ckpt(d, 6), "model.safetensors")) == read(os.path.join(ckpt(a, 6), "model.safetensors")),
           "step-00000006 after the rollback differs from the uninterrupted run's")


@check("grad_accum_matches_the_same_global_batch")
def _():
    a, b = S.dir("accum2x2"), S.dir("batch4")
    synth(a, "--batch", 2, "--grad-accum", 2)
    synth(b, "--batch", 4)
    la, lb = losses(ckpt(a, 3)), losses(ckpt(b, 3))
    eq((len(la), len(lb)), (3, 3), "losses per run")
    for i, (x, y) in enumerate(zip(la, lb)):
        expect(abs(x - y) <= 1e-5 * abs(y), "step %d: loss %.9g with --batch 2 --grad-accum 2, %.9g with --batch 4"
               % (i, x, y))
    eq(state(ckpt(a, 3)).get("data_pos"), state(ckpt(b, 3)).get("data_pos"), "data_pos")
    eq(state(ckpt(a, 3)).get("data_pos"), 12, "data_pos after 3 steps of 4 sequences")
    # the batch is not the same as half of it: --batch 2 alone differs
    c = S.dir("batch2")
    synth(c, "--batch", 2)
    expect(losses(ckpt(c, 3))[0] != lb[0], "--batch 2 and --batch 4 give the same first loss")


def frozen_run(init, parts, out):
    r = train("--synthetic", "--init", init, "--train", parts, "--steps", 3, "-o", out)
    expect_rc(r, 0)
    return r


def expect_frozen(a, b, trained, what):
    A, B = model_file(a), model_file(b)
    eq(sorted(B.names), sorted(A.names), "%s: tensor names" % what)
    same, changed = [], []
    for k in A.names:
        (same if A.bytes_of(k) == B.bytes_of(k) else changed).append(k)
    bad_changed = [k for k in changed if part_of(k) not in trained]
    bad_same = [k for k in same if part_of(k) in trained]
    expect(not bad_changed, "%s: frozen tensors changed: %s" % (what, bad_changed[:6]))
    expect(not bad_same, "%s: trained tensors unchanged: %s" % (what, bad_same[:6]))
    O = optim_file(b)
    want = sorted(p + k for k in A.names if part_of(k) in trained for p in ("m.", "v."))
    eq(sorted(O.names), want, "%s: optim.safetensors entries" % what)
    for k in A.names:
        if part_of(k) in trained:
            eq(list(O.t["m." + k].shape), [A.t[k].size], "%s: shape of m.%s" % (what, k))


@check("frozen_parts_stay_bit_identical")
def _():
    # the initial weights: one step at --lr 0 (AdamW then moves nothing;
    # `--steps 0` means the default number of steps, not "save the init")
    a, a2 = S.dir("init"), S.dir("init2")
    synth(a, "--lr", 0, steps=1)
    synth(a2, "--lr", 0, steps=2)
    a0 = ckpt(a, 1)
    expect_complete_checkpoint(a0, "--lr 0 --steps 1")
    expect(read(os.path.join(a0, "model.safetensors")) == read(os.path.join(ckpt(a2, 2), "model.safetensors")),
           "--lr 0 changes the weights (1 step and 2 steps differ)")
    b, c = S.dir("projector"), S.dir("llm")
    frozen_run(a, "projector", b)
    expect_frozen(a0, ckpt(b, 3), ("projector",), "--train projector")
    frozen_run(a, "llm", c)
    expect_frozen(a0, ckpt(c, 3), ("llm",), "--train llm")
    eq(state(ckpt(b, 3)).get("trainable"), 2, "state.json trainable of --train projector")


# ---------------------------------------------------------------------------
# checkpoint format, atomicity


@check("checkpoint_format_safetensors_qwen_names")
def _():
    a = RUNS.get("det")
    expect(a, "no synthetic run (see the first check)")
    s, st, o = expect_complete_checkpoint(ckpt(a, 3), "3-step run")
    eq(st.hlen % 8, 0, "header length (padded to 8)")
    c = config_of(st)
    for k in ("vit_dim", "vit_layers", "dim", "layers", "heads", "kv_heads", "vocab", "tied"):
        expect(isinstance(c.get(k), int), "config has no integer %r: %r" % (k, c))
    expect("lm_head.weight" in st.t or c["tied"], "untied model without lm_head.weight")
    # the optimizer state: m. and v. of every tensor (all parts trained), flat
    want = sorted(p + k for k in st.names for p in ("m.", "v."))
    eq(sorted(o.names), want, "optim.safetensors entries")
    for k in st.names:
        for p in ("m.", "v."):
            eq(list(o.t[p + k].shape), [st.t[k].size], "shape of %s%s" % (p, k))
    expect((o.t["v.model.norm.weight"] >= 0).all(), "negative second moments")
    for k in ("step", "data_pos", "adam_t", "losses"):
        expect(k in s, "state.json has no %r: %r" % (k, sorted(s)))
    eq((s["step"], s["adam_t"]), (3, 3), "state.json (step, adam_t)")
    # tied: no lm_head.weight
    t = S.dir("tied")
    synth(t, "--tied", 1, steps=1)
    st2, c2 = expect_model_format(ckpt(t, 1), "--tied 1")
    eq(c2["tied"], 1, "config tied of a --tied 1 run")
    expect("lm_head.weight" not in st2.t, "--tied 1 checkpoint holds lm_head.weight")
    no_leftovers(t, "--tied 1 run")


KILLED = {}


@check("killed_run_leaves_only_complete_checkpoints_and_resumes")
def _():
    d = S.dir("killed")
    out = os.path.join(d, "run")
    p = subprocess.Popen([MVL, "train", "--preset", "micro", "--synthetic", "--steps", "1000", "--save-every", "2",
                          "-o", out, "-q", J], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    t_start = time.time()
    try:
        deadline = time.time() + 30
        while time.time() < deadline and p.poll() is None and not os.path.exists(os.path.join(out, "latest")):
            time.sleep(0.02)
        t_first = time.time() - t_start
        time.sleep(1.0)
        if p.poll() is not None:
            raise Fail("mvl train ended before the kill (rc %s): %r" % (p.returncode, p.stderr.read()[-300:]))
        p.send_signal(signal.SIGKILL)
        p.wait()
        t_kill = time.time() - t_start
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    names = os.listdir(out)
    steps = sorted(n for n in names if STEP_RE.match(n))
    expect(steps, "no checkpoint after the kill: %s" % names)
    mp = os.path.join(out, "metrics.jsonl")
    print("# killed at %.2f s (first checkpoint at %.2f s): %d checkpoints (last %s), metrics.jsonl %d bytes, "
          "temporary entries %s"
          % (t_kill, t_first, len(steps), steps[-1], os.path.getsize(mp) if os.path.exists(mp) else -1,
             [n for n in names if ".tmp" in n]), file=sys.stderr)
    for n in steps:
        expect_complete_checkpoint(os.path.join(out, n), "after SIGKILL")
    stray = [n for n in names if n.startswith("step-") and not STEP_RE.match(n) and ".tmp." not in n]
    expect(not stray, "unexpected entries: %s" % stray)
    last = latest_dir(out)
    S_ = int(STEP_RE.match(os.path.basename(last)).group(1))
    prior = losses(last)
    eq(len(prior), S_, "losses in %s/state.json" % os.path.basename(last))
    # resume from the run dir (its latest); end past every checkpoint there
    top = int(steps[-1][5:])
    T = top + 3
    r = train("--synthetic", "--steps", T, "--resume", out, "-o", out)
    expect_rc(r, 0)
    tokens_per_s(r)
    fin = ckpt(out, T)
    expect_complete_checkpoint(fin, "resumed after SIGKILL")
    eq(os.path.basename(latest_dir(out)), "step-%08d" % T, "latest after the resume")
    lf = losses(fin)
    eq(len(lf), T, "losses after the resume")
    eq(lf[:S_], prior, "the loss history up to the checkpoint resumed from")
    expect(all(math.isfinite(x) for x in lf), "non-finite losses after the resume")
    KILLED.update(out=out, T=T)


@check("killed_then_resumed_metrics_jsonl_parses")
def _():
    expect(KILLED, "no killed run (see the check before)")
    metrics(KILLED["out"])


@check("killed_then_resumed_metrics_jsonl_one_line_per_step")
def _():
    expect(KILLED, "no killed run (see the check before)")
    rows = []
    with open(os.path.join(KILLED["out"], "metrics.jsonl"), "rb") as f:
        for line in f.read().decode("utf-8", "replace").splitlines():
            try:
                o = json.loads(line)
                if "loss" in o:
                    rows.append(o["step"])
            except (ValueError, KeyError, TypeError):
                pass
    T = KILLED["T"]
    if rows != list(range(T)):
        missing = sorted(set(range(T)) - set(rows))
        dup = sorted(set(s for s in rows if rows.count(s) > 1))
        raise Fail("%d parseable lines for %d steps: steps missing %s, repeated %s, order %s" % (
            len(rows), T, spans(missing), spans(dup), "ok" if rows == sorted(rows) else "broken"))



# ---------------------------------------------------------------------------
# real packs


RANKS = S.dir("ranks")
TOK = os.path.join(RANKS, "cl100k_base.tiktoken")
V_CL = 100300  # cl100k (100277) + mvl pack's specials, rounded up
PK = {}


def make_tok():
    if not os.path.exists(TOK):
        p = subprocess.run(["node", "scripts/tok/export_ranks.js", RANKS, "--encodings", "cl100k_base", "--quiet"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        expect(p.returncode == 0 and os.path.exists(TOK),
               "node scripts/tok/export_ranks.js failed: %s" % p.stderr.decode()[-300:])
    return TOK


def conv(turns):
    return json.dumps({"conversations": [{"from": f, "value": v} for f, v in turns]}).encode()


def sample_tar():
    m = []
    caps = ["A red and green gradient, seen at dusk.", "A tall picture of a blue ramp.",
            "Two colours meet in the middle of a small square.", "A wide strip of light over a field.",
            "Morning light on a quiet street."]
    sizes = [(56, 56), (84, 56), (56, 112), (112, 28), (70, 70)]
    for i, (t, (w, h)) in enumerate(zip(caps, sizes)):
        m.append(("cap%02d.%s" % (i, "png" if i % 2 else "jpg"), png(w, h, i) if i % 2 else jpeg(w, h, i)))
        m.append(("cap%02d.txt" % i, t.encode()))
    m.append(("conv00.jpg", jpeg(84, 84, 9)))
    m.append(("conv00.json", conv([("human", "<image>\nWhat is this?"), ("gpt", "A colour ramp.")])))
    m.append(("conv01.json", conv([("human", "Say yes."), ("gpt", "Yes.")])))
    m.append(("txt00.txt", b"Just text, no image at all."))
    return tar_bytes(m)


def make_pack(path, tar, L):
    r = mvl("pack", "--tokenizer", make_tok(), "--encoding", "cl100k_base", "--seq-len", L, "-q", "-o", path, tar,
            timeout=120)
    expect_rc(r, 0)
    return path


@check("trains_on_real_packs")
def _():
    d = S.dir("packs")
    tar = write(os.path.join(d, "in.tar"), sample_tar())
    p128 = make_pack(os.path.join(d, "p128.pack"), tar, 128)
    r = mvl("ls", p128)
    expect_rc(r, 0)
    rows = [l.split("\t") for l in r.out.decode().splitlines()]
    expect(rows and sum(int(x[3]) for x in rows) >= 5, "the pack should hold the images: %r" % r.out[:300])
    PK.update(dir=d, tar=tar, p128=p128)
    out = os.path.join(d, "run")
    r = train("--vocab", V_CL, "--seq-len", 128, "--batch", 2, "--steps", 3, "-o", out, p128)
    expect_rc(r, 0)
    tokens_per_s(r)
    ls = losses(ckpt(out, 3))
    eq(len(ls), 3, "losses")
    expect(all(isinstance(x, float) and math.isfinite(x) for x in ls), "losses %r" % ls)
    expect(abs(ls[0] - math.log(V_CL)) < 0.5, "first loss %.4f, ln(%d) = %.4f" % (ls[0], V_CL, math.log(V_CL)))
    st, c = expect_model_format(ckpt(out, 3), "pack run")
    eq(c["vocab"], V_CL, "config vocab")
    no_leftovers(out, "pack run")


@check("pack_tokens_outside_the_default_vocab_refused")
def _():
    expect(PK, "no pack (see trains_on_real_packs)")
    r = train("--seq-len", 128, "--batch", 2, "--steps", 1, PK["p128"])
    expect_rc(r, 1)
    expect("vocabulary" in r.errtext, "message does not name the vocabulary: %r" % r.errtext.strip()[-300:])


@check("pack_of_another_seq_len_refused")
def _():
    expect(PK, "no pack (see trains_on_real_packs)")
    p64 = make_pack(os.path.join(PK["dir"], "p64.pack"), PK["tar"], 64)
    r = train("--vocab", V_CL, "--seq-len", 128, "--batch", 2, "--steps", 1, p64)
    expect_rc(r, 1)
    t = r.errtext
    expect("p64.pack" in t and "64" in t and "128" in t, "message: %r" % t.strip()[-300:])
    # the preset's own length (64) with the 128 pack
    r = train("--vocab", V_CL, "--batch", 2, "--steps", 1, PK["p128"])
    expect_rc(r, 1)
    expect("p128.pack" in r.errtext, "message: %r" % r.errtext.strip()[-300:])


@check("truncated_pack_refused")
def _():
    expect(PK, "no pack (see trains_on_real_packs)")
    data = read(PK["p128"])
    for name, blob in (("cut-last-byte.pack", data[:-1]), ("cut-half.pack", data[:len(data) // 2]),
                       ("cut-header.pack", data[:40])):
        p = write(os.path.join(PK["dir"], name), blob)
        out = os.path.join(PK["dir"], "run-" + name)
        r = train("--vocab", V_CL, "--seq-len", 128, "--batch", 2, "--steps", 1, "-o", out, p)
        expect_rc(r, 1)
        t = r.errtext
        expect(name in t and any(w in t for w in ("truncated", "does not fit", "not a pack", "header", "short")),
               "unclear message for %s: %r" % (name, t.strip()[-300:]))
        expect(not os.path.isdir(out) or not any(STEP_RE.match(n) for n in os.listdir(out)),
               "%s: a checkpoint was written" % name)


@check("overfits_one_repeated_sample")
def _():
    d = S.dir("overfit")
    tar = write(os.path.join(d, "one.tar"),
                tar_bytes([("only.jpg", jpeg(56, 56, 3)), ("only.txt", b"A small red square on a green field.")]))
    pk = make_pack(os.path.join(d, "one.pack"), tar, 64)
    out = os.path.join(d, "run")
    r = train("--vocab", V_CL, "--seq-len", 64, "--batch", 1, "--steps", 30, "--lr", "3e-3",
              "--scheduler", "constant", "-o", out, pk)
    expect_rc(r, 0)
    ls = losses(ckpt(out, 30))
    eq(len(ls), 30, "losses")
    expect(all(math.isfinite(x) for x in ls), "non-finite losses: %r" % ls)
    expect(ls[-1] < 0.5 * ls[0], "loss %.4f -> %.4f after 30 steps on one sample (want < 50%%)" % (ls[0], ls[-1]))
    expect(min(ls[-5:]) < min(ls[:5]), "no progress: %r" % ls)


# ---------------------------------------------------------------------------
# failures


@check("non_finite_stops_with_exit_1_last_checkpoint_intact")
def _():
    out = S.dir("nonfinite")
    r = train("--synthetic", "--lr", "1e30", "--grad-clip", 0, "--steps", 20, "--save-every", 1, "-o", out)
    expect_rc(r, 1)
    expect("non-finite" in r.errtext, "no 'non-finite' in stderr: %r" % r.errtext.strip()[-300:])
    expect(not os.path.exists(ckpt(out, 20)), "a final checkpoint was written after non-finite steps")
    no_leftovers(out, "the stopped run")
    steps = sorted(n for n in os.listdir(out) if STEP_RE.match(n))
    expect(steps, "no checkpoint at all (the trigger should give one finite step first): %s" % os.listdir(out))
    last = latest_dir(out)
    eq(os.path.basename(last), steps[-1], "latest")
    for n in steps:
        s, st, o = expect_complete_checkpoint(os.path.join(out, n), "non-finite run")
        expect(all(isinstance(x, float) and math.isfinite(x) for x in s["losses"]),
               "%s: losses %r" % (n, s["losses"]))
    # and mvl itself loads it: resumed to its own step, nothing to train
    n = int(STEP_RE.match(os.path.basename(last)).group(1))
    d = S.dir("reload")
    r = train("--synthetic", "--lr", "1e30", "--grad-clip", 0, "--steps", n, "--resume", last, "-o", d)
    expect_rc(r, 0)
    if os.path.isdir(ckpt(d, n)):
        expect(read(os.path.join(ckpt(d, n), "model.safetensors")) == read(os.path.join(last, "model.safetensors")),
               "resumed to its own step, the checkpoint's weights changed")


@check("usage_errors_exit_2")
def _():
    d = S.dir("usage")
    for args in (("--preset", "huge", "--synthetic"), ("--preset", "micro", "--synthetic", "--train", "bogus"),
                 ("--preset", "micro", "--synthetic", "--train", "projector,everything")):
        out = os.path.join(d, "out")
        r = mvl("train", *args, "--steps", 1, "-o", out, J)
        expect_rc(r, 2)
        expect(r.errtext.strip(), "%s: no message" % " ".join(args))
        expect(not os.path.exists(out), "%s: created the output directory" % " ".join(args))


S.finish()
