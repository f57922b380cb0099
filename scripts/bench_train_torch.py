#!/usr/bin/python3
"""bench_train_torch.py: the PyTorch side of scripts/bench_train.sh: training
tokens/s of the mvl model (trainer/model.h) in plain, batched PyTorch on N CPU
threads, with the shapes `mvl train --preset P --synthetic` uses.

    /usr/bin/python3 scripts/bench_train_torch.py [--preset tiny|small|all]
        [-j THREADS] [--warmup W] [--steps S] [--seed N] [--threading tuned|plain]
        [--no-verify]

The model below is an efficient implementation of model.h's math (the same
state_dict names as tests/parity/model.py's MvlModel, so weights copy over):
all B sequences go through the LLM at once, with one [B, 1, L, L] additive
mask (causal within each sequence's segment, as model.h says; the synthetic
data has one segment per sequence); the B images, all of the preset's size,
go through the ViT as one batch with full attention within each image;
grouped-query attention by reshaping q to [B, kv_heads, group * L, dh]
(no copies of k and v); logits only for the rows that carry a loss; float32.
A step is what `mvl train` does in one: make the synthetic batch (same
layout as trainer/train_cmd.c synth_seq: <vision_start>, (image/28)^2 image
pads, <vision_end>, random text; loss on the text), forward, backward, the
global gradient-norm clip at 1.0, torch.optim.AdamW (lr 3e-4, betas 0.9 /
0.95, eps 1e-8, weight decay 0.1 on the matrices and none on norms, biases
and the embedding, as mvl's defaults).  tokens/s counts all B * L positions
of a step, as mvl does.

Threads: this Debian PyTorch runs its own ops on GNU OpenMP threads and its
matrix products in the system OpenBLAS, by default the pthreads build; the
OpenMP workers spin after each op while OpenBLAS's threads want the same
cores: in our runs on 2 cores, tiny steps were 1.3x slower with load
average ~2 and 4-10x slower with load average ~5 (other jobs).  So by default
(--threading tuned) the subprocesses run with OMP_WAIT_POLICY=PASSIVE
(unless the environment sets it) and with OpenBLAS's OpenMP build (the one
mvl links) put first on LD_LIBRARY_PATH when it is installed; --threading
plain keeps the environment as it is.

Per preset, two subprocesses: the first checks, before any timing, that
this model's loss equals the reference MvlModel's (tests/parity/model.py) on
the same weights and one synthetic batch (relative error < 1e-4) and prints
`torch model matches the reference: loss rel err X`; the second times W
warm-up and S measured steps and prints
`torch P threads N: X tokens/s (median), peak RSS G GiB`, its peak RSS
(getrusage ru_maxrss) being that of the timing process alone.  Per-step
figures go to stderr.  Exit status 1 when the check fails (no timing then).
"""
import argparse
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
PATCH = 14
PATCH_DIM = 3 * PATCH * PATCH

# trainer/model.c model_preset: config, then the training shape
PRESETS = {
    "tiny": dict(vit_dim=192, vit_layers=4, vit_heads=3, vit_mlp=512, dim=256, layers=4, heads=4, kv_heads=2,
                 mlp=688, vocab=8192, tied=0, norm_eps=1e-6, rope_theta=1e6, vit_rope_theta=1e4,
                 image=112, seq_len=256, batch=8),
    "small": dict(vit_dim=384, vit_layers=6, vit_heads=6, vit_mlp=1024, dim=512, layers=8, heads=8, kv_heads=4,
                  mlp=1376, vocab=32768, tied=0, norm_eps=1e-6, rope_theta=1e6, vit_rope_theta=1e4,
                  image=224, seq_len=1024, batch=4),
}
OPENBLAS_OPENMP = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
DEFAULT_STEPS = {"tiny": (1, 5), "small": (1, 3)}
SHAPE_KEYS = ("image", "seq_len", "batch")


def f32(x):
    """A config float as the C struct holds it."""
    return float(np.float32(x))


# ---------------------------------------------------------------------------
# the model, batched

def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, cos, sin):
    """rotate-half rotary; cos / sin broadcast against x [..., dh]"""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def cos_sin(ang, dtype):
    """ang [..., dh/2] float64 -> cos, sin [..., dh] of emb = cat(ang, ang)"""
    emb = torch.cat([ang, ang], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


class Norm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return rms(x, self.weight, self.eps)


class SwiGLU(nn.Module):
    def __init__(self, d, f):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class VisionAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["vit_dim"]
        self.heads, self.dh = c["vit_heads"], d // c["vit_heads"]
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin):
        """x [NI, P, Dv]; full attention within each image"""
        ni, p, d = x.shape
        q, k, v = self.qkv(x).view(ni, p, 3, self.heads, self.dh).unbind(2)
        q = rope(q, cos, sin).transpose(1, 2)       # [NI, H, P, dh]
        k = rope(k, cos, sin).transpose(1, 2)
        v = v.transpose(1, 2)
        a = torch.softmax((q * (1.0 / math.sqrt(self.dh))) @ k.transpose(-1, -2), dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(ni, p, d))


class VisionBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, eps = c["vit_dim"], c["norm_eps"]
        self.norm1 = Norm(d, eps)
        self.attn = VisionAttention(c)
        self.norm2 = Norm(d, eps)
        self.mlp = SwiGLU(d, c["vit_mlp"])

    def forward(self, x, cos, sin):
        x = x + self.attn(self.norm1(x), cos, sin)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.proj = nn.Linear(PATCH_DIM, c["vit_dim"], bias=False)


class Merger(nn.Module):
    def __init__(self, c):
        super().__init__()
        d4 = 4 * c["vit_dim"]
        self.ln_q = Norm(d4, c["norm_eps"])
        self.mlp = nn.Sequential(nn.Linear(d4, d4), nn.GELU(approximate="none"), nn.Linear(d4, c["dim"]))


class Visual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.patch_embed = PatchEmbed(c)
        self.blocks = nn.ModuleList(VisionBlock(c) for _ in range(c["vit_layers"]))
        self.merger = Merger(c)
        self._rope = {}

    def rope_2d(self, gh, gw, dtype):
        key = (gh, gw, dtype)
        if key not in self._rope:
            dh = self.c["vit_dim"] // self.c["vit_heads"]
            row = torch.arange(gh, dtype=torch.float64).repeat_interleave(gw)
            col = torch.arange(gw, dtype=torch.float64).repeat(gh)
            f = self.c["vit_rope_theta"] ** (-2.0 * torch.arange(dh // 4, dtype=torch.float64) / (dh // 2))
            ang = torch.cat([row[:, None] * f, col[:, None] * f], dim=1)
            cos, sin = cos_sin(ang, dtype)
            self._rope[key] = (cos[:, None, :], sin[:, None, :])     # [P, 1, dh]: over heads
        return self._rope[key]

    def forward(self, pixels):
        """uint8 [NI, h, w, 3], images of one size -> [NI, h/28 * w/28, D]"""
        ni, h, w, _ = pixels.shape
        gh, gw = h // PATCH, w // PATCH
        x = pixels.to(self.patch_embed.proj.weight.dtype) / 127.5 - 1
        x = x.reshape(ni, gh, PATCH, gw, PATCH, 3).permute(0, 1, 3, 5, 2, 4).reshape(ni, gh * gw, PATCH_DIM)
        cos, sin = self.rope_2d(gh, gw, x.dtype)
        x = self.patch_embed.proj(x)
        for blk in self.blocks:
            x = blk(x, cos, sin)
        dv = x.shape[-1]
        x = x.reshape(ni, gh // 2, 2, gw // 2, 2, dv).permute(0, 1, 3, 2, 4, 5).reshape(ni, -1, 4 * dv)
        return self.merger.mlp(self.merger.ln_q(x))


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["dim"]
        self.heads, self.kv_heads, self.dh = c["heads"], c["kv_heads"], d // c["heads"]
        self.q_proj = nn.Linear(d, self.heads * self.dh, bias=False)
        self.k_proj = nn.Linear(d, self.kv_heads * self.dh, bias=False)
        self.v_proj = nn.Linear(d, self.kv_heads * self.dh, bias=False)
        self.o_proj = nn.Linear(self.heads * self.dh, d, bias=False)
        self.q_norm = Norm(self.dh, c["norm_eps"])
        self.k_norm = Norm(self.dh, c["norm_eps"])

    def forward(self, x, cos, sin, mask, reads):
        """x [B, L, D]; cos / sin [B, L, 1, dh]; mask [B, 1, 1, L, L] additive
        (0 / -inf); reads [B, 1, 1, L, 1] float or None (every row reads)"""
        B, L, _ = x.shape
        kv, g, dh = self.kv_heads, self.heads // self.kv_heads, self.dh
        q = rope(self.q_norm(self.q_proj(x).view(B, L, self.heads, dh)), cos, sin) * (1.0 / math.sqrt(dh))
        k = rope(self.k_norm(self.k_proj(x).view(B, L, kv, dh)), cos, sin)
        v = self.v_proj(x).view(B, L, kv, dh)
        # query head h = j * g + i reads kv head j: [B, kv, g * L, dh] against [B, kv, L, dh]
        q = q.view(B, L, kv, g, dh).permute(0, 2, 3, 1, 4).reshape(B, kv, g * L, dh)
        k = k.transpose(1, 2)
        v = v.transpose(1, 2)
        s = (q @ k.transpose(-1, -2)).view(B, kv, g, L, L)
        s += mask                                   # the product's output is not saved: in place is fine
        p = torch.softmax(s, dim=-1)
        if reads is not None:
            p = p * reads
        o = p.view(B, kv, g * L, L) @ v             # [B, kv, g * L, dh]
        o = o.view(B, kv, g, L, dh).permute(0, 3, 1, 2, 4).reshape(B, L, self.heads * dh)
        return self.o_proj(o)


class DecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, eps = c["dim"], c["norm_eps"]
        self.input_layernorm = Norm(d, eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = Norm(d, eps)
        self.mlp = SwiGLU(d, c["mlp"])

    def forward(self, x, cos, sin, mask, reads):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, reads)
        return x + self.mlp(self.post_attention_layernorm(x))


class TextModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["dim"])
        self.layers = nn.ModuleList(DecoderLayer(c) for _ in range(c["layers"]))
        self.norm = Norm(c["dim"], c["norm_eps"])


class BatchedMvl(nn.Module):
    """model(batch) -> (loss_sum, count): batch is a dict of tensors, see
    synthetic_batch; the state_dict is MvlModel's."""

    def __init__(self, c, seed=0):
        super().__init__()
        self.c = c
        self.visual = Visual(c)
        self.model = TextModel(c)
        if not c["tied"]:
            self.lm_head = nn.Linear(c["dim"], c["vocab"], bias=False)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():   # model.h: norms 1, biases 0, the rest normal(0, 0.02)
            for name, p in self.named_parameters():
                if name.endswith(".bias"):
                    p.zero_()
                elif p.dim() == 1:
                    p.fill_(1)
                else:
                    p.normal_(0, 0.02, generator=g)

    def head_weight(self):
        return self.model.embed_tokens.weight if self.c["tied"] else self.lm_head.weight

    def forward(self, b):
        c = self.c
        ids, pos, seg, loss = b["ids"], b["pos"], b["seg"], b["loss"]
        B, L = ids.shape
        D = c["dim"]
        dh = D // c["heads"]
        x = self.model.embed_tokens(ids).view(B * L, D)
        # image pad rows replaced (not added to) by the merger outputs
        vis = self.visual(b["pixels"])                     # [NI, N, D]
        n = vis.shape[1]
        rows = (b["img_seq"] * L + b["img_token"])[:, None] + torch.arange(n)[None, :]
        x = x.index_put((rows.reshape(-1),), vis.reshape(-1, D)).view(B, L, D)
        # rotary angles of the positions, float64 -> float32
        k = torch.arange(dh // 2, dtype=torch.float64)
        ang = pos.to(torch.float64)[..., None] * c["rope_theta"] ** (-2.0 * k / dh)
        cos, sin = cos_sin(ang, x.dtype)
        cos, sin = cos[:, :, None, :], sin[:, :, None, :]
        # causal within the segment; segment 0 reads nothing (output 0)
        idx = torch.arange(L)
        allowed = (seg[:, :, None] == seg[:, None, :]) & (seg[:, :, None] > 0) & (idx[None, None, :] <= idx[None, :, None])
        rd = allowed.any(-1)
        reads = None
        if not bool(rd.all()):
            allowed = allowed | ~rd[:, :, None]
            reads = rd.to(x.dtype)[:, None, None, :, None]
        mask = torch.zeros(B, L, L, dtype=x.dtype).masked_fill_(~allowed, float("-inf"))[:, None, None]
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, reads)
        # the loss rows: r predicts r+1 of the same segment where loss[r+1] == 1
        ok = (seg[:, 1:] == seg[:, :-1]) & (seg[:, :-1] > 0) & (loss[:, 1:] == 1)
        bi, ri = ok.nonzero(as_tuple=True)
        h = self.model.norm(x.view(B * L, D)[bi * L + ri])
        logits = F.linear(h, self.head_weight())
        return F.cross_entropy(logits, ids[bi, ri + 1], reduction="sum"), int(bi.numel())


# ---------------------------------------------------------------------------
# data

def synthetic_batch(c, rng):
    """train_cmd.c synth_seq's layout (not its random stream): per sequence
    one image of the preset's size at token 1, <vision_start> at 0, the pads,
    <vision_end>, random text (ids < vocab - 3) to the end; pos 0..L-1, one
    segment, loss on the text after <vision_end>."""
    B, L, side, V = c["batch"], c["seq_len"], c["image"], c["vocab"]
    npad = (side // 28) ** 2
    pad, vstart, vend = V - 1, V - 2, V - 3
    ids = rng.integers(0, V - 3, size=(B, L), dtype=np.int64)
    ids[:, 0] = vstart
    ids[:, 1:1 + npad] = pad
    ids[:, 1 + npad] = vend
    idx = np.arange(L)
    return {
        "ids": torch.from_numpy(ids),
        "pos": torch.from_numpy(np.tile(idx, (B, 1))),
        "seg": torch.ones(B, L, dtype=torch.int64),
        "loss": torch.from_numpy(np.tile((idx > npad + 1).astype(np.int64), (B, 1))),
        "pixels": torch.from_numpy(rng.integers(0, 256, size=(B, side, side, 3), dtype=np.uint8)),
        "img_seq": torch.arange(B),
        "img_token": torch.ones(B, dtype=torch.int64),
        "image_pad": pad,
    }


def config_of(preset):
    c = dict(PRESETS[preset])
    for k in ("norm_eps", "rope_theta", "vit_rope_theta"):
        c[k] = f32(c[k])
    return c


# ---------------------------------------------------------------------------
# the two subprocesses

def verify(preset, seed):
    """The batched model's loss against MvlModel's, same weights, one batch."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "parity"))
    import model as ref

    c = config_of(preset)
    mine = BatchedMvl(c, seed)
    theirs = ref.MvlModel({k: v for k, v in c.items() if k not in SHAPE_KEYS}, seed=seed)
    missing, unexpected = theirs.load_state_dict(mine.state_dict(), strict=True)
    b = synthetic_batch(c, np.random.default_rng(seed))
    images = [ref.Image(int(b["img_seq"][i]), int(b["img_token"][i]), b["pixels"][i]) for i in range(c["batch"])]
    rb = ref.Batch(c["batch"], c["seq_len"], b["image_pad"], b["ids"].numpy(), b["pos"].numpy(),
                   b["seg"].numpy(), b["loss"].numpy(), images)
    with torch.no_grad():
        t0 = time.time()
        ls_ref, n_ref = theirs(rb)
        t1 = time.time()
        ls, n = mine(b)
        t2 = time.time()
    want, got = float(ls_ref) / n_ref, float(ls) / n
    err = abs(got - want) / abs(want)
    print("# %s: reference loss %.7f over %d targets (%.2f s), batched %.7f over %d (%.2f s)"
          % (preset, want, n_ref, t1 - t0, got, n, t2 - t1), file=sys.stderr, flush=True)
    if n != n_ref or not err < 1e-4:
        print("torch model DOES NOT match the reference: loss %.9g vs %.9g (%d vs %d targets), rel err %.2e"
              % (got, want, n, n_ref, err), flush=True)
        return 1
    print("torch model matches the reference: loss rel err %.2e" % err, flush=True)
    return 0


def bench(preset, threads, warmup, steps, seed):
    torch.set_num_threads(threads)
    c = config_of(preset)
    model = BatchedMvl(c, seed)
    decay, no_decay = [], []
    for name, p in model.named_parameters():   # mvl: no decay on norms, biases, the embedding
        (no_decay if p.dim() == 1 or name == "model.embed_tokens.weight" else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    rng = np.random.default_rng(seed)
    tokens = c["batch"] * c["seq_len"]
    tps = []
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        b = synthetic_batch(c, rng)
        opt.zero_grad(set_to_none=True)
        loss_sum, n = model(b)
        loss = loss_sum / n
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        dt = time.perf_counter() - t0
        if step >= warmup:
            tps.append(tokens / dt)
        print("torch %s step %d loss %.6f gnorm %.4f %.2f s tok/s %.0f%s"
              % (preset, step, float(loss), float(gnorm), dt, tokens / dt, " (warm-up)" if step < warmup else ""),
              file=sys.stderr, flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2 ** 30   # Linux: KiB
    print("torch %s threads %d: %.1f tokens/s (median), peak RSS %.2f GiB"
          % (preset, threads, float(np.median(tps)) if tps else 0.0, rss), flush=True)
    return 0


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="all", choices=["tiny", "small", "all"])
    ap.add_argument("-j", "--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 1)")
    ap.add_argument("--steps", type=int, default=None, help="measured steps (default 5 tiny, 3 small)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threading", choices=["tuned", "plain"], default="tuned",
                    help="tuned: OMP_WAIT_POLICY=PASSIVE and OpenMP OpenBLAS (default); plain: the environment as is")
    ap.add_argument("--no-verify", action="store_true", help="skip the check against tests/parity/model.py")
    ap.add_argument("--child", choices=["verify", "bench"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    presets = ["tiny", "small"] if a.preset == "all" else [a.preset]
    if a.child:
        p = presets[0]
        if a.child == "verify":
            torch.set_num_threads(a.threads)
            return verify(p, a.seed)
        w, s = DEFAULT_STEPS[p]
        return bench(p, a.threads, w if a.warmup is None else a.warmup, s if a.steps is None else a.steps, a.seed)
    env = dict(os.environ)
    if a.threading == "tuned":
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        if os.path.exists(os.path.join(OPENBLAS_OPENMP, "libblas.so.3")):
            env["LD_LIBRARY_PATH"] = OPENBLAS_OPENMP + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    print("# torch %s, %s threading: OMP_WAIT_POLICY=%s, LD_LIBRARY_PATH=%s" % (
        torch.__version__, a.threading, env.get("OMP_WAIT_POLICY", "(unset)"), env.get("LD_LIBRARY_PATH", "(unset)")),
        flush=True)
    rc = 0
    for p in presets:
        base = [sys.executable, os.path.abspath(__file__), "--preset", p, "-j", str(a.threads), "--seed", str(a.seed)]
        if not a.no_verify and subprocess.call(base + ["--child", "verify"], env=env) != 0:
            rc = 1
            continue
        extra = (["--warmup", str(a.warmup)] if a.warmup is not None else []) + \
                (["--steps", str(a.steps)] if a.steps is not None else [])
        if subprocess.call(base + extra + ["--child", "bench"], env=env) != 0:
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
