"""test_mpi_train.py: `mpirun -np 2 mvl train` (data parallel) end to end.

Two ranks with K micro-batches each must train exactly what one process
does with 2K (rank r's micro-batch k is the single process's micro-step
2k + r): the same losses and gradient norms per step, within 1e-4
relative (only the order of float sums differs), on synthetic data and on
a real pack made with `mvl pack`.  ZeRO-1 must match plain allreduce, hold
half the optimizer bytes per rank, and write checkpoints in the
single-process format; resuming under MPI must continue the uninterrupted
run; a rank killed with SIGKILL must end the job non-zero, naming the
rank, with the last checkpoint intact.  The micro preset keeps it to
seconds.  Skipped (one `ok` saying so) when mpirun is missing."""
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mvltest import (MVL, ROOT, Fail, Result, Suite, _sane, eq, expect, expect_rc, jpeg, mvl,  # noqa: E402
                     png, tar_bytes, write)

import numpy as np  # noqa: E402

# two ranks on two loaded cores: passive OpenMP waiting (see test_train.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

S = Suite("mpi_train")
check = S.check

MPIRUN = shutil.which("mpirun")
# OpenMPI refuses root without this; --oversubscribe: CI may have fewer
# cores than ranks
ROOT_FLAGS = ["--allow-run-as-root"] if os.geteuid() == 0 else []
MPI = [MPIRUN or "mpirun"] + ROOT_FLAGS + ["--oversubscribe", "-np", "2"]
REL = 1e-4
BYTES_RE = re.compile(r"^optimizer state: (\d+) bytes per rank", re.M)


def run(cmd, timeout=120, env=None):
    t0 = time.time()
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, env=env)
    return _sane(Result([str(a) for a in cmd], p.returncode, p.stdout, p.stderr, time.time() - t0))


def train1(*args):
    """One process, one thread (as each rank has)."""
    return run([MVL, "train", "--preset", "micro", "-q", "-j1"] + [str(a) for a in args])


def train2(*args):
    return run(MPI + [MVL, "train", "--preset", "micro", "-q", "-j1"] + [str(a) for a in args])


def metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(l) for l in f if l.strip() and '"loss"' in l]


def close(a, b, what, rel=REL):
    expect(len(a) == len(b), "%s: %d values against %d" % (what, len(a), len(b)))
    for i, (x, y) in enumerate(zip(a, b)):
        if abs(x - y) > rel * max(abs(x), abs(y), 1e-12):
            raise Fail("%s: [%d] %.9g against %.9g (relative %.2g > %g)" % (what, i, x, y,
                                                                           abs(x - y) / max(abs(x), abs(y)), rel))


def same_run(a, b, what):
    """The loss and the gradient norm of every step agree."""
    ma, mb = metrics(a), metrics(b)
    eq([m["step"] for m in ma], [m["step"] for m in mb], what + ": steps")
    expect(ma, what + ": no steps logged")
    close([m["loss"] for m in ma], [m["loss"] for m in mb], what + ": losses")
    close([m["grad_norm"] for m in ma], [m["grad_norm"] for m in mb], what + ": grad norms")


def tensors(path):
    """A safetensors file as {name: float32 array} (8-byte LE header length,
    JSON header, data_offsets into the rest)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    hdr = json.loads(data[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[8 + n + a:8 + n + b], dtype="<f4").reshape(v["shape"])
    return out


def same_tensors(pa, pb, what, tol=1e-4):
    ta, tb = tensors(pa), tensors(pb)
    eq(sorted(ta), sorted(tb), what + ": tensor names")
    for k in ta:
        eq(ta[k].shape, tb[k].shape, "%s: shape of %s" % (what, k))
        d = float(np.max(np.abs(ta[k] - tb[k]))) if ta[k].size else 0.0
        scale = max(float(np.max(np.abs(tb[k]))) if tb[k].size else 0.0, 1e-3)
        expect(d <= tol * scale, "%s: %s differs by %.3g (scale %.3g)" % (what, k, d, scale))


def ckpt(out, step):
    return os.path.join(out, "step-%08d" % step)


def opt_bytes(r):
    m = BYTES_RE.search(r.out.decode())
    expect(m, "no 'optimizer state: N bytes per rank' line in stdout: %r" % r.out[-300:])
    return int(m.group(1))


if not MPIRUN:
    print("ok mpirun_missing_skipped # SKIP no mpirun on PATH")
    S.finish()

# ---------------------------------------------------------------------------
# synthetic data


R = {}


@check("two_ranks_equal_one_rank_grad_accum_2")
def _():
    a, b = S.dir("syn1x2"), S.dir("syn2x1")
    expect_rc(train1("--synthetic", "--steps", 4, "--grad-accum", 2, "-o", a), 0)
    r = train2("--synthetic", "--steps", 4, "-o", b)
    expect_rc(r, 0)
    same_run(b, a, "2 ranks x 1 against 1 rank x 2")
    R.update(syn1x2=a, syn2x1=b)
    # rank 0 alone logs and writes: one metrics line per step, one tokens/s
    eq(len(metrics(b)), 4, "metrics lines of the 2-rank run")
    eq(len(re.findall(r"^tokens/s: ", r.out.decode(), re.M)), 1, "tokens/s lines")


@check("two_ranks_accum_2_equal_one_rank_accum_4")
def _():
    a, b = S.dir("syn1x4"), S.dir("syn2x2")
    expect_rc(train1("--synthetic", "--steps", 3, "--grad-accum", 4, "-o", a), 0)
    # tiny buckets (20 for micro): most start inside the backward, from
    # the model's grad_ready hook, not after it
    expect_rc(train2("--synthetic", "--steps", 3, "--grad-accum", 2, "--bucket-mb", 0.01, "-o", b), 0)
    same_run(b, a, "2 ranks x 2 against 1 rank x 4")
    same_tensors(os.path.join(ckpt(b, 3), "model.safetensors"), os.path.join(ckpt(a, 3), "model.safetensors"),
                 "final weights")


@check("moe_two_ranks_equal_one_rank_grad_accum_2")
def _():
    # the experts' selection biases follow the load of the whole global
    # batch: each rank must sum the load over the ranks, or the routings drift
    a, b = S.dir("moe1x2"), S.dir("moe2x1")
    base = ["train", "--preset", "micro-moe", "-q", "-j1", "--synthetic", "--steps", 6]
    expect_rc(run([MVL] + [str(x) for x in base] + ["--grad-accum", "2", "-o", a]), 0)
    expect_rc(run(MPI + [MVL] + [str(x) for x in base] + ["-o", b]), 0)
    same_run(b, a, "MoE: 2 ranks x 1 against 1 rank x 2")
    eq([(m["moe_routed"], m["moe_dropped"]) for m in metrics(b)],
       [(m["moe_routed"], m["moe_dropped"]) for m in metrics(a)], "routed and dropped counts (global)")
    ta, tb = tensors(os.path.join(ckpt(a, 6), "model.safetensors")), tensors(os.path.join(ckpt(b, 6), "model.safetensors"))
    bias = [k for k in ta if k.endswith("e_score_correction_bias")]
    expect(bias and any(np.abs(ta[k]).max() > 0 for k in bias), "the biases never moved: %r" % bias)
    for k in bias:
        expect(np.allclose(ta[k], tb[k], atol=1e-6), "%s differs: %r against %r" % (k, ta[k], tb[k]))


@check("two_ranks_differ_from_one_rank_without_accum")
def _():
    # the check above can fail: 2 ranks see twice the data of 1 rank x 1
    expect(R, "no runs (see two_ranks_equal_one_rank_grad_accum_2)")
    a = S.dir("syn1x1")
    expect_rc(train1("--synthetic", "--steps", 4, "-o", a), 0)
    la, lb = [m["loss"] for m in metrics(a)], [m["loss"] for m in metrics(R["syn2x1"])]
    expect(abs(la[0] - lb[0]) > 1e-5, "1 rank x 1 logs the 2-rank loss %r: is the batch global?" % la[0])


@check("zero1_equals_allreduce")
def _():
    expect(R, "no runs (see two_ranks_equal_one_rank_grad_accum_2)")
    z = S.dir("zero2")
    r = train2("--synthetic", "--steps", 4, "--zero", 1, "-o", z)
    expect_rc(r, 0)
    same_run(z, R["syn2x1"], "ZeRO-1 against allreduce")
    for f in ("model.safetensors", "optim.safetensors"):
        same_tensors(os.path.join(ckpt(z, 4), f), os.path.join(ckpt(R["syn2x1"], 4), f), "ZeRO-1 " + f)
    R.update(zero2=z, zero2_bytes=opt_bytes(r))


@check("zero1_halves_optimizer_bytes_per_rank")
def _():
    expect("zero2_bytes" in R, "no ZeRO-1 run (see zero1_equals_allreduce)")
    r = train1("--synthetic", "--steps", 1, "--zero", 1)
    expect_rc(r, 0)
    one, two = opt_bytes(r), R["zero2_bytes"]
    # every float trains: m and v, 8 bytes each, all on one rank
    st = tensors(os.path.join(ckpt(R["syn2x1"], 4), "model.safetensors"))
    eq(one, 8 * sum(t.size for t in st.values()), "optimizer bytes of one rank")
    # slices are whole 16-float groups: at most 16 floats (128 bytes) off
    expect(abs(2 * two - one) <= 2 * 128, "2 ranks hold %d bytes each, 1 rank %d: not half" % (two, one))


@check("zero1_checkpoint_resumes_on_one_process")
def _():
    # the gathered optimizer file is the single-process format: a ZeRO-1
    # checkpoint of 2 ranks resumes on 1 (accum 2: the same global batch)
    expect("zero2" in R, "no ZeRO-1 run (see zero1_equals_allreduce)")
    u, r = S.dir("z-full"), S.dir("z-resumed")
    expect_rc(train2("--synthetic", "--steps", 4, "--save-every", 2, "--zero", 1, "-o", u), 0)
    expect_rc(train1("--synthetic", "--steps", 4, "--grad-accum", 2, "--resume", ckpt(u, 2), "-o", r), 0)
    close([m["loss"] for m in metrics(r)], [m["loss"] for m in metrics(u)][2:], "losses of steps 2..3")
    same_tensors(os.path.join(ckpt(r, 4), "model.safetensors"), os.path.join(ckpt(u, 4), "model.safetensors"),
                 "final weights")


@check("resume_under_mpi_equals_uninterrupted")
def _():
    u, r = S.dir("full4"), S.dir("resumed4")
    expect_rc(train2("--synthetic", "--steps", 4, "--save-every", 2, "-o", u), 0)
    expect(os.path.isdir(ckpt(u, 2)) and os.path.isdir(ckpt(u, 4)), "checkpoints 2 and 4: %r" % os.listdir(u))
    expect_rc(train2("--synthetic", "--steps", 4, "--save-every", 2, "--resume", ckpt(u, 2), "-o", r), 0)
    eq([m["step"] for m in metrics(r)], [2, 3], "steps trained after resuming")
    close([m["loss"] for m in metrics(r)], [m["loss"] for m in metrics(u)][2:], "losses of steps 2..3")
    with open(os.path.join(ckpt(r, 4), "state.json")) as f:
        ls_r = json.load(f)["losses"]
    with open(os.path.join(ckpt(u, 4), "state.json")) as f:
        ls_u = json.load(f)["losses"]
    close(ls_r, ls_u, "loss history in state.json")
    for f in ("model.safetensors", "optim.safetensors"):
        same_tensors(os.path.join(ckpt(r, 4), f), os.path.join(ckpt(u, 4), f), "resumed " + f)


# ---------------------------------------------------------------------------
# a real pack (images of several sizes, text-only sequences)

RANKS = S.dir("ranks")
TOK = os.path.join(RANKS, "cl100k_base.tiktoken")
V_CL = 100300  # cl100k + mvl pack's specials, rounded up (as test_train.py)


def pack_of(d):
    if not os.path.exists(TOK):
        p = subprocess.run(["node", "scripts/tok/export_ranks.js", RANKS, "--encodings", "cl100k_base", "--quiet"],
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        expect(p.returncode == 0 and os.path.exists(TOK), "export_ranks.js failed: %s" % p.stderr[-300:])
    m = []
    caps = ["A red and green gradient, seen at dusk.", "A tall picture of a blue ramp.",
            "Two colours meet in the middle of a small square.", "A wide strip of light over a field.",
            "Morning light on a quiet street.", "Nothing but a grey wall."]
    sizes = [(56, 56), (84, 56), (56, 112), (112, 28), (70, 70), (28, 28)]
    for i, (t, (w, h)) in enumerate(zip(caps, sizes)):
        m.append(("cap%02d.%s" % (i, "png" if i % 2 else "jpg"), png(w, h, i) if i % 2 else jpeg(w, h, i)))
        m.append(("cap%02d.txt" % i, t.encode()))
    for i in range(4):
        m.append(("txt%02d.txt" % i, ("Only text here, number %d, and a few more words. " % i * 3).encode()))
    tar = write(os.path.join(d, "in.tar"), tar_bytes(m))
    p = os.path.join(d, "p64.pack")
    r = mvl("pack", "--tokenizer", TOK, "--encoding", "cl100k_base", "--seq-len", 64, "-q", "-o", p, tar,
            timeout=120)
    expect_rc(r, 0)
    return p


@check("two_ranks_equal_one_rank_grad_accum_2_on_a_pack")
def _():
    d = S.dir("pack")
    p = pack_of(d)
    a, b = os.path.join(d, "1x2"), os.path.join(d, "2x1")
    common = ["--vocab", V_CL, "--seq-len", 64, "--batch", 1, "--steps", 3]
    expect_rc(train1(*common, "--grad-accum", 2, "-o", a, p), 0)
    # small buckets: a rank whose sequence has no image reports no ViT
    # block, yet both must start the buckets in the same order
    expect_rc(train2(*common, "--bucket-mb", 0.05, "-o", b, p), 0)
    same_run(b, a, "pack: 2 ranks x 1 against 1 rank x 2")


# ---------------------------------------------------------------------------
# failures


def rank_pid(tag, rank):
    """The pid of the process of our job (tag) that is rank `rank`."""
    want = [b"MVL_MPI_TEST_TAG=" + tag.encode(), b"OMPI_COMM_WORLD_RANK=%d" % rank]
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % p, "rb") as f:
                env = f.read().split(b"\0")
            with open("/proc/%s/comm" % p, "rb") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm == b"mvl" and all(w in env for w in want):
            return int(p)
    return None


@check("killed_rank_ends_the_job_and_the_last_checkpoint_resumes")
def _():
    out = S.dir("killed")
    tag = "%d-%d" % (os.getpid(), time.time_ns())
    env = dict(os.environ, MVL_MPI_TEST_TAG=tag)
    cmd = MPI + [MVL, "train", "--preset", "micro", "-j1", "--synthetic", "--steps", 100000, "--save-every", 3,
                 "-o", out]
    p = subprocess.Popen([str(a) for a in cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not os.path.exists(os.path.join(out, "latest")):
            time.sleep(0.05)
        expect(os.path.exists(os.path.join(out, "latest")), "no checkpoint within 60 s")
        time.sleep(0.3)  # mid-run: between checkpoints, or inside one
        pid = rank_pid(tag, 1)
        expect(pid, "rank 1's process not found")
        os.kill(pid, signal.SIGKILL)
        try:
            so, se = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            raise Fail("the job did not end within 30 s of rank 1's death")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    expect(p.returncode != 0, "mpirun exited 0 after a rank was killed")
    err = se.decode("utf-8", "replace")
    expect(re.search(r"rank 1\b", err), "stderr does not name rank 1: %r" % err[-400:])
    # the checkpoint "latest" names is complete and resumes
    with open(os.path.join(out, "latest")) as f:
        name = f.read().strip()
    step = int(name.split("-")[1])
    r = train1("--synthetic", "--steps", step + 1, "--grad-accum", 2, "--resume", out, "-o", out)
    expect_rc(r, 0)
    eq([m["step"] for m in metrics(out)][-1], step, "the step trained after resuming")


@check("local_error_names_the_rank_and_ends_the_job")
def _():
    d = S.dir("err")
    r = train2("--vocab", V_CL, "--seq-len", 64, "-o", os.path.join(d, "o"), os.path.join(d, "no-such.pack"))
    expect(r.rc != 0, "exit 0 on a missing pack")
    t = r.errtext
    expect(re.search(r"rank [01] of 2", t) and "no-such.pack" in t, "message: %r" % t[-400:])


S.finish()
