"""scaling_model.py: the communication model of trainer/SCALING.md.

Prints, as Markdown tables, for the `small` preset and a Qwen3-8B-shaped
LLM at 8, 64 and 512 data-parallel ranks: the ring-allreduce volume per
rank per step, its time at 100 and 400 Gb/s, the compute time of a step at
a stated throughput, and the ZeRO-1 optimizer memory per rank.  Every
number comes from the formulas below (no measurement).

  parameters     counted tensor by tensor as trainer/model.c lays them out
  ring volume    V = 2 (N - 1) / N x P x b          (b = 4 fp32, 2 bf16)
                 bytes sent (and received) per rank per step
  ring time      t = V / bandwidth + 2 (N - 1) x ceil(P b / bucket) x alpha
                 (bandwidth term + per-bucket latency; alpha = 5 us,
                 bucket = 25 MB, as mvl's default)
  compute        t = 6 x P x T / F   (forward + backward, T tokens per rank
                 per step, F sustained FLOP/s per device; attention and
                 the ViT's patches are left out)
  ZeRO-1         m and v in fp32: 8 P / N bytes per rank (mvl trains in
                 fp32); with bf16 weights + fp32 master copy, as Megatron
                 and DeepSpeed do: 12 P / N
Usage: /usr/bin/python3 scripts/scaling_model.py
"""
import math

ALPHA = 5e-6
BUCKET = 25 * 2 ** 20
LINKS = [("100 Gb/s", 100e9 / 8), ("400 Gb/s", 400e9 / 8)]
RANKS = [8, 64, 512]


def params(vit_dim, vit_layers, vit_mlp, dim, layers, heads, kv_heads, mlp, vocab, tied):
    """The parameter count of model_new() (trainer/model.c)."""
    dh = dim // heads
    n = 0
    if vit_layers:
        n += vit_dim * 588
        n += vit_layers * (2 * vit_dim + 3 * vit_dim * vit_dim + vit_dim * vit_dim + 3 * vit_mlp * vit_dim)
        n += 4 * vit_dim + 16 * vit_dim * vit_dim + 4 * vit_dim + dim * 4 * vit_dim + dim
    n += vocab * dim
    n += layers * (2 * dim + heads * dh * dim * 2 + 2 * kv_heads * dh * dim + 2 * dh + 3 * mlp * dim)
    n += dim
    if not tied:
        n += vocab * dim
    return n


MODELS = [
    # name, P, tokens per rank per step, FLOP/s per device, what F is
    ("small (mvl preset)", params(384, 6, 1024, 512, 8, 8, 4, 1376, 32768, 0), 4 * 1024, 5e10,
     "50 GFLOP/s: a 2-core CPU node at ~50% of its sgemm peak"),
    ("small (mvl preset)", params(384, 6, 1024, 512, 8, 8, 4, 1376, 32768, 0), 4 * 1024, 4e14,
     "400 TFLOP/s: an H100 at ~40% of its bf16 peak"),
    ("Qwen3-8B-shaped LLM", params(0, 0, 0, 4096, 36, 32, 8, 12288, 151936, 0), 4 * 4096, 4e14,
     "400 TFLOP/s: an H100 at ~40% of its bf16 peak"),
]


def fmt_bytes(x):
    for unit, s in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if x >= s:
            return "%.2f %s" % (x / s, unit)
    return "%d B" % x


def fmt_s(t):
    return "%.3g s" % t if t >= 1 else "%.3g ms" % (t * 1e3)


def main():
    print("| model | parameters |")
    print("|---|---|")
    seen = set()
    for name, p, _, _, _ in MODELS:
        if name not in seen:
            seen.add(name)
            print("| %s | %d (%.3g M) |" % (name, p, p / 1e6))
    for name, p, T, F, what in MODELS:
        comp = 6.0 * p * T / F
        print()
        print("**%s**, T = %d tokens per rank per step, F = %s: compute %s per step" % (name, T, what, fmt_s(comp)))
        print()
        print("| ranks | grads | ring bytes / rank | %s | %s | of which latency | comm / compute at 400 Gb/s | ZeRO-1 m+v / rank (fp32) |"
              " ZeRO-1 / rank (bf16 + fp32 master) |" % tuple("time at " + l for l, _ in LINKS))
        print("|---|---|---|---|---|---|---|---|---|")
        for N in RANKS:
            for gname, b in (("fp32", 4), ("bf16", 2)):
                vol = 2.0 * (N - 1) / N * p * b
                lat = 2 * (N - 1) * math.ceil(p * b / BUCKET) * ALPHA
                times = [vol / bw + lat for _, bw in LINKS]
                print("| %d | %s | %s | %s | %s | %s | %.2f | %s | %s |" % (
                    N, gname, fmt_bytes(vol), fmt_s(times[0]), fmt_s(times[1]), fmt_s(lat), times[1] / comp,
                    fmt_bytes(8.0 * p / N), fmt_bytes(12.0 * p / N)))


main()
