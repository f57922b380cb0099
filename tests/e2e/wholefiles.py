"""wholefiles: is every output that looks complete complete?

mvl writes each output under a temporary name ("NAME.tmp.PID", a
checkpoint's "step-N.tmp.PID/", a replaced checkpoint's "step-N.old.PID/")
and renames it when whole, so after a crash or a failed write any file with
its final name must parse to its end.  problems(root) walks a directory and
checks every file not under a temporary name by what its name says it is;
the crash and disk-full tests (test_crash.py, test_diskfull.py) call it
after each kill or failed write.  Only the standard library and `mvl ls`
(for packs) are used, and each check is written from the format, not from
mvl's code.
"""
import gzip
import hashlib
import json
import os
import re
import struct
import subprocess

from mvltest import MVL, ZSTD_MAGIC, GZIP_MAGIC, have_zstd_cli

STEP_RE = re.compile(r"^step-\d{8}$")
TAR_ENDINGS = (".tar", ".tar.zst", ".tzst", ".tar.gz", ".tgz")


def temporary(name):
    """A name mvl gives to what is not finished (or is being replaced)."""
    return ".tmp." in name or ".old." in name


def visible_files(root):
    """Files under root whose path has no temporary component, relative."""
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not temporary(x))
        for f in sorted(files):
            if not temporary(f):
                out.append(os.path.relpath(os.path.join(d, f), root))
    return out


def digests(root, keep=lambda rel: True):
    """{relative path: sha256} of the visible files under root."""
    out = {}
    for rel in visible_files(root):
        if keep(rel):
            with open(os.path.join(root, rel), "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


# ---------------------------------------------------------------------------
# one check per kind of file; each returns None or what is wrong

def _decompress(data):
    if data[:4] == ZSTD_MAGIC:
        if not have_zstd_cli():
            return None, None
        p = subprocess.run(["zstd", "-q", "-d", "-c"], input=data, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        if p.returncode != 0:
            return None, "zstd frame broken: %s" % p.stderr.decode("utf-8", "replace").strip()[:200]
        return p.stdout, None
    if data[:2] == GZIP_MAGIC:
        try:
            return gzip.decompress(data), None
        except (EOFError, OSError, ValueError) as e:
            return None, "gzip stream broken: %s" % e
    return data, None


def tar_problem(data):
    """A tar must be a walk of valid headers and their padded data ending
    in (at least) two zero blocks: a tar cut between members parses with
    most readers, so the end marker is what tells it was finished."""
    data, why = _decompress(data)
    if why:
        return why
    if data is None:
        return None  # zstd without the CLI: not checkable here
    if len(data) % 512:
        return "%d bytes: not a whole number of 512-byte blocks" % len(data)
    zero = b"\0" * 512
    off = 0
    while True:
        if off + 512 > len(data):
            return "ends at byte %d without the two zero blocks" % len(data)
        h = data[off:off + 512]
        if h == zero:
            break
        stored = h[148:156].split(b"\0")[0].strip()
        try:
            chk = int(stored, 8)
        except ValueError:
            return "header at %d: checksum field %r" % (off, stored)
        if chk != sum(h[:148]) + 8 * 32 + sum(h[156:]):
            return "header at %d: bad checksum" % off
        field = h[124:136].split(b"\0")[0].strip()
        try:
            size = int(field, 8) if field else 0
        except ValueError:
            return "header at %d: size field %r" % (off, field)
        off += 512 + (size + 511) // 512 * 512
        if off > len(data):
            return "member at %d cut: the tar ends at %d" % (off, len(data))
    rest = data[off:]
    if len(rest) < 1024 or rest.strip(b"\0"):
        return "the end marker at %d is not two zero blocks" % off
    return None


def json_problem(data):
    try:
        json.loads(data.decode("utf-8"))
    except ValueError as e:
        return "not JSON: %s" % e
    return None


def jsonl_problem(data):
    if data and not data.endswith(b"\n"):
        return "the last line is cut (no newline at the end)"
    for i, line in enumerate(data.decode("utf-8", "replace").splitlines()):
        try:
            json.loads(line)
        except ValueError as e:
            return "line %d is not JSON: %s" % (i + 1, e)
    return None


def lines_problem(data):
    if not data:
        return "empty (every such file has at least a header line)"
    if not data.endswith(b"\n"):
        return "the last line is cut (no newline at the end)"
    return None


def tiktoken_problem(data):
    p = lines_problem(data)
    if p:
        return p
    for i, line in enumerate(data.split(b"\n")[:-1]):
        parts = line.split(b" ")
        if len(parts) != 2 or not parts[1].isdigit():
            return "line %d is not 'BASE64 RANK': %r" % (i + 1, line[:60])
    return None


def safetensors_problem(data):
    if len(data) < 8:
        return "%d bytes: shorter than the header length" % len(data)
    (hl,) = struct.unpack("<Q", data[:8])
    if 8 + hl > len(data):
        return "header of %d bytes in a file of %d" % (hl, len(data))
    try:
        h = json.loads(data[8:8 + hl].decode("utf-8"))
    except ValueError as e:
        return "header is not JSON: %s" % e
    end = max([v["data_offsets"][1] for k, v in h.items() if k != "__metadata__"] or [0])
    if 8 + hl + end != len(data):
        return "tensors end at %d, the file at %d" % (8 + hl + end, len(data))
    return None


def pack_problem(path):
    r = subprocess.run([MVL, "ls", "-q", path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)
    if r.returncode != 0:
        return "mvl ls fails: %s" % r.stderr.decode("utf-8", "replace").strip()[-200:]
    return None


def html_problem(data):
    if b"</html>" not in data[-64:]:
        return "does not end with </html>"
    return None


CHECKPOINT_FILES = ("model.safetensors", "optim.safetensors", "state.json")


def file_problem(path):
    """What is wrong with the complete-looking file at path (None: fine, or
    not a kind checked here)."""
    name = os.path.basename(path)
    if name.endswith(".pack"):
        return pack_problem(path)
    with open(path, "rb") as f:
        data = f.read()
    if name.endswith(TAR_ENDINGS):
        return tar_problem(data)
    if name.endswith(".jsonl"):
        return jsonl_problem(data)
    if name.endswith(".json"):
        return json_problem(data)
    if name.endswith(".tsv"):
        return lines_problem(data)
    if name.endswith(".tiktoken"):
        return tiktoken_problem(data)
    if name.endswith(".safetensors"):
        return safetensors_problem(data)
    if name.endswith(".html"):
        return html_problem(data)
    if name == "latest":
        target = data.decode("utf-8", "replace").strip()
        if not STEP_RE.match(target):
            return "names %r, not a checkpoint" % target
        d = os.path.join(os.path.dirname(path), target)
        missing = [f for f in CHECKPOINT_FILES if not os.path.exists(os.path.join(d, f))]
        if missing:
            return "names %s, which lacks %s" % (target, missing)
    return None


def problems(root):
    """Every complete-looking file under root that is not whole, as
    'PATH: WHY' strings; checkpoint directories must hold all their files."""
    out = []
    if not os.path.exists(root):
        return out
    if os.path.isfile(root):
        p = file_problem(root)
        return ["%s: %s" % (root, p)] if p else []
    for rel in visible_files(root):
        p = file_problem(os.path.join(root, rel))
        if p:
            out.append("%s: %s" % (rel, p))
    for d, dirs, _ in os.walk(root):
        dirs[:] = [x for x in dirs if not temporary(x)]
        for x in dirs:
            if STEP_RE.match(x):
                missing = [f for f in CHECKPOINT_FILES if not os.path.exists(os.path.join(d, x, f))]
                if missing:
                    out.append("%s: checkpoint without %s" % (os.path.relpath(os.path.join(d, x), root), missing))
    return out
