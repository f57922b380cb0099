#!/bin/sh
# demo.sh: the ingest demo on generated raw data (deterministic, no
# downloads): folders, JSONL and img2dataset output in, a normalized,
# resized, sharded stream out, with every rejected sample accounted for.
set -eu
cd "$(dirname "$0")/.."
D=demo-run
rm -rf "$D"
mkdir -p "$D"
echo "== generating raw demo data in $D/raw"
/usr/bin/python3 scripts/make_demo_data.py "$D/raw" --seed 1
echo "== mvl ingest: validate, orient, smart_resize, JPEG, shard"
./mvl ingest --resize smart --resize-max-pixels 200704 --rejects "$D/rejects.tsv" \
	-o "$D/shards/train-%06d.tar.zst" --maxcount 32 \
	"$D/raw/folder" "$D/raw/list.jsonl" "$D/raw/shards"
echo "== shards"
ls -l "$D/shards"
echo "== mvl ls (first lines)"
./mvl ls -q "$D"/shards/train-{000000..000002}.tar.zst | head -n 8
echo "== rejected samples ($D/rejects.tsv)"
cat "$D/rejects.tsv"
echo "== mvl filter: clean, caption and image quality, deduplication in one pass"
./mvl filter "clean,capfilter,imgfilter:min_side=100,dedup:clusters=$D/clusters.jsonl" \
	--stats "$D/filter-stats.json" --rejects "$D/filter-rejects.tsv" \
	-o "$D/filtered/train-%06d.tar.zst" "$D/shards"
cat "$D/filter-rejects.tsv"
echo "== duplicate clusters ($D/clusters.jsonl)"
cat "$D/clusters.jsonl"
echo "== re-shard to 50 samples per shard"
./mvl shard -q -o "$D/reshard/part-%03d.tar" --maxcount 50 "$D/filtered/*.tar.zst"
ls -l "$D/reshard"
echo "demo done: outputs in $D/"
