#!/usr/bin/python3
"""tests/parity/model.py: the mvl model in plain PyTorch, the reference that
the C trainer (trainer/model.c) must equal.

This file is the specification in executable form.  trainer/model.h states
the math in words, trainer/ops.h the kernels' conventions; everything below
implements them literally, in float32, with nn.functional and autograd, and
nothing clever.  The C side writes a directory (see `compare`), this script
recomputes the loss, the gradients and a few AdamW steps and says, one line
per check, whether the C numbers agree:

    /usr/bin/python3 tests/parity/model.py compare DIR [--verbose] [--double]
    /usr/bin/python3 tests/parity/model.py selftest [--verbose]

Output follows tests/run.sh: `ok NAME` or `not ok NAME: WHY`, comment lines
start with '#', exit status 1 when any check failed.

Choices where model.h / ops.h leave room (each also enforced or noted where
it is used):
  * the ViT's rotary theta is the config's vit_rope_theta (model.h says
    "theta 10000", which is what the presets set);
  * rotary angles are computed in float64 (position x frequency), then
    cos / sin are rounded to the model's dtype;
  * the config's float fields are rounded to float32 first, as the C struct
    holds them (norm_eps 1e-6 is 1e-6f);
  * an image's merger outputs go to rows token .. token+N-1 of its sequence
    (N = h/28 * w/28); the batch is rejected unless those rows are
    <|image_pad|> and every <|image_pad|> row is covered exactly once, so
    "replaced in order" and "placed at token" are the same thing;
  * the embedding rows of replaced pads get no gradient (they are
    overwritten, not added to);
  * each segment id > 0 must be one contiguous run of its sequence (the
    batch is rejected otherwise), so "same segment id" and "same run" agree;
    loss mask values must be 0 or 1;
  * rows with segment 0 (padding) attend to nothing: attention output 0;
    they still go through the residual stream and the MLPs, but nothing
    reads them;
  * "causal" is by row index within the sequence (not by pos);
  * the merger's RMSNorm (ln_q) is over the concatenated 4 Dv (as model.h
    says; Qwen2.5-VL's ln_q normalizes each patch's Dv before the
    concatenation);
  * tied: model.embed_tokens.weight's gradient is the sum of its two uses;
  * the loss is summed in float64 from float32 per-row cross-entropies;
  * AdamW decays every trainable tensor, even one the batch does not reach
    (its gradient is taken as 0);
  * "trainable" may also say "all".
"""
import argparse
import io
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import time
import traceback

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

PATCH = 14                    # pixels per patch side
MERGE = 2                     # patches per merger side: one LLM token per 2x2 patches
PATCH_DIM = 3 * PATCH * PATCH  # 588
PARTS = ("vit", "projector", "llm")

INT_KEYS = ("vit_dim", "vit_layers", "vit_heads", "vit_mlp",
            "dim", "layers", "heads", "kv_heads", "mlp", "vocab", "tied")
FLOAT_KEYS = ("norm_eps", "rope_theta", "vit_rope_theta")
CONFIG_KEYS = INT_KEYS + FLOAT_KEYS
# MoE (model.h "MoE", moe.h): present only when n_experts > 0
MOE_INT_KEYS = ("n_experts", "top_k", "expert_mlp", "shared_mlp", "first_moe_layer")
MOE_FLOAT_KEYS = ("routed_scale", "bias_gamma", "balance_alpha", "capacity")

TOL_LOSS = 1e-4
TOL_GRAD = 1e-3
TOL_ADAM = 1e-4


# ---------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length N, N bytes of JSON
# {"NAME": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
# {str: str}}, offsets relative to the first byte after the header.

_ST_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def read_safetensors(path):
    """-> ({name: numpy array}, {metadata key: str value})."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError("%s: shorter than the header length" % path)
    (hlen,) = struct.unpack("<Q", data[:8])
    if 8 + hlen > len(data):
        raise ValueError("%s: header length %d does not fit the file" % (path, hlen))
    header = json.loads(data[8:8 + hlen].decode("utf-8"))
    meta = header.pop("__metadata__", None) or {}
    for k, v in meta.items():
        if not isinstance(v, str):
            raise ValueError("%s: metadata %r is not a string" % (path, k))
    body = data[8 + hlen:]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] not in _ST_DTYPES:
            raise ValueError("%s: %s: unsupported dtype %s" % (path, name, info["dtype"]))
        dt = np.dtype(_ST_DTYPES[info["dtype"]])
        shape = [int(s) for s in info["shape"]]
        begin, end = (int(o) for o in info["data_offsets"])
        if not (0 <= begin <= end <= len(body)) or end - begin != math.prod(shape) * dt.itemsize:
            raise ValueError("%s: %s: data_offsets %s do not match shape %s" % (path, name, [begin, end], shape))
        tensors[name] = np.frombuffer(body[begin:end], dtype=dt).reshape(shape).astype(dt.newbyteorder("="))
    return tensors, meta


def write_safetensors(path, tensors, metadata=None):
    """tensors: {name: array or torch tensor}, written as F32 in that order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, off = [], 0
    for name, t in tensors.items():
        if isinstance(t, torch.Tensor):
            t = t.detach().cpu().numpy()
        a = np.ascontiguousarray(t, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        blobs.append(a.tobytes())
        off += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# configuration

def make_config(d):
    """The model_config fields, typed as the C struct holds them."""
    missing = [k for k in CONFIG_KEYS if k not in d]
    if missing:
        raise ValueError("config lacks %s" % ", ".join(missing))
    c = {k: int(d[k]) for k in INT_KEYS}
    c.update({k: float(np.float32(d[k])) for k in FLOAT_KEYS})
    c["n_experts"] = int(d.get("n_experts", 0))
    if c["n_experts"] > 0:
        c.update({k: int(d[k]) for k in MOE_INT_KEYS})
        c.update({k: float(np.float32(d[k])) for k in MOE_FLOAT_KEYS})
        if not 1 <= c["top_k"] <= c["n_experts"]:
            raise ValueError("top_k must be 1 .. n_experts")
    if c["vit_dim"] % c["vit_heads"] or (c["vit_dim"] // c["vit_heads"]) % 4:
        raise ValueError("vit_dim / vit_heads must be a multiple of 4 (2D rotary)")
    if c["dim"] % c["heads"] or (c["dim"] // c["heads"]) % 2 or c["heads"] % c["kv_heads"]:
        raise ValueError("dim / heads must be even and heads a multiple of kv_heads")
    return c


def parse_parts(text):
    """'vit,projector' -> {'vit', 'projector'}; 'all' is every part."""
    parts = {p.strip() for p in text.split(",") if p.strip()}
    if "all" in parts:
        parts = (parts - {"all"}) | set(PARTS)
    unknown = parts - set(PARTS)
    if unknown:
        raise ValueError("unknown parts %s" % sorted(unknown))
    return parts


def part_of(name):
    """Which part a tensor belongs to, by its name: visual.merger.* is the
    projector, the rest of visual.* the vit, model.* and lm_head.* the llm."""
    if name.startswith("visual.merger."):
        return "projector"
    if name.startswith("visual."):
        return "vit"
    if name.startswith(("model.", "lm_head.")):
        return "llm"
    raise ValueError("%s: belongs to no part" % name)


# ---------------------------------------------------------------------------
# the batch: B sequences of L tokens and their images (mbatch in model.h)

class Image:
    def __init__(self, seq, token, pixels):
        self.seq, self.token = int(seq), int(token)
        self.pixels = pixels               # uint8 tensor [h, w, 3], RGB, row-major
        self.h, self.w = pixels.shape[0], pixels.shape[1]

    def tokens(self):
        """LLM tokens the image becomes: one per 2x2 patches."""
        return (self.h // (PATCH * MERGE)) * (self.w // (PATCH * MERGE))


class Batch:
    def __init__(self, B, L, image_pad, ids, pos, seg, loss, images):
        self.B, self.L, self.image_pad = int(B), int(L), int(image_pad)
        shape = (self.B, self.L)
        self.ids, self.pos, self.seg, self.loss = (
            torch.as_tensor(np.asarray(a, dtype=np.int64).reshape(shape)) for a in (ids, pos, seg, loss))
        self.images = list(images)
        self.check()

    def check(self):
        """Raises ValueError unless the batch is one model.h defines."""
        B, L = self.B, self.L
        if ((self.loss != 0) & (self.loss != 1)).any():
            raise ValueError("loss mask values must be 0 or 1")
        if (self.seg < 0).any() or (self.ids < 0).any() or (self.pos < 0).any():
            raise ValueError("negative ids, pos or seg")
        for b in range(B):
            seg = self.seg[b].tolist()
            for s in set(seg) - {0}:
                where = [r for r in range(L) if seg[r] == s]
                if where[-1] - where[0] + 1 != len(where):
                    raise ValueError("sequence %d: segment %d is not contiguous" % (b, s))
        covered = torch.zeros(B, L, dtype=torch.int64)
        for i, im in enumerate(self.images):
            if not (0 <= im.seq < B):
                raise ValueError("image %d: seq %d out of range" % (i, im.seq))
            if im.h <= 0 or im.w <= 0 or im.h % (PATCH * MERGE) or im.w % (PATCH * MERGE):
                raise ValueError("image %d: %dx%d is not a multiple of 28" % (i, im.h, im.w))
            n = im.tokens()
            if im.token < 0 or im.token + n > L:
                raise ValueError("image %d: rows %d..%d outside the sequence" % (i, im.token, im.token + n))
            if (self.ids[im.seq, im.token:im.token + n] != self.image_pad).any():
                raise ValueError("image %d: rows %d..%d of sequence %d are not all image pads"
                                 % (i, im.token, im.token + n - 1, im.seq))
            covered[im.seq, im.token:im.token + n] += 1
        pads = self.ids == self.image_pad
        if (covered > 1).any() or (pads & (covered == 0)).any():
            raise ValueError("image pads and images disagree (%d pads, %d image tokens)"
                             % (int(pads.sum()), int(covered.sum())))


def load_batch(d):
    """DIR/batch.json and its images' raw RGB files."""
    with open(os.path.join(d, "batch.json")) as f:
        j = json.load(f)
    B, L = int(j["B"]), int(j["L"])
    for k in ("ids", "pos", "seg", "loss"):
        if len(j[k]) != B * L:
            raise ValueError("batch.json: %s has %d values, not B*L = %d" % (k, len(j[k]), B * L))
    images = []
    for im in j.get("images", []):
        h, w = int(im["h"]), int(im["w"])
        with open(os.path.join(d, im["file"]), "rb") as f:
            raw = f.read()
        if len(raw) != h * w * 3:
            raise ValueError("%s: %d bytes, not h*w*3 = %d" % (im["file"], len(raw), h * w * 3))
        px = torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).reshape(h, w, 3).copy())
        images.append(Image(im["seq"], im["token"], px))
    return Batch(B, L, j["image_pad"], j["ids"], j["pos"], j["seg"], j["loss"], images)


def save_batch(d, batch):
    """The inverse of load_batch (images as img0.rgb, img1.rgb, ...)."""
    images = []
    for i, im in enumerate(batch.images):
        name = "img%d.rgb" % i
        with open(os.path.join(d, name), "wb") as f:
            f.write(im.pixels.numpy().astype(np.uint8).tobytes())
        images.append({"seq": im.seq, "token": im.token, "h": im.h, "w": im.w, "file": name})
    j = {"B": batch.B, "L": batch.L, "image_pad": batch.image_pad,
         "ids": batch.ids.flatten().tolist(), "pos": batch.pos.flatten().tolist(),
         "seg": batch.seg.flatten().tolist(), "loss": batch.loss.flatten().tolist(), "images": images}
    with open(os.path.join(d, "batch.json"), "w") as f:
        json.dump(j, f)


# ---------------------------------------------------------------------------
# the kernels' math (ops.h)

def rms_norm(x, weight, eps):
    """y = x / sqrt(mean(x^2) + eps) * weight, over the last dimension."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_angles_1d(pos, dh, theta):
    """[n, dh/2] float64: ang[r, k] = pos[r] * theta^(-2k/dh)."""
    k = torch.arange(dh // 2, dtype=torch.float64)
    return pos.to(torch.float64)[:, None] * theta ** (-2.0 * k / dh)


def rope_angles_2d(row, col, dh, theta):
    """[n, dh/2] float64, Qwen2-VL's vision rotary: with q = dh/4 frequencies
    f_k = theta^(-2k/(dh/2)), ang[r, k] = row[r] f_k, ang[r, q + k] = col[r] f_k."""
    k = torch.arange(dh // 4, dtype=torch.float64)
    f = theta ** (-2.0 * k / (dh // 2))
    return torch.cat([row.to(torch.float64)[:, None] * f, col.to(torch.float64)[:, None] * f], dim=1)


def apply_rope(x, ang):
    """Rotate-half rotary on x [n, heads, dh] with angles [n, dh/2]:
    x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin (emb = cat(ang, ang))."""
    emb = torch.cat([ang, ang], dim=-1)[:, None, :]
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def attention(q, k, v, allowed):
    """q [n, H, dh], k and v [n, Hkv, dh]; allowed [n, n] bool: row i may
    read row j.  Query head h reads kv head h // (H / Hkv); scale 1/sqrt(dh).
    A row that may read nothing outputs 0.  -> [n, H*dh]."""
    n, H, dh = q.shape
    group = H // k.shape[1]
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = torch.einsum("ihd,jhd->hij", q, k) / math.sqrt(dh)
    reads = allowed.any(dim=1)
    # a row that reads nothing gets a harmless softmax over everything and is
    # then zeroed, so no -inf - -inf NaN ever reaches autograd
    mask = allowed | ~reads[:, None]
    p = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    p = p * reads[:, None].to(p.dtype)
    return torch.einsum("hij,jhd->ihd", p, v).reshape(n, H * dh)


# ---------------------------------------------------------------------------
# the model (model.h); module names are the safetensors names (the
# Qwen2.5-VL / Qwen3 names of ../shared/DESIGN.md): visual.* (its merger is
# the projector), model.* and lm_head (the LLM)

class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


class SwiGLU(nn.Module):
    """down_proj(silu(gate_proj(x)) * up_proj(x))"""
    def __init__(self, d, f):
        super().__init__()
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class VisionAttention(nn.Module):
    """qkv: one Linear Dv -> 3 Dv (rows q, then k, then v); proj: Dv -> Dv."""
    def __init__(self, c):
        super().__init__()
        d = c["vit_dim"]
        self.heads, self.dh = c["vit_heads"], d // c["vit_heads"]
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)

    def forward(self, x, ang, allowed):
        n = x.shape[0]
        q, k, v = self.qkv(x).view(n, 3, self.heads, self.dh).unbind(1)
        return self.proj(attention(apply_rope(q, ang), apply_rope(k, ang), v, allowed))


class VisionBlock(nn.Module):
    """Pre-norm: x += attn(norm1(x)); x += mlp(norm2(x))."""
    def __init__(self, c):
        super().__init__()
        d, eps = c["vit_dim"], c["norm_eps"]
        self.norm1 = RMSNorm(d, eps)
        self.attn = VisionAttention(c)
        self.norm2 = RMSNorm(d, eps)
        self.mlp = SwiGLU(d, c["vit_mlp"])

    def forward(self, x, ang, allowed):
        x = x + self.attn(self.norm1(x), ang, allowed)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """proj: Linear 588 -> Dv, no bias, on a patch's channel-major pixels."""
    def __init__(self, c):
        super().__init__()
        self.proj = nn.Linear(PATCH_DIM, c["vit_dim"], bias=False)

    def forward(self, patches):
        return self.proj(patches)


class Merger(nn.Module):
    """The projector: 2x2 patches concatenated (4 Dv), ln_q (RMSNorm over the
    4 Dv), mlp.0 (4 Dv -> 4 Dv, bias), GELU (erf), mlp.2 (4 Dv -> D, bias)."""
    def __init__(self, c):
        super().__init__()
        d4 = 4 * c["vit_dim"]
        self.ln_q = RMSNorm(d4, c["norm_eps"])
        self.mlp = nn.Sequential(nn.Linear(d4, d4, bias=True), nn.GELU(approximate="none"),
                                 nn.Linear(d4, c["dim"], bias=True))

    def forward(self, x, gh, gw):
        """[gh*gw, Dv] -> [gh/2 * gw/2, D], tokens in row-major order of (i, j)."""
        dv = x.shape[1]
        # [2i+a, 2j+b] -> [i, j, a, b]: (2i,2j), (2i,2j+1), (2i+1,2j), (2i+1,2j+1)
        x = x.reshape(gh // 2, 2, gw // 2, 2, dv).permute(0, 2, 1, 3, 4).reshape(-1, 4 * dv)
        return self.mlp(self.ln_q(x))


class Visual(nn.Module):
    """visual.*: the ViT (patch_embed, blocks) and the merger."""
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.patch_embed = PatchEmbed(c)
        self.blocks = nn.ModuleList(VisionBlock(c) for _ in range(c["vit_layers"]))
        self.merger = Merger(c)

    def encode(self, pixels):
        """The ViT: uint8 [h, w, 3] -> [gh*gw, Dv], patches in row-major order."""
        h, w, _ = pixels.shape
        gh, gw = h // PATCH, w // PATCH
        x = pixels.to(self.patch_embed.proj.weight.dtype) / 127.5 - 1
        # [y, x, c] -> [row, py, col, px, c] -> [row, col, c, py, px]: channel-major 588 values
        patches = x.reshape(gh, PATCH, gw, PATCH, 3).permute(0, 2, 4, 1, 3).reshape(gh * gw, PATCH_DIM)
        row = torch.arange(gh).repeat_interleave(gw)
        col = torch.arange(gw).repeat(gh)
        ang = rope_angles_2d(row, col, self.c["vit_dim"] // self.c["vit_heads"], self.c["vit_rope_theta"])
        allowed = torch.ones(gh * gw, gh * gw, dtype=torch.bool)   # full attention within the image
        x = self.patch_embed(patches)
        for blk in self.blocks:
            x = blk(x, ang, allowed)
        return x

    def forward(self, pixels):
        """An image's LLM rows: the ViT, then the merger -> [h/28 * w/28, D]."""
        return self.merger(self.encode(pixels), pixels.shape[0] // PATCH, pixels.shape[1] // PATCH)


class Attention(nn.Module):
    """self_attn: q_proj, k_proj, v_proj, o_proj (no biases); q_norm and
    k_norm are RMSNorms over dh, one weight shared by the heads, applied per
    head before the rotary embedding; grouped-query attention."""
    def __init__(self, c):
        super().__init__()
        d = c["dim"]
        self.heads, self.kv_heads, self.dh = c["heads"], c["kv_heads"], d // c["heads"]
        self.q_proj = nn.Linear(d, self.heads * self.dh, bias=False)
        self.k_proj = nn.Linear(d, self.kv_heads * self.dh, bias=False)
        self.v_proj = nn.Linear(d, self.kv_heads * self.dh, bias=False)
        self.o_proj = nn.Linear(self.heads * self.dh, d, bias=False)
        self.q_norm = RMSNorm(self.dh, c["norm_eps"])
        self.k_norm = RMSNorm(self.dh, c["norm_eps"])

    def forward(self, x, ang, allowed):
        n = x.shape[0]
        q = apply_rope(self.q_norm(self.q_proj(x).view(n, self.heads, self.dh)), ang)
        k = apply_rope(self.k_norm(self.k_proj(x).view(n, self.kv_heads, self.dh)), ang)
        v = self.v_proj(x).view(n, self.kv_heads, self.dh)
        return self.o_proj(attention(q, k, v, allowed))


class DecoderLayer(nn.Module):
    """Pre-norm: x += self_attn(input_layernorm(x)); x += mlp(post_attention_layernorm(x))."""
    def __init__(self, c):
        super().__init__()
        d, eps = c["dim"], c["norm_eps"]
        self.input_layernorm = RMSNorm(d, eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(d, eps)
        self.mlp = SwiGLU(d, c["mlp"])

    def forward(self, x, ang, allowed):
        x = x + self.self_attn(self.input_layernorm(x), ang, allowed)
        return x + self.mlp(self.post_attention_layernorm(x))


class MoELayer(DecoderLayer):
    """A decoder layer whose mlp is the MoE: attention per sequence, the
    MoE over the whole batch's rows at once (capacity is per batch)."""
    def __init__(self, c):
        super().__init__(c)
        self.mlp = MoE(c)


class Router(nn.Module):
    """mlp.gate: weight [E, D] (no bias) and the selection-only buffer
    e_score_correction_bias [E]."""
    def __init__(self, d, experts):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(experts, d))
        self.register_buffer("e_score_correction_bias", torch.zeros(experts))


class MoE(nn.Module):
    """DeepSeek-V3's FFN as model.h / moe.h state it: s = sigmoid(x gate^T);
    the top_k experts by s + bias (lower index on ties); gates = chosen s
    normalized to sum 1, times routed_scale; y = shared(x) + sum of the kept
    gated experts.  Capacity: each expert keeps at most
    ceil(capacity * T * top_k / E) assignments of the T routed rows, first in
    row order then slot order.  Balance term per segment:
    alpha * sum_rows sum_i f_i * s_i / sum_j s_j, f_i = E/(top_k T) * count."""
    def __init__(self, c):
        super().__init__()
        d, self.E, self.k = c["dim"], c["n_experts"], c["top_k"]
        self.scale, self.alpha, self.capacity = c["routed_scale"], c["balance_alpha"], c["capacity"]
        self.gate = Router(d, self.E)
        if c["shared_mlp"] > 0:
            self.shared_experts = SwiGLU(d, c["shared_mlp"])
        self.experts = nn.ModuleList(SwiGLU(d, c["expert_mlp"]) for _ in range(self.E))
        self.aux = 0.0
        self.load = torch.zeros(self.E, dtype=torch.int64)

    def forward(self, x, rseg):
        """x [n, D]; rseg: list, each row's segment index or -1 (not routed)."""
        n = x.shape[0]
        y = self.shared_experts(x) if hasattr(self, "shared_experts") else torch.zeros_like(x)
        s = torch.sigmoid(F.linear(x, self.gate.weight))
        pick = (s + self.gate.e_score_correction_bias).detach()
        order = torch.sort(-pick, dim=1, stable=True).indices[:, :self.k]
        rows = [t for t in range(n) if rseg[t] >= 0]
        T = len(rows)
        cap = math.ceil(self.capacity * T * self.k / self.E) if self.capacity > 0 else n * self.k + 1
        used = [0] * self.E
        self.load = torch.zeros(self.E, dtype=torch.int64)
        self.dropped = 0
        routed = []
        for t in rows:
            chosen = order[t].tolist()
            ss = s[t, chosen]
            g = self.scale * ss / ss.sum()
            for j, e in enumerate(chosen):
                self.load[e] += 1
                if used[e] < cap:
                    used[e] += 1
                    routed.append((t, e, g[j]))
                else:
                    self.dropped += 1
        adds = [torch.zeros_like(x[0]) for _ in range(n)]
        for t, e, g in routed:
            adds[t] = adds[t] + g * self.experts[e](x[t:t + 1])[0]
        y = y + torch.stack(adds)
        aux = x.new_zeros(())
        if self.alpha > 0:
            for q in sorted({r for r in rseg if r >= 0}):
                qrows = [t for t in range(n) if rseg[t] == q]
                cnt = torch.zeros(self.E, dtype=x.dtype)
                for t in qrows:
                    cnt[order[t]] += 1
                f = self.E / (self.k * len(qrows)) * cnt
                p = s[qrows] / s[qrows].sum(1, keepdim=True)
                aux = aux + self.alpha * (p * f).sum()
        self.aux = aux
        return y


class TextModel(nn.Module):
    """model.*: embed_tokens, layers, the final norm (lm_head lives beside it)."""
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab"], c["dim"])
        moe = lambda l: c["n_experts"] > 0 and l >= c["first_moe_layer"]
        self.layers = nn.ModuleList(MoELayer(c) if moe(l) else DecoderLayer(c) for l in range(c["layers"]))
        self.norm = RMSNorm(c["dim"], c["norm_eps"])


class MvlModel(nn.Module):
    """model(batch) -> (loss_sum float64 tensor, count)."""

    def __init__(self, config, seed=0, init_std=0.02):
        super().__init__()
        self.c = make_config(config)
        self.visual = Visual(self.c)
        self.model = TextModel(self.c)
        if not self.c["tied"]:
            self.lm_head = nn.Linear(self.c["dim"], self.c["vocab"], bias=False)
        self.reset_parameters(seed, init_std)

    def reset_parameters(self, seed, std=0.02):
        """norms 1, biases 0, everything else normal(0, std) (not the C side's stream)."""
        g = torch.Generator().manual_seed(seed)
        norms = {id(m.weight) for m in self.modules() if isinstance(m, RMSNorm)}
        with torch.no_grad():
            for name, p in self.named_parameters():
                if id(p) in norms:
                    p.fill_(1)
                elif name.endswith(".bias"):
                    p.zero_()
                else:
                    p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * std)

    def head_weight(self):
        return self.model.embed_tokens.weight if self.c["tied"] else self.lm_head.weight

    def set_trainable(self, parts):
        for name, p in self.named_parameters():
            p.requires_grad_(part_of(name) in parts)
            p.grad = None

    def hidden(self, batch):
        """[B, L, D]: the LLM's output after the final norm."""
        if int(batch.ids.max()) >= self.c["vocab"]:
            raise ValueError("token id %d >= vocab %d" % (int(batch.ids.max()), self.c["vocab"]))
        x = self.model.embed_tokens(batch.ids)
        # image pad rows are replaced (not added to) by the merger outputs
        for im in batch.images:
            v = self.visual(im.pixels)
            rows = torch.arange(im.token, im.token + v.shape[0])
            x = x.index_put((torch.full_like(rows, im.seq), rows), v)
        dh = self.c["dim"] // self.c["heads"]
        idx = torch.arange(batch.L)
        self.aux = x.new_zeros((), dtype=torch.float64)
        if self.c["n_experts"] > 0:
            return self._hidden_moe(batch, x, dh, idx)
        out = []
        for b in range(batch.B):   # sequences never see each other
            seg = batch.seg[b]
            allowed = (seg[:, None] == seg[None, :]) & (seg[:, None] > 0) & (idx[None, :] <= idx[:, None])
            ang = rope_angles_1d(batch.pos[b], dh, self.c["rope_theta"])
            h = x[b]
            for layer in self.model.layers:
                h = layer(h, ang, allowed)
            out.append(self.model.norm(h))
        return torch.stack(out)

    def _hidden_moe(self, batch, x, dh, idx):
        """hidden() layer by layer: attention per sequence, each MoE over all
        B*L rows (row order = sequence-major), segments numbered in order."""
        B, L = batch.B, batch.L
        rseg, q = [], -1
        for b in range(B):
            for r in range(L):
                sg = int(batch.seg[b, r])
                if sg > 0 and (r == 0 or int(batch.seg[b, r - 1]) != sg):
                    q += 1
                rseg.append(q if sg > 0 else -1)
        allowed = [(batch.seg[b][:, None] == batch.seg[b][None, :]) & (batch.seg[b][:, None] > 0)
                   & (idx[None, :] <= idx[:, None]) for b in range(B)]
        ang = [rope_angles_1d(batch.pos[b], dh, self.c["rope_theta"]) for b in range(B)]
        h = x
        for layer in self.model.layers:
            h = torch.stack([h[b] + layer.self_attn(layer.input_layernorm(h[b]), ang[b], allowed[b])
                             for b in range(B)])
            flat = layer.post_attention_layernorm(h.reshape(B * L, -1))
            if isinstance(layer.mlp, MoE):
                h = h + layer.mlp(flat, rseg).reshape(B, L, -1)
                self.aux = self.aux + layer.mlp.aux.to(torch.float64)
            else:
                h = h + layer.mlp(flat).reshape(B, L, -1)
        return self.model.norm(h)

    def moe_layers(self):
        return [l.mlp for l in self.model.layers if isinstance(l.mlp, MoE)]

    def balance(self):
        """After an optimizer step: bias_i += gamma * sign(mean load - load_i)."""
        with torch.no_grad():
            for mo in self.moe_layers():
                load = mo.load.to(torch.float64)
                step = torch.sign(load.mean() - load).to(mo.gate.e_score_correction_bias.dtype)
                mo.gate.e_score_correction_bias += step * np.float32(self.c["bias_gamma"])

    def forward(self, batch):
        h = self.hidden(batch)
        b, r, target = loss_pairs(batch)
        logits = F.linear(h[b, r], self.head_weight())
        ce = F.cross_entropy(logits, target, reduction="none")
        return ce.to(torch.float64).sum(), int(target.numel())


def loss_pairs(batch):
    """(b, r, target): row r of sequence b predicts ids[b, r+1] where r+1 is
    in the same segment (seg[r+1] == seg[r] > 0) and loss[b, r+1] == 1."""
    s, m = batch.seg, batch.loss
    ok = (s[:, 1:] == s[:, :-1]) & (s[:, :-1] > 0) & (m[:, 1:] == 1)
    b, r = ok.nonzero(as_tuple=True)
    return b, r, batch.ids[b, r + 1]


def load_weights(model, tensors):
    """Copies tensors into model; raises ValueError naming missing, extra or
    misshapen tensors."""
    sd = model.state_dict()
    missing = sorted(set(sd) - set(tensors))
    extra = sorted(set(tensors) - set(sd))
    shapes = ["%s %s != %s" % (k, list(tensors[k].shape), list(sd[k].shape))
              for k in sd if k in tensors and tuple(tensors[k].shape) != tuple(sd[k].shape)]
    if missing or extra or shapes:
        raise ValueError("missing %s; extra %s; shapes %s" % (missing[:5], extra[:5], shapes[:5]))
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.copy_(torch.from_numpy(np.asarray(tensors[k])))
        for k, p in model.named_buffers():       # the MoE selection biases
            p.copy_(torch.from_numpy(np.asarray(tensors[k])))


def adam_losses(model, batch, parts, steps, lr, beta1, beta2, eps, wd):
    """The loss (loss_sum / count) before each of `steps` AdamW steps on the
    trainable parts, weight decay on every trainable tensor."""
    model.set_trainable(parts)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd)
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss_sum, count = model(batch)
        loss = loss_sum / count
        losses.append(float(loss))
        (loss + model.aux / count).backward()    # MoE: the balance term trains too
        for p in params:      # a tensor the batch does not reach still decays
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        opt.step()
        if "llm" in parts:
            model.balance()   # after the step, from the step's load
    return losses


# ---------------------------------------------------------------------------
# reporting

class Report:
    """Prints `ok NAME` / `not ok NAME: WHY` (or collects them) and counts."""

    def __init__(self, out=None, verbose=False):
        self.out = out if out is not None else sys.stdout
        self.verbose = verbose
        self.failed = 0
        self.lines = []

    def check(self, name, ok, why=""):
        why = " ".join(str(why).split())
        why = why if len(why) <= 400 else why[:400] + "..."
        line = "ok %s" % name if ok else "not ok %s: %s" % (name, why)
        self.failed += 0 if ok else 1
        self.lines.append(line)
        print(line, file=self.out, flush=True)
        return ok

    def note(self, text):
        if self.verbose:
            print("# " + text, file=self.out, flush=True)

    def run(self, name, fn):
        """A check whose function raises on failure (AssertionError: why)."""
        t0 = time.time()
        try:
            fn()
        except Exception as e:  # a broken check is a failed check
            if not isinstance(e, AssertionError):
                traceback.print_exc(file=sys.stderr)
            return self.check(name, False, "%s: %s" % (type(e).__name__, e))
        finally:
            self.note("%s: %.2f s" % (name, time.time() - t0))
        return self.check(name, True)


def rel_err(c, t):
    c, t = np.asarray(c, np.float64), np.asarray(t, np.float64)
    return float(np.linalg.norm(c - t) / max(np.linalg.norm(t), 1e-8))


# ---------------------------------------------------------------------------
# compare DIR: the C side's numbers against this model's

def compare(d, report, dtype=torch.float32):
    try:
        weights, wmeta = read_safetensors(os.path.join(d, "weights.safetensors"))
        config = json.loads(wmeta["config"])
        parts = parse_parts(wmeta.get("trainable", ""))
        model = MvlModel(config).to(dtype)
        batch = load_batch(d)
        result, rmeta = read_safetensors(os.path.join(d, "result.safetensors"))
    except Exception as e:
        report.check("parity load", False, "%s: %s" % (type(e).__name__, e))
        return report
    try:
        load_weights(model, weights)
    except ValueError as e:
        report.check("parity weights", False, e)
        return report
    report.check("parity weights", True)
    names = [n for n, _ in model.named_parameters()]
    trainable = [n for n in names if part_of(n) in parts]
    report.note("config %s; trainable %s" % (json.dumps(model.c), ",".join(sorted(parts))))

    model.set_trainable(parts)
    try:
        loss_sum, count = model(batch)
        if trainable:
            ((loss_sum + model.aux) * float(rmeta["scale"])).backward()
    except Exception as e:
        report.check("parity forward", False, "%s: %s" % (type(e).__name__, e))
        return report

    c_count = int(result["count"].reshape(-1)[0]) if "count" in result else None
    report.check("parity count", c_count == count, "C %s, torch %d" % (c_count, count))
    if "loss_sum" not in result:
        report.check("parity loss", False, "result has no loss_sum")
    else:
        c_loss, t_loss = float(result["loss_sum"].reshape(-1)[0]), float(loss_sum)
        e = abs(c_loss - t_loss) / max(abs(t_loss), 1e-8)
        report.note("loss_sum C %.9g torch %.9g rel %.2e" % (c_loss, t_loss, e))
        report.check("parity loss", e <= TOL_LOSS, "C %.9g, torch %.9g, rel err %.2e" % (c_loss, t_loss, e))

    if "aux_sum" in result:
        c_aux, t_aux = float(result["aux_sum"].reshape(-1)[0]), float(model.aux)
        e = abs(c_aux - t_aux) / max(abs(t_aux), 1e-8)
        report.note("aux_sum C %.9g torch %.9g rel %.2e" % (c_aux, t_aux, e))
        report.check("parity moe balance term", e <= TOL_LOSS and t_aux > 0,
                     "C %.9g, torch %.9g, rel err %.2e" % (c_aux, t_aux, e))
    if "dropped" in result:
        c_drop = int(result["dropped"].reshape(-1)[0])
        t_drop = sum(mo.dropped for mo in model.moe_layers())
        report.check("parity moe dropped", c_drop == t_drop, "C %d, torch %d" % (c_drop, t_drop))
    params = dict(model.named_parameters())
    for n in trainable:
        g_c = result.get("grad." + n)
        if g_c is None:
            report.check("parity grad " + n, False, "missing from result")
            continue
        g_t = params[n].grad
        g_t = torch.zeros_like(params[n]) if g_t is None else g_t
        g_t = g_t.detach().to(torch.float64).numpy()
        if g_c.shape != g_t.shape:
            report.check("parity grad " + n, False, "shape %s, expected %s" % (list(g_c.shape), list(g_t.shape)))
            continue
        e = rel_err(g_c, g_t)
        diff = np.abs(g_c.astype(np.float64) - g_t)
        report.note("grad %s: rel %.2e, max abs err %.2e at %s, max |g| %.2e"
                    % (n, e, diff.max(), list(np.unravel_index(diff.argmax(), diff.shape)), np.abs(g_t).max()))
        report.check("parity grad " + n, e <= TOL_GRAD,
                     "rel err %.2e > %g (|g_torch| %.3e, |g_C| %.3e)"
                     % (e, TOL_GRAD, np.linalg.norm(g_t), np.linalg.norm(g_c)))
    stray = sorted(k for k in result if k.startswith("grad.") and k[5:] not in trainable)
    report.check("parity frozen", not stray, "gradients for frozen or unknown tensors: %s" % stray[:8])

    if "adam_losses" in result:
        try:
            steps = int(rmeta["adam_steps"])
            c_losses = result["adam_losses"].reshape(-1)
            if len(c_losses) != steps:
                raise ValueError("adam_losses has %d values, adam_steps says %d" % (len(c_losses), steps))
            load_weights(model, weights)
            t_losses = adam_losses(model, batch, parts, steps, float(rmeta["adam_lr"]),
                                   float(rmeta["adam_beta1"]), float(rmeta["adam_beta2"]),
                                   float(rmeta["adam_eps"]), float(rmeta["adam_wd"]))
        except Exception as e:
            report.check("parity adam", False, "%s: %s" % (type(e).__name__, e))
            return report
        for i, (c, t) in enumerate(zip(c_losses, t_losses)):
            e = abs(float(c) - t) / max(abs(t), 1e-8)
            report.note("adam step %d: C %.9g torch %.9g rel %.2e" % (i, c, t, e))
            report.check("parity adam loss %d" % i, e <= TOL_ADAM, "C %.9g, torch %.9g, rel err %.2e" % (c, t, e))
        for n, b in model.named_buffers():      # the selection biases after the steps' updates
            c_b = result.get("after." + n)
            if c_b is None:
                report.check("parity bias after adam " + n, False, "missing from result")
                continue
            d = float(np.abs(c_b.astype(np.float64) - b.detach().to(torch.float64).numpy()).max())
            report.check("parity bias after adam " + n, d <= 1e-6, "max abs diff %.3g" % d)
    return report


def write_result(d, model, batch, parts, scale, adam=None):
    """result.safetensors as the C side writes it, computed by this model
    (selftest; also a template for the C side's writer).  adam: dict with
    lr, beta1, beta2, eps, wd, steps."""
    model.set_trainable(parts)
    loss_sum, count = model(batch)
    tensors = {"loss_sum": np.array([float(loss_sum)]), "count": np.array([count])}
    meta = {"scale": repr(scale)}
    if any(p.requires_grad for p in model.parameters()):
        (loss_sum * scale).backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            tensors["grad." + n] = p.grad if p.grad is not None else torch.zeros_like(p)
    if adam:
        saved = {k: v.clone() for k, v in model.state_dict().items()}
        tensors["adam_losses"] = np.array(adam_losses(model, batch, parts, adam["steps"], adam["lr"], adam["beta1"],
                                                      adam["beta2"], adam["eps"], adam["wd"]))
        model.load_state_dict(saved)
        meta.update({"adam_" + k: repr(v) for k, v in adam.items()})
    write_safetensors(os.path.join(d, "result.safetensors"), tensors, meta)


# ---------------------------------------------------------------------------
# selftest: internal consistency, no C side

MICRO = {"vit_dim": 16, "vit_layers": 1, "vit_heads": 2, "vit_mlp": 24,
         "dim": 16, "layers": 2, "heads": 4, "kv_heads": 2, "mlp": 24, "vocab": 32,
         "tied": 0, "norm_eps": 1e-6, "rope_theta": 10000.0, "vit_rope_theta": 10000.0}
VS, VE, PAD = 29, 30, 31     # <|vision_start|>, <|vision_end|>, <|image_pad|> in the micro vocab


def micro_model(tied=0, dtype=torch.float64, seed=1):
    """Larger-than-default weights, non-unit norms and nonzero biases, so
    that attention is far from uniform and every tensor matters."""
    m = MvlModel(dict(MICRO, tied=tied), seed=seed, init_std=0.25).to(dtype)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if p.dim() == 1:      # the norms (ln_q included) and the biases
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64).to(dtype))
    return m


def micro_batch(seed=2):
    """Two sequences of 20 tokens, two segments each, then padding:
      seq 0: [vs, 6 pads (56x84 image), ve, 3 text] [6 text] [3 padding]
      seq 1: [5 text] [vs, 2 pads (28x56 image), ve, 5 text] [6 padding]
    positions restart per segment; one padding row has loss 1 (must not count)."""
    rng = np.random.RandomState(seed)
    L = 20
    layout = [
        [(1, [VS] + [PAD] * 6 + [VE] + [None] * 3), (2, [None] * 6), (0, [0] * 3)],
        [(1, [None] * 5), (2, [VS] + [PAD] * 2 + [VE] + [None] * 5), (0, [0] * 6)],
    ]
    ids, pos, seg, loss = [], [], [], []
    for seq in layout:
        for s, toks in seq:
            for i, t in enumerate(toks):
                ids.append(int(rng.randint(0, VS)) if t is None else t)
                pos.append(i if s else 0)
                seg.append(s)
                loss.append(1 if (t is None or t == VE) and rng.rand() < 0.85 else 0)
    loss[L + 16] = 1                              # a padding row of seq 1
    images = [Image(0, 1, torch.from_numpy(rng.randint(0, 256, (56, 84, 3)).astype(np.uint8))),
              Image(1, 6, torch.from_numpy(rng.randint(0, 256, (28, 56, 3)).astype(np.uint8)))]
    return Batch(2, L, PAD, ids, pos, seg, loss, images)


def edited(batch, ids=None, pos=None, pixels=None):
    """A copy of batch with some ids / pos (dicts (b, r) -> value) or one
    image's pixels (index -> array) changed."""
    new_ids, new_pos = batch.ids.clone(), batch.pos.clone()
    for (b, r), v in (ids or {}).items():
        new_ids[b, r] = v
    for (b, r), v in (pos or {}).items():
        new_pos[b, r] = v
    images = [Image(im.seq, im.token, (pixels or {}).get(i, im.pixels)) for i, im in enumerate(batch.images)]
    return Batch(batch.B, batch.L, batch.image_pad, new_ids, new_pos, batch.seg, batch.loss, images)


def selftest(report):
    torch.manual_seed(0)
    tmp = tempfile.mkdtemp(prefix="mvl-parity-")
    try:
        _selftest(report, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report


def _selftest(report, tmp):
    batch = micro_batch()
    m64 = micro_model()

    def roundtrip():
        m = micro_model(dtype=torch.float32)
        meta = {"config": json.dumps(m.c), "trainable": "vit,projector", "format": "pt"}
        path = os.path.join(tmp, "rt.safetensors")
        write_safetensors(path, m.state_dict(), meta)
        t, md = read_safetensors(path)
        assert md == meta, "metadata %r" % md
        assert list(t) == list(m.state_dict()), "names or order differ"
        for k, v in m.state_dict().items():
            assert t[k].dtype == np.float32 and np.array_equal(t[k], v.numpy()), k
        with open(path, "rb") as f:
            hlen = struct.unpack("<Q", f.read(8))[0]
        assert hlen % 8 == 0, "header not padded to 8"
        m2 = MvlModel(m.c)
        load_weights(m2, t)
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    report.run("selftest safetensors roundtrip", roundtrip)

    def names():
        """state_dict names and shapes are model.h's list, untied and tied."""
        for tied in (0, 1):
            c = make_config(dict(MICRO, tied=tied))
            Dv, Fv, D, Fl, V = c["vit_dim"], c["vit_mlp"], c["dim"], c["mlp"], c["vocab"]
            dh = D // c["heads"]
            want = {"visual.patch_embed.proj.weight": [Dv, PATCH_DIM]}
            for i in range(c["vit_layers"]):
                b = "visual.blocks.%d." % i
                want.update({b + "norm1.weight": [Dv], b + "norm2.weight": [Dv],
                             b + "attn.qkv.weight": [3 * Dv, Dv], b + "attn.proj.weight": [Dv, Dv],
                             b + "mlp.gate_proj.weight": [Fv, Dv], b + "mlp.up_proj.weight": [Fv, Dv],
                             b + "mlp.down_proj.weight": [Dv, Fv]})
            want.update({"visual.merger.ln_q.weight": [4 * Dv],
                         "visual.merger.mlp.0.weight": [4 * Dv, 4 * Dv], "visual.merger.mlp.0.bias": [4 * Dv],
                         "visual.merger.mlp.2.weight": [D, 4 * Dv], "visual.merger.mlp.2.bias": [D],
                         "model.embed_tokens.weight": [V, D], "model.norm.weight": [D]})
            for i in range(c["layers"]):
                b = "model.layers.%d." % i
                want.update({b + "input_layernorm.weight": [D], b + "post_attention_layernorm.weight": [D],
                             b + "self_attn.q_proj.weight": [c["heads"] * dh, D],
                             b + "self_attn.k_proj.weight": [c["kv_heads"] * dh, D],
                             b + "self_attn.v_proj.weight": [c["kv_heads"] * dh, D],
                             b + "self_attn.o_proj.weight": [D, c["heads"] * dh],
                             b + "self_attn.q_norm.weight": [dh], b + "self_attn.k_norm.weight": [dh],
                             b + "mlp.gate_proj.weight": [Fl, D], b + "mlp.up_proj.weight": [Fl, D],
                             b + "mlp.down_proj.weight": [D, Fl]})
            if not tied:
                want["lm_head.weight"] = [V, D]
            got = {k: list(v.shape) for k, v in MvlModel(c).state_dict().items()}
            assert got == want, "tied %d: extra %s, missing %s, shapes %s" % (
                tied, sorted(set(got) - set(want)), sorted(set(want) - set(got)),
                [k for k in got if k in want and got[k] != want[k]])
            parts = {k: part_of(k) for k in got}
            assert all((p == "projector") == k.startswith("visual.merger.") for k, p in parts.items()), parts
            assert {p for p in parts.values()} == set(PARTS), parts

    report.run("selftest tensor names and shapes are model.h's", names)

    def qkv_rows():
        """visual attn.qkv: rows q, then k, then v, each [Dv, Dv] as separate Linears would be."""
        m = micro_model()
        att = m.visual.blocks[0].attn
        n, Dv = 7, m.c["vit_dim"]
        g = torch.Generator().manual_seed(8)
        x = torch.randn(n, Dv, generator=g, dtype=torch.float64)
        ang = torch.randn(n, att.dh // 2, generator=g, dtype=torch.float64)
        allowed = torch.rand(n, n, generator=g) < 0.6
        wq, wk, wv = att.qkv.weight[:Dv], att.qkv.weight[Dv:2 * Dv], att.qkv.weight[2 * Dv:]
        split = lambda t: t.view(n, att.heads, att.dh)
        with torch.no_grad():
            want = att.proj(attention(apply_rope(split(x @ wq.T), ang), apply_rope(split(x @ wk.T), ang),
                                      split(x @ wv.T), allowed))
            got = att(x, ang, allowed)
        assert float((got - want).abs().max()) < 1e-12, "qkv rows are not q, k, v"
    report.run("selftest vit qkv row order", qkv_rows)

    def batch_roundtrip():
        d = os.path.join(tmp, "b")
        os.makedirs(d)
        save_batch(d, batch)
        b2 = load_batch(d)
        for k in ("ids", "pos", "seg", "loss"):
            assert torch.equal(getattr(batch, k), getattr(b2, k)), k
        assert [(i.seq, i.token, i.h, i.w) for i in batch.images] == [(i.seq, i.token, i.h, i.w) for i in b2.images]
        assert all(torch.equal(a.pixels, b.pixels) for a, b in zip(batch.images, b2.images))
    report.run("selftest batch roundtrip", batch_roundtrip)

    def batch_rejects():
        def bad(**kw):
            args = dict(B=batch.B, L=batch.L, image_pad=PAD, ids=batch.ids, pos=batch.pos, seg=batch.seg,
                        loss=batch.loss, images=batch.images)
            args.update(kw)
            try:
                Batch(**args)
            except ValueError:
                return
            raise AssertionError("accepted: %s" % sorted(kw))
        ids = batch.ids.clone()
        ids[0, 7] = PAD                                   # one pad too many
        bad(ids=ids)
        bad(images=[Image(0, 2, batch.images[0].pixels), batch.images[1]])   # image not on its pads
        bad(images=batch.images[:1])                      # pads without an image
        seg = batch.seg.clone()
        seg[0, 15] = 1                                    # segment 1 split in two
        bad(seg=seg)
    report.run("selftest batch validation", batch_rejects)

    def angles():
        theta = 10000.0
        a = rope_angles_2d(torch.tensor([2]), torch.tensor([3]), 8, theta)[0]
        want = [2.0, 2.0 * theta ** -0.5, 3.0, 3.0 * theta ** -0.5]   # dh=8: q=2, f = 1, theta^(-1/2)
        assert torch.allclose(a, torch.tensor(want, dtype=torch.float64), rtol=1e-15), a
        a = rope_angles_1d(torch.tensor([5]), 8, theta)[0]
        want = [5.0 * theta ** (-2.0 * k / 8) for k in range(4)]
        assert torch.allclose(a, torch.tensor(want, dtype=torch.float64), rtol=1e-15), a
    report.run("selftest rope angles", angles)

    def rotate_half():
        g = torch.Generator().manual_seed(3)
        x = torch.randn(5, 3, 8, generator=g, dtype=torch.float64)
        ang = torch.randn(5, 4, generator=g, dtype=torch.float64)
        y = apply_rope(x, ang)
        x1, x2, c, s = x[..., :4], x[..., 4:], ang.cos()[:, None], ang.sin()[:, None]
        assert torch.allclose(y, torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1), atol=1e-14)
        # relative: <rope(q, p), rope(k, p')> depends on p - p' only
        q, k = x[0:1], x[1:2]
        dots = [(apply_rope(q, rope_angles_1d(torch.tensor([p + 7]), 8, 1e4)) *
                 apply_rope(k, rope_angles_1d(torch.tensor([p]), 8, 1e4))).sum() for p in (0, 11, 100)]
        assert max(abs(float(d - dots[0])) for d in dots) < 1e-10, dots
    report.run("selftest rope rotate-half", rotate_half)

    def patchify_merger_loops():
        """The patch vectors and the 2x2 merge order, by explicit loops."""
        im = batch.images[0]
        gh, gw = im.h // PATCH, im.w // PATCH
        px = im.pixels.numpy().astype(np.float64)
        want = np.zeros((gh * gw, PATCH_DIM))
        for r in range(gh):
            for c in range(gw):
                for ch in range(3):
                    for y in range(PATCH):
                        for x in range(PATCH):
                            want[r * gw + c, ch * PATCH * PATCH + y * PATCH + x] = \
                                px[r * PATCH + y, c * PATCH + x, ch] / 127.5 - 1
        seen = {}
        hook = m64.visual.patch_embed.register_forward_hook(lambda mod, inp, out: seen.__setitem__("x", inp[0]))
        with torch.no_grad():
            v = m64.visual.encode(im.pixels)
            got = m64.visual(im.pixels)
        hook.remove()
        assert np.abs(seen["x"].numpy() - want).max() < 1e-12, "patch vectors differ"
        cat = [torch.cat([v[(2 * i) * gw + 2 * j], v[(2 * i) * gw + 2 * j + 1],
                          v[(2 * i + 1) * gw + 2 * j], v[(2 * i + 1) * gw + 2 * j + 1]])
               for i in range(gh // 2) for j in range(gw // 2)]
        mg = m64.visual.merger
        fc1, fc2 = mg.mlp[0], mg.mlp[2]
        with torch.no_grad():
            x = torch.stack(cat)
            x = x / torch.sqrt((x * x).mean(-1, keepdim=True) + m64.c["norm_eps"]) * mg.ln_q.weight
            ref = F.gelu(x @ fc1.weight.T + fc1.bias, approximate="none") @ fc2.weight.T + fc2.bias
        assert float((ref - got).abs().max()) < 1e-12, "merge order differs"
    report.run("selftest patchify and merger order by loops", patchify_merger_loops)

    def attention_loops():
        """attention() against a loop over rows and heads: GQA mapping, the
        1/sqrt(dh) scale, rows that read nothing."""
        g = torch.Generator().manual_seed(5)
        n, H, Hkv, dh = 6, 4, 2, 4
        q = torch.randn(n, H, dh, generator=g, dtype=torch.float64)
        k = torch.randn(n, Hkv, dh, generator=g, dtype=torch.float64)
        v = torch.randn(n, Hkv, dh, generator=g, dtype=torch.float64)
        seg = [1, 1, 2, 2, 2, 0]
        allowed = torch.tensor([[seg[i] == seg[j] > 0 and j <= i for j in range(n)] for i in range(n)])
        want = torch.zeros(n, H, dh, dtype=torch.float64)
        for i in range(n):
            for h in range(H):
                js = [j for j in range(n) if allowed[i, j]]
                if not js:
                    continue
                kv = h // (H // Hkv)
                p = torch.softmax(torch.stack([q[i, h] @ k[j, kv] for j in js]) / math.sqrt(dh), 0)
                want[i, h] = sum(p[t] * v[j, kv] for t, j in enumerate(js))
        got = attention(q, k, v, allowed)
        err = float((got - want.reshape(n, H * dh)).abs().max())
        assert err < 1e-12, "differs by %.3g" % err
    report.run("selftest attention by loops", attention_loops)

    def pads_replaced():
        """Image pad rows are replaced, not added to: the pad token's
        embedding changes nothing and gets no gradient."""
        m = micro_model()
        with torch.no_grad():
            a = m.hidden(batch)
            m.model.embed_tokens.weight[PAD] += 1
            b = m.hidden(batch)
        assert float((a - b).abs().max()) == 0, "the pad embedding reaches the model"
        m(batch)[0].backward()
        assert float(m.model.embed_tokens.weight.grad[PAD].abs().max()) == 0, "the pad embedding has a gradient"
    report.run("selftest image pads replaced", pads_replaced)

    with torch.no_grad():
        h0 = m64.hidden(batch)

    def unchanged_changed(new, same, changed, what):
        """rows `same` (list of (b, r)) equal h0, rows `changed` differ."""
        with torch.no_grad():
            h1 = m64.hidden(new)
        for b, r in same:
            d = float((h1[b, r] - h0[b, r]).abs().max())
            assert d < 1e-12, "%s: row (%d,%d) moved by %.3g" % (what, b, r, d)
        for b, r in changed:
            d = float((h1[b, r] - h0[b, r]).abs().max())
            assert d > 1e-6, "%s: row (%d,%d) did not change" % (what, b, r)

    seg0_1 = [(0, r) for r in range(0, 11)]
    seg0_2 = [(0, r) for r in range(11, 17)]
    seg1_1 = [(1, r) for r in range(0, 5)]
    seg1_2 = [(1, r) for r in range(5, 14)]
    pad0 = [(0, r) for r in range(17, 20)]
    pad1 = [(1, r) for r in range(14, 20)]
    everything = seg0_1 + seg0_2 + seg1_1 + seg1_2 + pad0 + pad1

    def other_segment():
        unchanged_changed(edited(batch, ids={(0, 9): (int(batch.ids[0, 9]) + 1) % VS}),   # segment 1 of seq 0
                          seg0_2 + seg1_1 + seg1_2 + [(0, r) for r in range(9)], [(0, 9), (0, 10)],
                          "seq 0 segment 1 token edited")
        unchanged_changed(edited(batch, ids={(0, 12): (int(batch.ids[0, 12]) + 1) % VS}),  # segment 2 of seq 0
                          seg0_1 + seg1_1 + seg1_2, [(0, r) for r in range(12, 17)], "seq 0 segment 2 token edited")
    report.run("selftest mask other segment", other_segment)
    report.run("selftest mask other sequence and image", lambda: unchanged_changed(
        edited(batch, pixels={1: 255 - batch.images[1].pixels}),        # seq 1's image
        seg0_1 + seg0_2 + seg1_1 + [(1, 5)], [(1, r) for r in range(6, 14)], "seq 1 image edited"))
    report.run("selftest mask own image", lambda: unchanged_changed(
        edited(batch, pixels={0: 255 - batch.images[0].pixels}),
        seg0_2 + seg1_1 + seg1_2 + [(0, 0)], [(0, r) for r in range(1, 11)], "seq 0 image edited"))
    report.run("selftest mask padding isolated", lambda: unchanged_changed(
        edited(batch, ids={(0, 18): 5, (1, 15): 7}),
        [x for x in everything if x not in ((0, 18), (1, 15))], [], "padding ids edited"))
    report.run("selftest mask causal", lambda: unchanged_changed(
        edited(batch, ids={(1, 3): (int(batch.ids[1, 3]) + 1) % VS}),
        [(1, 0), (1, 1), (1, 2)] + seg0_1 + seg0_2 + seg1_2, [(1, 3), (1, 4)], "seq 1 row 3 edited"))
    report.run("selftest position shift", lambda: _shift_check(m64, batch, h0))

    def pairs():
        count, total = 0, 0.0
        with torch.no_grad():
            h = m64.hidden(batch)
            loss_sum, n = m64(batch)
        for b in range(batch.B):
            for r in range(batch.L - 1):
                s0, s1 = int(batch.seg[b, r]), int(batch.seg[b, r + 1])
                if s0 > 0 and s0 == s1 and int(batch.loss[b, r + 1]) == 1:
                    logp = torch.log_softmax(h[b, r] @ m64.head_weight().T, -1)
                    total -= float(logp[batch.ids[b, r + 1]])
                    count += 1
        assert n == count and count > 10, "count %d, loop %d" % (n, count)
        assert abs(float(loss_sum) - total) < 1e-10 * abs(total), (float(loss_sum), total)
    report.run("selftest loss pairs", pairs)

    def gradcheck_full():
        names = ["visual.blocks.0.norm2.weight", "visual.merger.ln_q.weight", "visual.merger.mlp.0.bias",
                 "visual.merger.mlp.2.bias", "model.layers.0.self_attn.k_norm.weight",
                 "model.layers.1.self_attn.q_norm.weight", "model.norm.weight"]
        _gradcheck(m64, batch, names, fast=False)
    report.run("selftest gradcheck float64 every element of the norms and biases", gradcheck_full)

    report.run("selftest directional derivative float64 every tensor, untied",
               lambda: _directional_check(m64, batch))
    report.run("selftest directional derivative float64 every tensor, tied",
               lambda: _directional_check(micro_model(tied=1), batch))

    def frozen():
        m = micro_model()
        m.set_trainable({"projector", "llm"})
        m(batch)[0].backward()
        for n, p in m.named_parameters():
            assert (p.grad is None) == (part_of(n) == "vit"), n
    report.run("selftest frozen vit gets no gradient", frozen)

    def adamw():
        g = torch.Generator().manual_seed(4)
        p0 = torch.randn(10, generator=g)
        grads = [torch.randn(10, generator=g) for _ in range(3)]
        lr, b1, b2, eps, wd = 1e-2, 0.9, 0.95, 1e-8, 0.1
        p = p0.clone().requires_grad_()
        opt = torch.optim.AdamW([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
        q, mm, vv = p0.double(), torch.zeros(10, dtype=torch.float64), torch.zeros(10, dtype=torch.float64)
        for t, gr in enumerate(grads, 1):
            p.grad = gr.clone()
            opt.step()
            gd = gr.double()
            q = q * (1 - lr * wd)                        # decoupled decay first
            mm = b1 * mm + (1 - b1) * gd
            vv = b2 * vv + (1 - b2) * gd * gd
            q = q - lr * (mm / (1 - b1 ** t)) / ((vv / (1 - b2 ** t)).sqrt() + eps)
        assert torch.allclose(p.detach().double(), q, atol=1e-6), (p, q)
    report.run("selftest adamw formula", adamw)

    # the compare path, on a directory written the way the C side writes it
    d = os.path.join(tmp, "cmp")
    os.makedirs(d)
    m32 = micro_model(dtype=torch.float32)
    parts = {"projector", "llm"}
    write_safetensors(os.path.join(d, "weights.safetensors"), m32.state_dict(),
                      {"config": json.dumps(m32.c), "trainable": "projector,llm", "format": "pt"})
    save_batch(d, batch)
    adam = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "wd": 0.1, "steps": 3}
    write_result(d, m32, batch, parts, 0.5, adam)

    def accepts():
        sub = compare(d, Report(out=io.StringIO()))
        bad = [l for l in sub.lines if not l.startswith("ok ")]
        assert not bad, bad
        ngrad = sum(1 for l in sub.lines if l.startswith("ok parity grad "))
        want = sum(1 for n, _ in m32.named_parameters() if part_of(n) in parts)
        assert ngrad == want, "%d grad checks, %d trainable tensors" % (ngrad, want)
        assert sum(1 for l in sub.lines if l.startswith("ok parity adam loss ")) == 3, sub.lines
    report.run("selftest compare accepts its own result", accepts)

    def rejects():
        res, meta = read_safetensors(os.path.join(d, "result.safetensors"))
        res["grad.visual.merger.mlp.0.weight"] = res["grad.visual.merger.mlp.0.weight"] * 1.01
        res["grad.visual.blocks.0.attn.qkv.weight"] = np.zeros((48, 16), np.float32)
        res["loss_sum"] = res["loss_sum"] * (1 + 1e-3)
        res["adam_losses"] = res["adam_losses"] * np.array([1, 1, 1.001], np.float32)
        write_safetensors(os.path.join(d, "result.safetensors"), res, meta)
        sub = compare(d, Report(out=io.StringIO()))
        failed = sorted(l.split(":")[0] for l in sub.lines if l.startswith("not ok "))
        want = sorted(["not ok parity grad visual.merger.mlp.0.weight", "not ok parity frozen",
                       "not ok parity loss", "not ok parity adam loss 2"])
        assert failed == want, failed
    report.run("selftest compare rejects a wrong result", rejects)


def _shift_check(model, batch, h0):
    """Shifting every position of a segment by a constant changes nothing
    (rotary is relative), while changing one position does."""
    shifted = edited(batch, pos={(0, r): int(batch.pos[0, r]) + 13 for r in range(11, 17)})
    with torch.no_grad():
        h1 = model.hidden(shifted)
        h2 = model.hidden(edited(batch, pos={(0, 12): int(batch.pos[0, 12]) + 3}))
    d = float((h1 - h0).abs().max())
    assert d < 1e-10, "shifted segment moved by %.3g" % d
    assert float((h2[0, 12:17] - h0[0, 12:17]).abs().max()) > 1e-6, "positions are ignored"


def _directional_check(model, batch, eps=1e-6):
    """For each tensor p, autograd's <d loss_sum / dp, u> against the central
    difference (f(p + eps u) - f(p - eps u)) / 2 eps, u random (float64)."""
    g = torch.Generator().manual_seed(6)
    params = dict(model.named_parameters())
    model.set_trainable(set(PARTS))
    model(batch)[0].backward()
    bad = []
    for n, p in params.items():
        u = torch.randn(p.shape, generator=g, dtype=p.dtype)
        analytic = float((p.grad * u).sum())
        with torch.no_grad():
            p += eps * u
            hi = float(model(batch)[0])
            p -= 2 * eps * u
            lo = float(model(batch)[0])
            p += eps * u
        numeric = (hi - lo) / (2 * eps)
        if abs(analytic - numeric) > 1e-6 + 1e-5 * abs(numeric):
            bad.append("%s: autograd %.9g, numeric %.9g" % (n, analytic, numeric))
    assert not bad, "; ".join(bad[:4])


def _gradcheck(model, batch, names, fast):
    """torch.autograd.gradcheck of loss_sum with respect to the named
    parameters (float64)."""
    from torch.nn.utils.stateless import functional_call
    params = dict(model.named_parameters())
    others = {n: p.detach() for n, p in params.items() if n not in names}
    inputs = tuple(params[n].detach().clone().requires_grad_() for n in names)

    def f(*tensors):
        return functional_call(model, dict(others, **dict(zip(names, tensors))), (batch,))[0]
    torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=fast)


# ---------------------------------------------------------------------------

def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare", help="check DIR's C results against this model")
    c.add_argument("dir")
    c.add_argument("--verbose", action="store_true", help="print each tensor's errors")
    c.add_argument("--double", action="store_true", help="run the reference in float64")
    s = sub.add_parser("selftest", help="internal consistency checks, no C side")
    s.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    report = Report(verbose=a.verbose)
    if a.cmd == "compare":
        compare(a.dir, report, torch.float64 if a.double else torch.float32)
    else:
        selftest(report)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
