"""test_mpi_ep_train.py: `mpirun -np 2 mvl train --expert-parallel` end to end.

Each rank owns half of every MoE layer's routed experts (trainer/ddp.h,
moe_ep.h); the rest of the model stays data parallel.  With capacity off
(the micro-moe preset's), expert parallelism computes what plain data
parallelism does, so 2 ranks x 1 micro-batch must log the losses and
gradient norms of 1 rank x --grad-accum 2 within 1e-4 relative, and the
final checkpoints (written by rank 0, which must hold the other rank's
experts too) must agree within 1e-5 of each tensor's scale.  The optimizer
state of an expert lives on its owner only, yet the checkpoint has all of
it: resuming under EP, or on one process, continues the uninterrupted
run.  Bad uses fail with a message.  Skipped (one `ok` saying so) when
mpirun is missing."""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mvltest import MVL, Fail, Result, Suite, _sane, eq, expect, expect_rc  # noqa: E402

import numpy as np  # noqa: E402

# two ranks on two loaded cores: passive OpenMP waiting (see test_train.py)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

S = Suite("mpi_ep_train")
check = S.check

MPIRUN = shutil.which("mpirun")
ROOT_FLAGS = ["--allow-run-as-root"] if os.geteuid() == 0 else []


def mpi(n):
    return [MPIRUN or "mpirun"] + ROOT_FLAGS + ["--oversubscribe", "-np", str(n)]


REL = 1e-4
BYTES_RE = re.compile(r"^optimizer state: (\d+) bytes per rank", re.M)
BASE = ["train", "--preset", "micro-moe", "-q", "-j1", "--synthetic"]


def run(cmd, timeout=120):
    t0 = time.time()
    p = subprocess.run([str(a) for a in cmd], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    return _sane(Result([str(a) for a in cmd], p.returncode, p.stdout, p.stderr, time.time() - t0))


def one(*args):
    """One process, one thread (as each rank has)."""
    return run([MVL] + BASE + list(args))


def ep(*args, n=2):
    return run(mpi(n) + [MVL] + BASE + ["--expert-parallel"] + list(args))


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
    ma, mb = metrics(a), metrics(b)
    expect(ma, what + ": no steps logged")
    eq([m["step"] for m in ma], [m["step"] for m in mb], what + ": steps")
    close([m["loss"] for m in ma], [m["loss"] for m in mb], what + ": losses")
    close([m["grad_norm"] for m in ma], [m["grad_norm"] for m in mb], what + ": grad norms")
    eq([(m["moe_routed"], m["moe_dropped"]) for m in ma], [(m["moe_routed"], m["moe_dropped"]) for m in mb],
       what + ": routed and dropped counts")


def tensors(path):
    """A safetensors file as {name: float32 array}."""
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


def same_tensors(pa, pb, what, tol):
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

R = {}


@check("preset_has_capacity_off")
def _():
    # with capacity on, EP caps each expert over the global batch and one
    # process over each micro-batch (moe_ep.h): the runs below would differ
    out = S.dir("cfg")
    expect_rc(one("--steps", 1, "-o", out), 0)
    with open(os.path.join(ckpt(out, 1), "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n))["__metadata__"]
    cfg = json.loads(meta["config"])
    eq(cfg.get("capacity"), 0, "micro-moe's capacity")
    eq(cfg.get("n_experts"), 4, "micro-moe's experts")


@check("ep_two_ranks_equal_one_rank_grad_accum_2")
def _():
    a, b = S.dir("one1x2"), S.dir("ep2x1")
    expect_rc(one("--steps", 4, "--save-every", 2, "--grad-accum", 2, "-o", a), 0)
    r = ep("--steps", 4, "--save-every", 2, "-o", b)
    expect_rc(r, 0)
    same_run(b, a, "EP 2 ranks x 1 against 1 rank x 2")
    # rank 0 writes rank 1's experts (allgathered after each step) and
    # their optimizer state (gathered for the checkpoint)
    for f in ("model.safetensors", "optim.safetensors"):
        same_tensors(os.path.join(ckpt(b, 4), f), os.path.join(ckpt(a, 4), f), "EP final " + f, 1e-5)
    R.update(one=a, ep=b, ep_bytes=opt_bytes(r))


@check("ep_optimizer_holds_own_experts_only")
def _():
    expect(R, "no runs (see ep_two_ranks_equal_one_rank_grad_accum_2)")
    st = tensors(os.path.join(ckpt(R["one"], 4), "model.safetensors"))
    trainable = sum(t.size for k, t in st.items() if not k.endswith("e_score_correction_bias"))
    experts = sum(t.size for k, t in st.items() if ".mlp.experts." in k)
    expect(experts > 0, "no expert tensors in %r" % sorted(st)[:8])
    # m and v (8 bytes a float) of everything but the other rank's half of the experts
    eq(R["ep_bytes"], 8 * (trainable - experts // 2), "optimizer bytes per rank under EP")


@check("ep_resume_equals_uninterrupted")
def _():
    expect(R, "no runs (see ep_two_ranks_equal_one_rank_grad_accum_2)")
    u, r = R["ep"], S.dir("ep-resumed")
    expect_rc(ep("--steps", 4, "--save-every", 2, "--resume", ckpt(u, 2), "-o", r), 0)
    eq([m["step"] for m in metrics(r)], [2, 3], "steps trained after resuming")
    close([m["loss"] for m in metrics(r)], [m["loss"] for m in metrics(u)][2:], "losses of steps 2..3")
    close([m["grad_norm"] for m in metrics(r)], [m["grad_norm"] for m in metrics(u)][2:], "grad norms of steps 2..3")
    for f in ("model.safetensors", "optim.safetensors"):
        same_tensors(os.path.join(ckpt(r, 4), f), os.path.join(ckpt(u, 4), f), "EP resumed " + f, 1e-5)


@check("ep_checkpoint_resumes_on_one_process")
def _():
    # the single-process format: an EP checkpoint continues without MPI
    expect(R, "no runs (see ep_two_ranks_equal_one_rank_grad_accum_2)")
    u, r = R["ep"], S.dir("one-resumed")
    expect_rc(one("--steps", 4, "--grad-accum", 2, "--resume", ckpt(u, 2), "-o", r), 0)
    close([m["loss"] for m in metrics(r)], [m["loss"] for m in metrics(u)][2:], "losses of steps 2..3")
    same_tensors(os.path.join(ckpt(r, 4), "model.safetensors"), os.path.join(ckpt(u, 4), "model.safetensors"),
                 "final weights", 1e-5)


@check("ep_refuses_bad_uses")
def _():
    r = run(mpi(2) + [MVL, "train", "--preset", "micro", "-q", "-j1", "--synthetic", "--steps", 1,
                      "--expert-parallel"])
    expect(r.rc != 0 and "needs an MoE model" in r.errtext, "dense model: rc %d, %r" % (r.rc, r.errtext[-300:]))
    r = ep("--steps", 1, "--zero", 1)
    expect(r.rc != 0 and "--zero" in r.errtext, "with --zero 1: rc %d, %r" % (r.rc, r.errtext[-300:]))
    r = ep("--steps", 1, n=3)
    expect(r.rc != 0 and "4 experts do not split evenly over 3 ranks" in r.errtext,
           "3 ranks for 4 experts: rc %d, %r" % (r.rc, r.errtext[-300:]))


S.finish()
