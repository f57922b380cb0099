#!/usr/bin/python3
"""test_crash.py: kill -9 in the middle of writing, then restart.

For each command that turns inputs into files (ingest and shard into
shards, dedup --build-index, pack, train --save-every, run), an uninterrupted run is
timed and kept as the reference.  Then, in a fresh output directory, the
command is started and SIGKILLed (its whole process group) at seeded
random fractions of the reference time, restarted each time as a user
would (train with --resume when a checkpoint exists, run as it is: it
skips finished steps, the others from scratch).  After every kill, every
file that does not carry a temporary name must parse to its end
(wholefiles.py: tars end with their zero blocks, JSON loads, packs open
with `mvl ls`, checkpoints hold all their files).  The last restart runs
to the end and must leave the reference's bytes: shards and rejects,
index and clusters, pack, checkpoints with the same loss per step, the
run's manifest with every step done.

The kill points come from MVL_CRASH_SEED (default below); a failure names
its seed, and the same seed gives the same points.
"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mvltest import MVL, ROOT, Fail, Suite, eq, expect, expect_rc, mvl  # noqa: E402
import wholefiles  # noqa: E402

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SEED = int(os.environ.get("MVL_CRASH_SEED") or 20261126)
KILLS = 3
sys.stderr.write("# test_crash: MVL_CRASH_SEED=%d\n" % SEED)

S = Suite("crash")
check = S.check


def seeded(name, ref_seconds, files=None):
    """The kill points of one check, from its own stream (adding a check
    does not move another's): KILLS times at fractions of the reference
    run's, or, where the check counts its outputs (files: (count of the
    reference run, a function counting the outputs written since a time)),
    every other one is "when the Nth output appears, plus up to 20 ms".
    @return [(description, delay in seconds, None or (count_fn, n))]."""
    rng = random.Random("%d:%s" % (SEED, name))
    points = []
    for i in range(KILLS):
        if files and i % 2 and files[0] > 1:
            n = rng.randrange(1, files[0])
            extra = rng.uniform(0, 0.02)
            points.append(("when output %d of %d appears, +%.3f s" % (n, files[0], extra), extra, (files[1], n)))
        else:
            f = rng.uniform(0.05, 0.9)
            points.append(("at %.3f s (%.0f%% of %.2f s)" % (f * ref_seconds, 100 * f, ref_seconds),
                           f * ref_seconds, None))
    return points


def group_gone(pgid, timeout=10):
    """Waits until no process of group pgid runs (a zombie counts as gone):
    SIGKILL is delivered at once, but a killed child (mvl run's step) may
    still be exiting when its parent has been reaped, and a restart that
    begins then rightly keeps that live writer's temporaries."""
    end = time.time() + timeout
    while time.time() < end:
        running = False
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % pid) as f:
                    st = f.read()
            except OSError:
                continue
            fields = st[st.rfind(")") + 2:].split()
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
                running = True
                break
        if not running:
            return
        time.sleep(0.01)


def kill_after(args, delay, when=None, timeout=300):
    """Starts mvl ARGS in a process group of its own and SIGKILLs the group
    delay seconds after its start, or after when = (count_fn, n): after
    count_fn(start) reaches n.
    @return True when it was still running then (a run that ended first
    must have succeeded)."""
    with tempfile.TemporaryFile() as log:
        p = subprocess.Popen([MVL] + [str(a) for a in args], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        t0 = time.time()
        while when and p.poll() is None and when[0](t0 - 1) < when[1] and time.time() < t0 + timeout:
            time.sleep(0.001)
        end = time.time() + delay
        while time.time() < end and p.poll() is None:
            time.sleep(0.001)
        alive = p.poll() is None
        if alive:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        p.wait(timeout)
        group_gone(p.pid)
        if not alive and p.returncode != 0:
            log.seek(0)
            raise Fail("mvl %s: exit %d before the kill: %s" % (
                " ".join(map(str, args[:3])), p.returncode, log.read()[-300:]))
        return alive


def timed(args, timeout=300):
    t0 = time.time()
    r = mvl(*args, timeout=timeout)
    expect_rc(r, 0)
    return time.time() - t0


def temporaries(root):
    out = []
    for d, dirs, files in os.walk(root):
        out += [os.path.relpath(os.path.join(d, x), root) for x in dirs + files if wholefiles.temporary(x)]
    return sorted(out)


def expect_completed(root, what):
    """After the last restart ran to its end: everything whole, and the
    temporaries the killed runs left removed by the rerun that replaced
    them (they would pile up over restarts)."""
    expect_whole(root, what + ", completed")
    left = temporaries(root)
    expect(not left, "seed %d, %s: temporaries of the killed runs left after the rerun: %s" % (SEED, what, left[:4]))


def expect_whole(root, when):
    bad = wholefiles.problems(root)
    expect(not bad, "seed %d, %s: files that look complete but are not: %s" % (SEED, when, bad[:5]))


def crash_and_restart(name, ref_seconds, args_for, roots, files=None):
    """KILLS kills at the seeded points (see seeded()), each start made by
    args_for() (which may look at what the last one left); every root
    whole after each kill.  @return the number of kills that landed."""
    landed = 0
    for i, (what, delay, when) in enumerate(seeded(name, ref_seconds, files)):
        if kill_after(args_for(), delay, when):
            landed += 1
        left = []
        for root in roots:
            expect_whole(root, "%s, after kill %d %s" % (name, i + 1, what))
            left += temporaries(root)
        sys.stderr.write("# %s: kill %d %s: %d visible files, %d temporaries %s\n" % (
            name, i + 1, what, sum(len(wholefiles.visible_files(r)) for r in roots), len(left), left[:2]))
    return landed


def written_since(root, match):
    """A counter for seeded(): visible entries of root whose name matches,
    modified since a time (a rerun replaces the files of the killed run)."""
    def count(since):
        try:
            names = os.listdir(root)
        except FileNotFoundError:
            return 0
        n = 0
        for x in names:
            if match(x) and not wholefiles.temporary(x):
                try:
                    n += os.stat(os.path.join(root, x)).st_mtime >= since
                except FileNotFoundError:
                    pass
        return n
    return count


def same_files(got_root, want_root, what, keep=lambda rel: True):
    g = wholefiles.digests(got_root, keep)
    w = wholefiles.digests(want_root, keep)
    expect(w, "%s: the reference has no files" % what)
    if g != w:
        diff = sorted(k for k in set(g) | set(w) if g.get(k) != w.get(k))
        raise Fail("seed %d, %s: after the kills and a restart, %d files differ from the uninterrupted run: %s" % (
            SEED, what, len(diff), diff[:6]))


# ---------------------------------------------------------------------------
# the data: scripts/synth.py's scenes (dirty captions, conversations, text)

DATA = S.dir("data")
p = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "synth.py"), "--out", DATA, "--seed", "11",
                    "--scale", "0.6", "--shard-size", "100", "--eval-samples", "4"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
if p.returncode != 0:
    raise SystemExit("synth.py failed: %s" % p.stderr.decode()[-400:])
RAW = os.path.join(DATA, "raw", "captions")
SPECIALS = "<|endoftext|>,<|vision_start|>,<|image_pad|>,<|vision_end|>,<|im_start|>,<|im_end|>"


# ---------------------------------------------------------------------------
# ingest: raw shards -> normalized shards (rerun from scratch)

INGESTED = {}


def ingest_args(out):
    return ["ingest", "-q", "--resize", "smart", "--maxcount", "20", "--rejects", os.path.join(out, "rejects.tsv"),
            "-o", os.path.join(out, "shards", "%06d.tar"), RAW]


def shards_check(name, args_for, ext):
    """A command writing shards to DIR/shards/: killed (half the kills as
    its shards appear), rerun from scratch, the reference's bytes.
    @return the reference's shard directory."""
    ref = S.dir(name + "-ref")
    t = timed(args_for(ref))
    shards = os.path.join(ref, "shards")
    n = len(os.listdir(shards))
    expect(n >= 10, "%s wrote %d shards, fewer than 10" % (name, n))
    out = S.dir(name + "-crash")
    landed = crash_and_restart(name, t, lambda: args_for(out), [out],
                               (n, written_since(os.path.join(out, "shards"), lambda x: x.endswith(ext))))
    expect(landed >= 1, "seed %d: no kill landed while %s ran (%.2f s)" % (SEED, name, t))
    expect_rc(mvl(*args_for(out)), 0)
    expect_completed(out, name)
    same_files(out, ref, name)
    return shards


@check("ingest_killed_leaves_whole_shards_and_rerun_gives_the_same_bytes")
def _():
    INGESTED["dir"] = shards_check("ingest", ingest_args, ".tar")


def ingested():
    expect(INGESTED, "no ingested shards (see the ingest check)")
    return INGESTED["dir"]


# ---------------------------------------------------------------------------
# shard: re-sharding into compressed shards (rerun from scratch)

def shard_args(out):
    return ["shard", "-q", "--maxcount", "7", "--rejects", os.path.join(out, "rejects.tsv"),
            "-o", os.path.join(out, "shards", "%06d.tar.zst"), ingested()]


@check("shard_killed_leaves_whole_shards_and_rerun_gives_the_same_bytes")
def _():
    shards_check("shard", shard_args, ".tar.zst")


# ---------------------------------------------------------------------------
# dedup --build-index: one index written at the end, or none

def dedup_args(out):
    return ["dedup", "-q", "--build-index", os.path.join(out, "dedup.idx"), "--keep", "largest_image",
            "--clusters", os.path.join(out, "clusters.jsonl"), ingested()]


@check("dedup_build_index_killed_leaves_no_partial_index")
def _():
    ref = S.dir("dedup-ref")
    t = timed(dedup_args(ref))
    expect(os.path.getsize(os.path.join(ref, "dedup.idx")) > 0, "empty index")
    out = S.dir("dedup-crash")
    landed = crash_and_restart("dedup", t, lambda: dedup_args(out), [out])
    expect(landed >= 1, "seed %d: no kill landed while dedup ran (%.2f s)" % (SEED, t))
    for f in os.listdir(out):
        expect(f in ("dedup.idx", "clusters.jsonl") or wholefiles.temporary(f), "stray file %r" % f)
    expect_rc(mvl(*dedup_args(out)), 0)
    expect_completed(out, "dedup")
    same_files(out, ref, "dedup --build-index")


# ---------------------------------------------------------------------------
# pack (with a tokenizer trained here)

TOK = {}


def tokenizer():
    if not TOK:
        d = S.dir("tok")
        r = mvl("tok", "train", "--stream", "--vocab", "400", "--encoding", "cl100k_base", "--special", SPECIALS,
                "-o", os.path.join(d, "tok"), ingested(), timeout=120)
        expect_rc(r, 0)
        TOK["path"] = os.path.join(d, "tok.tiktoken")
    return TOK["path"]


def pack_args(out):
    return ["pack", "-q", "--tokenizer", tokenizer(), "--encoding", "cl100k_base", "--seq-len", "512",
            "--max-pixels", "12544", "--stats", os.path.join(out, "pack.json"),
            "--rejects", os.path.join(out, "pack.rejects.tsv"), "-o", os.path.join(out, "data.pack"),
            os.path.join(ingested(), "{000000..000029}.tar")]


@check("pack_killed_leaves_no_partial_pack_and_rerun_gives_the_same_bytes")
def _():
    ref = S.dir("pack-ref")
    t = timed(pack_args(ref))
    out = S.dir("pack-crash")
    landed = crash_and_restart("pack", t, lambda: pack_args(out), [out])
    expect(landed >= 1, "seed %d: no kill landed while pack ran (%.2f s)" % (SEED, t))
    expect_rc(mvl(*pack_args(out)), 0)
    expect_completed(out, "pack")
    same_files(out, ref, "pack")


# ---------------------------------------------------------------------------
# train --save-every: resumed from the latest checkpoint after each kill

STEPS, EVERY = 96, 4


def train_args(out, resume):
    # a given peak: no sgemm measurement at start, the kills land in training
    a = ["train", "--preset", "micro", "--synthetic", "-q", "-j2", "--seed", "7", "--steps", STEPS,
         "--save-every", EVERY, "--peak-gflops", "100", "-o", out]
    return a + (["--resume", out] if resume and os.path.exists(os.path.join(out, "latest")) else [])


def step_rows(out):
    """(step, loss, lr, grad_norm) of every step line of metrics.jsonl."""
    rows = []
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            if "loss" in o:
                rows.append((o["step"], o["loss"], o["lr"], o["grad_norm"]))
    return rows


@check("train_killed_resumes_to_the_same_losses_and_weights")
def _():
    ref = os.path.join(S.dir("train-ref"), "run")
    t = timed(train_args(ref, False))
    out = os.path.join(S.dir("train-crash"), "run")
    landed = crash_and_restart("train", t, lambda: train_args(out, True), [os.path.dirname(out)],
                               (STEPS // EVERY, written_since(out, wholefiles.STEP_RE.match)))
    expect(landed >= 1, "seed %d: no kill landed while train ran (%.2f s)" % (SEED, t))
    expect_rc(mvl(*train_args(out, True), timeout=300), 0)
    expect_completed(out, "train")
    want = step_rows(ref)
    eq(len(want), STEPS, "steps logged by the uninterrupted run")
    got = step_rows(out)
    eq([r[0] for r in got], list(range(STEPS)), "seed %d: steps in metrics.jsonl after the kills" % SEED)
    eq(got, want, "seed %d: (step, loss, lr, grad_norm) after the kills against the uninterrupted run" % SEED)
    same_files(out, ref, "train checkpoints", keep=lambda rel: rel != "metrics.jsonl")


# ---------------------------------------------------------------------------
# train, killed at each rename of a checkpoint write (strace fault injection)
#
# The timed kills above land between checkpoints far more often than
# inside one.  strace kills the trainer on entering its Kth rename (or
# renameat2) call, for every K of an uninterrupted run: each visible state
# between the atomic steps of writing a checkpoint, and of putting it in
# place of an older one, is visited once.  The rewrite case is a run
# resumed from step 4 of a finished run, whose "latest" still names step 8
# while step 8 is replaced; "fallback" makes renameat2 fail with EINVAL (a
# file system without RENAME_EXCHANGE) so the old checkpoint moves aside
# first.

def strace_works():
    try:
        return subprocess.run(["strace", "-qq", "-o", "/dev/null", "true"], timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


RENAMES = ("rename", "renameat", "renameat2")


def traced_env():
    """LeakSanitizer cannot run under ptrace (make asan): the traced runs
    go without leak checks, which every other run makes."""
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
    return env


def rename_calls(args, inject=()):
    """The rename-family calls of an uninterrupted mvl ARGS, in order, as
    (syscall, its ordinal among calls of that syscall)."""
    with tempfile.NamedTemporaryFile() as log:
        p = subprocess.run(["strace", "-f", "-qq", "-o", log.name, "-e", "trace=" + ",".join(RENAMES)] +
                           list(inject) + [MVL] + [str(a) for a in args],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300, env=traced_env())
        if p.returncode != 0:
            raise Fail("mvl %s under strace: exit %d: %s" % (args[0], p.returncode, p.stderr[-300:]))
        calls, seen = [], {}
        for line in open(log.name):
            name = line.split(None, 1)[1].split("(", 1)[0] if " " in line else ""
            if name in RENAMES:
                seen[name] = seen.get(name, 0) + 1
                calls.append((name, seen[name], line.split(None, 1)[1][:100].strip()))
        return calls


def killed_at(args, call, inject=()):
    p = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e",
                        "inject=%s:signal=KILL:when=%d" % call[:2]] + list(inject) + [MVL] + [str(a) for a in args],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300, env=traced_env())
    # strace ends as its tracee did: killed by the same signal
    if p.returncode not in (-signal.SIGKILL, 128 + signal.SIGKILL):
        raise Fail("mvl %s: not killed at %s (exit %d): %s" % (args[0], call[2], p.returncode, p.stderr[-300:]))


def small_train(out, resume_from=None):
    a = ["train", "--preset", "micro", "--synthetic", "-q", "-j2", "--seed", "7", "--steps", 8, "--save-every", 4,
         "--peak-gflops", "100", "-o", out]
    return a + (["--resume", resume_from] if resume_from else [])


@check("train_killed_at_every_rename_of_a_checkpoint_write")
def _():
    if not strace_works():
        print("ok train_killed_at_every_rename_of_a_checkpoint_write # skipped: strace cannot trace here",
              flush=True)
        return
    import shutil
    ref = os.path.join(S.dir("ckpt-ref"), "run")
    expect_rc(mvl(*small_train(ref)), 0)
    cases = [("fresh", None, ())]
    for mode, inject in (("rewrite", ()), ("rewrite, fallback", ("-e", "inject=renameat2:error=EINVAL"))):
        cases.append((mode, "step-00000004", inject))
    visited = 0
    for mode, start, inject in cases:
        work = S.dir("ckpt-" + mode.replace(", ", "-"))
        probe = os.path.join(work, "probe")
        if start:
            shutil.copytree(ref, probe)
        calls = rename_calls(small_train(probe, start and os.path.join(probe, start)), inject)
        expect(len(calls) >= 4, "%s: only %d renames traced" % (mode, len(calls)))
        for i, call in enumerate(calls):
            if inject and call[0] == "renameat2":
                continue  # made to fail: the state at its entry is that at the next call's
            out = os.path.join(work, "k%d" % i, "run")
            if start:
                shutil.copytree(ref, out)
            else:
                os.makedirs(os.path.dirname(out))
            killed_at(small_train(out, start and os.path.join(out, start)), call, inject)
            where = "%s, killed at %s" % (mode, call[2])
            expect_whole(os.path.dirname(out), where)
            # the restart a user makes: from the latest checkpoint, if any
            resume = out if os.path.exists(os.path.join(out, "latest")) else None
            r = mvl(*small_train(out, resume), timeout=300)
            expect(r.rc == 0, "%s: the restart failed: %s" % (where, r.errtext[-300:]))
            expect_completed(os.path.dirname(out), where)
            same_files(out, ref, where, keep=lambda rel: rel != "metrics.jsonl")
            visited += 1
    sys.stderr.write("# checkpoint renames: %d kills, each restarted to the reference's bytes\n" % visited)


# ---------------------------------------------------------------------------
# run: a tiny recipe, killed in whatever step it is in, rerun

RECIPE = os.path.join(DATA, "tiny.yaml")
with open(RECIPE, "w") as f:
    f.write("""seed: 3
max_epochs: 1000
model: {preset: micro}
sources:
  captions: {kind: captions, shards: raw/captions, filters: 'clean,dedup'}
tokenizer:
  train: {vocab: 400, sources: [captions], pattern: cl100k_base}
stages:
  - {name: s1, train: all, seq_len: 128, tokens: 12Ki, batch_tokens: 1Ki, mix: {captions: 1}, lr: 2e-3,
     max_pixels: 12544}
""")


def run_args(out):
    return ["run", RECIPE, "-o", out, "-j", "2"]


def manifest(out):
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


RUN_OUTPUTS = ("filter/", "tokenizer/tok.tiktoken", "stages/s1/mix/", "stages/s1/pack-128.pack",
               "stages/s1/train-128/step-")


@check("run_killed_in_any_step_resumes_to_a_complete_manifest")
def _():
    ref = os.path.join(S.dir("run-ref"), "run")
    t = timed(run_args(ref))
    steps = [s["name"] for s in manifest(ref)["steps"]]
    out = os.path.join(S.dir("run-crash"), "run")
    landed = crash_and_restart("run", t, lambda: run_args(out), [os.path.dirname(out)])
    expect(landed >= 1, "seed %d: no kill landed while run ran (%.2f s)" % (SEED, t))
    r = mvl(*run_args(out), timeout=300)
    expect_rc(r, 0)
    expect_completed(out, "run")
    m = manifest(out)
    eq([(s["name"], s["status"]) for s in m["steps"]], [(n, "done") for n in steps],
       "seed %d: the manifest's steps after the kills" % SEED)
    for s in m["steps"]:
        for o in s["outputs"]:
            expect(os.path.exists(o), "%s: output %s missing" % (s["name"], o))
    same_files(out, ref, "run outputs", keep=lambda rel: rel.startswith(RUN_OUTPUTS))


S.finish()
