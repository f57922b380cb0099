#!/bin/sh
# demo.sh: `make demo`.  Generates the demo data (scripts/synth.py: scenes
# of shapes with captions, questions and prose, with the dirt real data
# has, and clean held-out splits; deterministic, no downloads) under
# build/demo, then runs recipes/demo.yaml end to end:
#   mvl run recipes/demo.yaml -o build/demo/run
# filter -> tokenizer -> warm-up -> multitask at two lengths, averaged ->
# SFT -> eval with resolution search -> build/demo/run/report.html.
# Re-running resumes: finished steps are skipped (delete build/demo to
# start over).  scripts/demo_ingest.sh is the ingest demo (folders, JSONL,
# img2dataset output into shards).
set -eu
cd "$(dirname "$0")/.."
D=build/demo
if [ ! -f "$D/synth.json" ]; then
	echo "== generating demo data in $D (scripts/synth.py)"
	rm -rf "$D"
	/usr/bin/python3 scripts/synth.py --out "$D" --seed 1
fi
echo "== mvl run recipes/demo.yaml -o $D/run"
./mvl run recipes/demo.yaml -o "$D/run"
echo "== results"
/usr/bin/python3 - "$D/run/eval.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
d = e["test"]["default"]
print("test at the default resolution: " + ", ".join("%s %.3f" % (k, v) for k, v in d.items()))
for k, v in e["test"].get("chosen", {}).items():
    print("  %s at the dev-chosen %d pixels: %.3f (default %.3f)" % (k, v["max_pixels"], v["score"], v["default_score"]))
PY
# the pair filter against the generator's list of misaligned captions
/usr/bin/python3 - "$D" <<'PY'
import glob, json, os, sys
d = sys.argv[1]
mis = set(open(os.path.join(d, "misaligned.txt")).read().split())
for rj in sorted(glob.glob(os.path.join(d, "run", "stages", "*", "pairscore", "*.rejects.tsv"))):
    st = json.load(open(rj.replace(".rejects.tsv", ".stats.json")))
    dropped = {l.split("\t")[0] for l in open(rj).read().splitlines()[1:] if l}
    # the misaligned pairs that reached the scorer (heuristics dropped some)
    seen = set()
    for f in glob.glob(os.path.join(os.path.dirname(rj), "..", "data", os.path.basename(rj)[:-12], "*.tar")):
        import tarfile
        with tarfile.open(f) as t:
            seen |= {m.name.rsplit(".", 1)[0] for m in t.getmembers()}
    seen |= dropped
    tp = len(dropped & mis)
    n = len(mis & seen)
    print("pair filter %s: dropped %d of %d; known misaligned among them %d: precision %.2f, recall %.2f of %d" % (
        rj.split("/stages/")[1], len(dropped), st["in"], tp, tp / max(1, len(dropped)), tp / max(1, n), n))
PY
echo "report: $D/run/report.html"
