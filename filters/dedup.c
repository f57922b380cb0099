/* dedup.c: the `dedup` filter: exact and near duplicates of images and
 * captions, and decontamination against an eval set (filters/README.md).
 *
 * Two steps per sample.  In parallel (apply): hashes of the image bytes,
 * pixels and caption, the image signature (pHash/dHash + RGB thumbnail
 * from a DCT-scaled decode) and the caption's MinHash sketch, left in
 * sample.aux.  Serially, in input order (ordered): look the sample up in
 * the indexes of the samples kept before it; drop it if it duplicates one,
 * else add it.  So the first-seen member of each cluster survives, and the
 * result does not depend on the thread count.  Clusters are stars around
 * the kept sample: a sample is dropped only for its own closeness to a
 * kept one, never through a chain A~B~C of ever weaker links.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "dedup_dist.h"
#include "dedup_index.h"
#include "filter.h"
#include "image.h"
#include "minhash.h"
#include "phash.h"
#include "sample_text.h"
#include "shard_reader.h"
#include "inputs.h"
#include "text.h"

typedef struct dedup_conf {
	int exact_image, exact_pixels, exact_caption, exact_pair;
	int near_image, bands, max_hamming;
	double max_thumb;
	const char *hash;
	int near_caption, num_perm, ngram;
	double jaccard;
	const char *against, *clusters;
	uint64_t seed;
	const char *build_index, *index, *keep;
} dedup_conf;

#define O(f) offsetof(dedup_conf, f)
static const fopt dedup_opts[] = {
	{"exact_image", OPT_INT, O(exact_image), "1", "0|1", "drop repeats of the same image bytes (xxh3-128)"},
	{"exact_pixels", OPT_INT, O(exact_pixels), "0", "0|1",
	 "drop repeats of the same decoded pixels (re-encoded identical images; decodes in full)"},
	{"exact_caption", OPT_INT, O(exact_caption), "0", "0|1",
	 "drop repeats of the same normalized caption (lower-cased, whitespace collapsed)"},
	{"exact_pair", OPT_INT, O(exact_pair), "0", "0|1", "drop repeats of the same (image bytes, caption) pair"},
	{"near_image", OPT_INT, O(near_image), "1", "0|1", "drop near-duplicate images (perceptual hash + colour check)"},
	{"hash", OPT_CHOICE, O(hash), "phash", "phash|dhash", "perceptual hash"},
	{"max_hamming", OPT_INT, O(max_hamming), "7", "N",
	 "largest hash distance of a near duplicate (of 64 bits; measured: easy copies <= 5)"},
	{"bands", OPT_INT, O(bands), "4", "N",
	 "hash bands of the index: every pair within bands-1 bits is found (4..16)"},
	{"max_thumb", OPT_DOUBLE, O(max_thumb), "16", "X",
	 "largest colour distance of 4x4 RGB thumbnails (0..255) of a near duplicate"},
	{"near_caption", OPT_INT, O(near_caption), "0", "0|1", "drop near-duplicate captions (MinHash LSH)"},
	{"jaccard", OPT_DOUBLE, O(jaccard), "0.8", "X", "Jaccard similarity of a near-duplicate caption"},
	{"num_perm", OPT_INT, O(num_perm), "128", "N", "MinHash permutations (8..256)"},
	{"ngram", OPT_INT, O(ngram), "5", "N", "words per caption shingle"},
	{"against", OPT_STR, O(against), NULL, "SHARDS",
	 "eval set (files, globs, brace ranges): drop training samples that duplicate it (dedup.contaminated)"},
	{"clusters", OPT_STR, O(clusters), NULL, "FILE",
	 "write each cluster as JSONL: kept key, dropped keys with reason and distance"},
	{"seed", OPT_U64, O(seed), "1", "N", "MinHash seed"},
	{"build_index", OPT_STR, O(build_index), NULL, "FILE",
	 "pass 1 of 2: read every input, cluster all samples (union-find), pick each cluster's "
	 "survivor by --keep, and write the keys to drop to FILE (no stream is written)"},
	{"index", OPT_STR, O(index), NULL, "FILE",
	 "pass 2 of 2: drop the samples FILE lists; shards can be filtered independently, in parallel"},
	{"keep", OPT_STR, O(keep), "first", "POLICY",
	 "survivor of a cluster with --build-index: first, largest_image, longest_caption, or "
	 "score:FIELD (largest KEY.json number); ties go to the smallest key"},
	{0},
};
#undef O

/* what apply leaves in sample.aux for ordered */
enum { HAS_IMG = 1, HAS_PIX = 2, HAS_CAP = 4, HAS_SIG = 8, HAS_SKETCH = 16 };
typedef struct dedup_aux {
	uint32_t flags;
	double metric; /* for --keep: larger is better */
	uint64_t img[2], pix[2], cap[2];
	img_sig sig;
	uint32_t sketch[]; /* num_perm */
} dedup_aux;

/* one drop, for --clusters */
typedef struct drop_rec {
	uint32_t kept;     /* kept sample number */
	size_t pos;        /* input order among the drops */
	char *key;
	const char *reason;
	double dist;
} drop_rec;

typedef struct side {
	hset128 *img, *pix, *cap, *pair;
	img_index *near;
	cap_index *caps;
} side;

static const char *const reason_names[] = {
	"", "exact_image", "exact_caption", "exact_pair", "near_image", "near_caption", "contaminated",
};
enum { NREASONS = sizeof reason_names / sizeof reason_names[0] };

static uint8_t reason_code(const char *r)
{
	for (uint8_t i = 1; i < NREASONS; i++)
		if (!strcmp(reason_names[i], r))
			return i;
	return 0;
}

enum { KEEP_FIRST, KEEP_LARGEST_IMAGE, KEEP_LONGEST_CAPTION, KEEP_SCORE };

typedef struct dedup_state {
	dedup_conf c;
	int keep;
	const char *score_field;
	/* --build-index: every sample, union-find over them */
	uint32_t n, capn;
	char **allkeys;
	double *metric;
	uint32_t *parent;
	uint8_t *why;   /* reason code of the link that joined it to a cluster */
	float *dist;
	/* --index: the keys to drop */
	hset128 *drop;
	uint8_t *drop_why;
	char **drop_winner;
	float *drop_dist;
	uint32_t ndrop;
	minhash *mh;
	int lsh_bands, lsh_rows;
	side train, eval;
	int has_eval;
	/* kept sample number -> key, only with --clusters */
	char **keys;
	uint32_t nkept, capkeys;
	drop_rec *drops;
	size_t ndrops, capdrops;
	/* split across ranks (dedup_dist.h): pass 1 collects, pass 2 replays;
	 * per sample reaching ordered(): its dedup_dist number (or NOT_DD when
	 * the eval set matched it) and its key's hash, so pass 2 can check it
	 * sees the same samples */
	int dmode;
	const dist *d;
	dedup_dist *dd;
	uint32_t nseq, capseq, replay;
	uint32_t *seq_dd;
	uint64_t *seq_key;
	uint8_t *seq_why; /* the eval match's reason code */
	float *seq_dist;
	int replay_mismatch;
} dedup_state;

enum { DM_SINGLE, DM_COLLECT, DM_REPLAY };
#define NOT_DD UINT32_MAX

typedef struct dedup_tls {
	img_ctx *ic;
	text_ctx *tc;
	buf norm, conv;
} dedup_tls;

static void side_init(side *s, const dedup_conf *c, int lsh_bands, int lsh_rows)
{
	s->img = hset128_new();
	s->pix = hset128_new();
	s->cap = hset128_new();
	s->pair = hset128_new();
	if (c->near_image)
		s->near = img_index_new(c->bands);
	if (c->near_caption)
		s->caps = cap_index_new(c->num_perm, lsh_bands, lsh_rows);
}

static void side_free(side *s)
{
	hset128_free(s->img);
	hset128_free(s->pix);
	hset128_free(s->cap);
	hset128_free(s->pair);
	img_index_free(s->near);
	cap_index_free(s->caps);
}

/* ---------------------------------------------------------------------- */
/* signatures (parallel) */

/* lower-case ASCII, Unicode whitespace runs to one space, trimmed: two
 * captions equal after this are the same caption */
static void normalize_caption(const char *s, size_t n, buf *out)
{
	out->len = 0;
	buf_reserve(out, n + 1);
	int pending = 0;
	for (size_t i = 0; i < n;) {
		size_t at = i;
		uint32_t c = utf8_next(s, n, &i);
		if (c == ' ' || (c >= 9 && c <= 13) || c == 0xA0 || c == 0x3000 || c == 0x85 ||
		    (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F) {
			pending = 1;
			continue;
		}
		if (pending && out->len)
			buf_append(out, " ", 1);
		pending = 0;
		if (c >= 'A' && c <= 'Z') {
			char l = (char)(c + 32);
			buf_append(out, &l, 1);
		} else {
			buf_append(out, s + at, i - at);
		}
	}
	buf_append(out, "", 0);
}

static void signatures(const dedup_state *st, dedup_tls *t, const sample *s, dedup_aux *a)
{
	const dedup_conf *c = &st->c;
	a->flags = 0;
	member *m = sample_image(s, NULL);
	if (m && (c->exact_image || c->exact_pair)) {
		XXH128_hash_t h = XXH3_128bits(m->data, m->size);
		a->img[0] = h.low64;
		a->img[1] = h.high64;
		a->flags |= HAS_IMG;
	}
	if (m && c->near_image) {
		img_decode_opts d;
		img_decode_opts_default(&d);
		d.want_w = d.want_h = 32; /* pHash needs 32x32 of detail */
		img_rgb im = {0};
		if (img_decode(t->ic, m->data, m->size, &d, &im, NULL, NULL) == 0) {
			if (img_signature(&im, &a->sig) == 0)
				a->flags |= HAS_SIG;
			img_rgb_free(&im);
		}
	}
	if (m && c->exact_pixels) {
		img_decode_opts d;
		img_decode_opts_default(&d);
		img_rgb im = {0};
		if (img_decode(t->ic, m->data, m->size, &d, &im, NULL, NULL) == 0) {
			XXH3_state_t *xs = XXH3_createState();
			XXH3_128bits_reset(xs);
			XXH3_128bits_update(xs, &im.w, sizeof im.w);
			XXH3_128bits_update(xs, &im.h, sizeof im.h);
			XXH3_128bits_update(xs, im.px, (size_t)im.w * (size_t)im.h * 3);
			XXH128_hash_t h = XXH3_128bits_digest(xs);
			XXH3_freeState(xs);
			a->pix[0] = h.low64;
			a->pix[1] = h.high64;
			a->flags |= HAS_PIX;
			img_rgb_free(&im);
		}
	}
	size_t n;
	const char *cap = sample_caption(s, &t->conv, &n, NULL);
	if (cap && (c->exact_caption || c->exact_pair)) {
		normalize_caption(cap, n, &t->norm);
		XXH128_hash_t h = XXH3_128bits(t->norm.data, t->norm.len);
		a->cap[0] = h.low64;
		a->cap[1] = h.high64;
		a->flags |= HAS_CAP;
	}
	/* a caption with no words has no shingles: an all-empty sketch would
	 * match every other wordless caption, so it joins no caption index */
	if (cap && c->near_caption && minhash_sketch(st->mh, t->tc, cap, n, a->sketch) > 0)
		a->flags |= HAS_SKETCH;
}

/* The --keep measure of a sample (larger is better). */
static double keep_metric(const dedup_state *st, const sample *s)
{
	switch (st->keep) {
	case KEEP_LARGEST_IMAGE: {
		member *m = sample_image(s, NULL);
		img_info info;
		if (m && img_probe(m->data, m->size, &info, NULL) == 0)
			return (double)info.width * (double)info.height;
		return -1;
	}
	case KEEP_LONGEST_CAPTION: {
		member *t = sample_get(s, "txt");
		return t ? (double)utf8_count(t->data, t->size) : -1;
	}
	case KEEP_SCORE: {
		member *j = sample_get(s, "json");
		double v = -1e300;
		if (j) {
			json_t *o = json_loadb((const char *)j->data, j->size, 0, NULL);
			json_t *f = json_object_get(o, st->score_field);
			if (json_is_number(f))
				v = json_number_value(f);
			json_decref(o);
		}
		return v;
	}
	}
	return 0;
}

static int dedup_apply(const void *state, void *tls, sample *s, reject_info *rj)
{
	const dedup_state *st = state;
	dedup_aux *a = (dedup_aux *)s->aux;
	if (st->drop || st->dmode == DM_REPLAY) { /* the decisions are made already */
		a->flags = 0;
		return 0;
	}
	signatures(st, tls, s, a);
	a->metric = keep_metric(st, s);
	s->aux_len = (int)(sizeof *a + (size_t)st->c.num_perm * sizeof(uint32_t));
	(void)rj;
	return 0;
}

/* ---------------------------------------------------------------------- */
/* decisions (serial) */

static void pair_hash(const dedup_aux *a, uint64_t out[2])
{
	uint64_t v[4] = {a->img[0], a->img[1], a->cap[0], a->cap[1]};
	XXH128_hash_t h = XXH3_128bits(v, sizeof v);
	out[0] = h.low64;
	out[1] = h.high64;
}

/* Looks a at up in one side.  @return the matched value or -1; *reason
 * and *dist say which index matched. */
static int64_t lookup(const dedup_state *st, const side *sd, const dedup_aux *a, const char **reason,
		      double *dist)
{
	const dedup_conf *c = &st->c;
	int64_t v;
	*dist = 0;
	if (c->exact_image && (a->flags & HAS_IMG) && (v = hset128_find(sd->img, a->img[0], a->img[1])) >= 0) {
		*reason = "exact_image";
		return v;
	}
	if (c->exact_pixels && (a->flags & HAS_PIX) && (v = hset128_find(sd->pix, a->pix[0], a->pix[1])) >= 0) {
		*reason = "exact_image";
		return v;
	}
	if (c->exact_pair && (a->flags & HAS_IMG) && (a->flags & HAS_CAP)) {
		uint64_t p[2];
		pair_hash(a, p);
		if ((v = hset128_find(sd->pair, p[0], p[1])) >= 0) {
			*reason = "exact_pair";
			return v;
		}
	}
	if (c->exact_caption && (a->flags & HAS_CAP) && (v = hset128_find(sd->cap, a->cap[0], a->cap[1])) >= 0) {
		*reason = "exact_caption";
		return v;
	}
	if (c->near_image && (a->flags & HAS_SIG)) {
		int d;
		double td;
		uint64_t h = strcmp(c->hash, "dhash") ? a->sig.phash : a->sig.dhash;
		v = img_index_query(sd->near, h, a->sig.thumb, c->max_hamming, c->max_thumb, &d, &td);
		if (v >= 0) {
			*reason = "near_image";
			*dist = d;
			return v;
		}
	}
	if (c->near_caption && (a->flags & HAS_SKETCH)) {
		double sim;
		v = cap_index_query(sd->caps, a->sketch, c->jaccard, &sim);
		if (v >= 0) {
			*reason = "near_caption";
			*dist = 1 - sim;
			return v;
		}
	}
	return -1;
}

static void insert(const dedup_state *st, side *sd, const dedup_aux *a, uint32_t value)
{
	const dedup_conf *c = &st->c;
	if ((a->flags & HAS_IMG) && c->exact_image)
		hset128_put(sd->img, a->img[0], a->img[1], value);
	if ((a->flags & HAS_PIX) && c->exact_pixels)
		hset128_put(sd->pix, a->pix[0], a->pix[1], value);
	if ((a->flags & HAS_IMG) && (a->flags & HAS_CAP) && c->exact_pair) {
		uint64_t p[2];
		pair_hash(a, p);
		hset128_put(sd->pair, p[0], p[1], value);
	}
	if ((a->flags & HAS_CAP) && c->exact_caption)
		hset128_put(sd->cap, a->cap[0], a->cap[1], value);
	if ((a->flags & HAS_SIG) && c->near_image)
		img_index_add(sd->near, strcmp(c->hash, "dhash") ? a->sig.phash : a->sig.dhash, a->sig.thumb, value);
	if ((a->flags & HAS_SKETCH) && c->near_caption)
		cap_index_add(sd->caps, a->sketch, value);
}

static void record_drop(dedup_state *st, uint32_t kept, const char *key, const char *reason, double dist)
{
	if (!st->c.clusters)
		return;
	if (st->ndrops == st->capdrops) {
		st->capdrops = st->capdrops ? st->capdrops * 2 : 1024;
		st->drops = xrealloc(st->drops, st->capdrops * sizeof *st->drops);
	}
	st->drops[st->ndrops] = (drop_rec){kept, st->ndrops, xstrdup(key), reason, dist};
	st->ndrops++;
}

static uint32_t uf_find(uint32_t *p, uint32_t x)
{
	while (p[x] != x) {
		p[x] = p[p[x]]; /* path halving */
		x = p[x];
	}
	return x;
}

/* --build-index: every sample joins the indexes; a match links clusters. */
static int build_ordered(dedup_state *st, sample *s, const dedup_aux *a)
{
	if (st->n == st->capn) {
		st->capn = st->capn ? st->capn * 2 : 1024;
		st->allkeys = xrealloc(st->allkeys, st->capn * sizeof *st->allkeys);
		st->metric = xrealloc(st->metric, st->capn * sizeof *st->metric);
		st->parent = xrealloc(st->parent, st->capn * sizeof *st->parent);
		st->why = xrealloc(st->why, st->capn);
		st->dist = xrealloc(st->dist, st->capn * sizeof *st->dist);
	}
	uint32_t id = st->n++;
	st->allkeys[id] = xstrdup(s->key);
	st->metric[id] = a->metric;
	st->parent[id] = id;
	st->why[id] = 0;
	st->dist[id] = 0;
	const char *reason;
	double dist;
	if (st->has_eval && lookup(st, &st->eval, a, &reason, &dist) >= 0) {
		st->why[id] = reason_code("contaminated");
		st->dist[id] = (float)dist;
		return 0; /* never a survivor, never a cluster's link */
	}
	int64_t v = lookup(st, &st->train, a, &reason, &dist);
	if (v >= 0) {
		uint32_t ra = uf_find(st->parent, id), rb = uf_find(st->parent, (uint32_t)v);
		if (ra != rb)
			st->parent[ra] = rb;
		st->why[id] = reason_code(reason);
		st->dist[id] = (float)dist;
	}
	insert(st, &st->train, a, id);
	return 0;
}

/* pass 1 of a split run: the eval check is local; the rest is recorded */
static int collect_ordered(dedup_state *st, const sample *s, const dedup_aux *a)
{
	const dedup_conf *c = &st->c;
	if (st->nseq == st->capseq) {
		st->capseq = st->capseq ? st->capseq * 2 : 1024;
		st->seq_dd = xrealloc(st->seq_dd, st->capseq * sizeof *st->seq_dd);
		st->seq_key = xrealloc(st->seq_key, st->capseq * sizeof *st->seq_key);
		st->seq_why = xrealloc(st->seq_why, st->capseq);
		st->seq_dist = xrealloc(st->seq_dist, st->capseq * sizeof *st->seq_dist);
	}
	uint32_t i = st->nseq++;
	st->seq_key[i] = XXH3_64bits(s->key, strlen(s->key));
	const char *reason;
	double dist;
	if (st->has_eval && lookup(st, &st->eval, a, &reason, &dist) >= 0) {
		st->seq_dd[i] = NOT_DD;
		st->seq_why[i] = reason_code(reason);
		st->seq_dist[i] = (float)dist;
		return 0;
	}
	/* the conditions of insert(): what the single-process index holds */
	dd_item it = {0};
	if ((a->flags & HAS_IMG) && c->exact_image) {
		it.has |= 1u << DD_EXACT_IMAGE;
		memcpy(it.exact[DD_EXACT_IMAGE], a->img, sizeof a->img);
	}
	if ((a->flags & HAS_PIX) && c->exact_pixels) {
		it.has |= 1u << DD_EXACT_PIXELS;
		memcpy(it.exact[DD_EXACT_PIXELS], a->pix, sizeof a->pix);
	}
	if ((a->flags & HAS_IMG) && (a->flags & HAS_CAP) && c->exact_pair) {
		it.has |= 1u << DD_EXACT_PAIR;
		pair_hash(a, it.exact[DD_EXACT_PAIR]);
	}
	if ((a->flags & HAS_CAP) && c->exact_caption) {
		it.has |= 1u << DD_EXACT_CAPTION;
		memcpy(it.exact[DD_EXACT_CAPTION], a->cap, sizeof a->cap);
	}
	if ((a->flags & HAS_SIG) && c->near_image) {
		it.has |= 1u << DD_NEAR_IMAGE;
		it.hash = strcmp(c->hash, "dhash") ? a->sig.phash : a->sig.dhash;
		memcpy(it.thumb, a->sig.thumb, THUMB_BYTES);
	}
	if ((a->flags & HAS_SKETCH) && c->near_caption)
		it.has |= 1u << DD_NEAR_CAPTION;
	st->seq_dd[i] = dedup_dist_add(st->dd, &it, a->sketch);
	return 0;
}

static const char *const dd_reasons[DD_KINDS] = {
	"exact_image", "exact_image", "exact_pair", "exact_caption", "near_image", "near_caption",
};

/* pass 2 of a split run: the verdicts, in the order pass 1 saw them */
static int replay_ordered(dedup_state *st, const sample *s, reject_info *rj)
{
	uint32_t i = st->replay++;
	if (i >= st->nseq || st->seq_key[i] != XXH3_64bits(s->key, strlen(s->key))) {
		st->replay_mismatch = 1; /* reported by finish: the run fails */
		return 0;
	}
	if (st->seq_dd[i] == NOT_DD)
		return reject_set(rj, "contaminated", "%s of an eval sample (distance %g)",
				  reason_names[st->seq_why[i]], (double)st->seq_dist[i]);
	uint64_t kept;
	double dist;
	int kind = dedup_dist_verdict(st->dd, st->seq_dd[i], &kept, &dist);
	if (kind < 0)
		return 0;
	return reject_set(rj, dd_reasons[kind], "duplicate of kept sample #%lld (distance %g)",
			  (long long)kept, dist);
}

static int dedup_ordered(void *state, sample *s, reject_info *rj)
{
	dedup_state *st = state;
	const dedup_aux *a = (const dedup_aux *)s->aux;
	const char *reason;
	double dist;
	if (st->dmode == DM_COLLECT)
		return collect_ordered(st, s, a);
	if (st->dmode == DM_REPLAY)
		return replay_ordered(st, s, rj);
	if (st->drop) {
		XXH128_hash_t h = XXH3_128bits(s->key, strlen(s->key));
		int64_t e = hset128_find(st->drop, h.low64, h.high64);
		if (e < 0)
			return 0;
		return reject_set(rj, reason_names[st->drop_why[e]], "duplicate of '%s' (distance %g; from the index)",
				  st->drop_winner[e], (double)st->drop_dist[e]);
	}
	if (st->c.build_index)
		return build_ordered(st, s, a);
	if (st->has_eval && lookup(st, &st->eval, a, &reason, &dist) >= 0)
		return reject_set(rj, "contaminated", "%s of an eval sample (distance %g)", reason, dist);
	int64_t v = lookup(st, &st->train, a, &reason, &dist);
	if (v >= 0) {
		record_drop(st, (uint32_t)v, s->key, reason, dist);
		const char *kept = st->keys ? st->keys[v] : NULL;
		if (kept)
			return reject_set(rj, reason, "duplicate of '%s' (distance %g)", kept, dist);
		return reject_set(rj, reason, "duplicate of kept sample #%lld (distance %g)", (long long)v, dist);
	}
	uint32_t id = st->nkept++;
	if (st->c.clusters) {
		if (id == st->capkeys) {
			st->capkeys = st->capkeys ? st->capkeys * 2 : 1024;
			st->keys = xrealloc(st->keys, st->capkeys * sizeof *st->keys);
		}
		st->keys[id] = xstrdup(s->key);
	}
	insert(st, &st->train, a, id);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* open / close */

static int load_eval(dedup_state *st, mvl_err *err)
{
	inputs in = {0};
	if (inputs_expand(&in, st->c.against, err) != 0 || inputs_shard_dirs(&in, err) != 0) {
		inputs_free(&in);
		return -1;
	}
	shard_reader *r = shard_reader_new(in.path, in.n, NULL);
	dedup_tls *t = xcalloc(1, sizeof *t);
	t->ic = img_ctx_new();
	t->tc = text_ctx_new();
	sample s;
	sample_init(&s);
	reject_info rj;
	int rc = 0, k;
	uint32_t n = 0;
	while ((k = shard_reader_next(r, &s, &rj, err)) != READ_END) {
		if (k == READ_INPUT_ERROR || k == READ_BROKEN) {
			rc = mvl_errprefix(err, "eval set");
			break;
		}
		if (k != READ_SAMPLE)
			continue;
		dedup_aux *a = (dedup_aux *)s.aux;
		signatures(st, t, &s, a);
		insert(st, &st->eval, a, n++);
	}
	if (rc == 0 && n == 0)
		rc = mvl_errf(err, "eval set '%s' has no samples", st->c.against);
	sample_free(&s);
	shard_reader_free(r);
	img_ctx_free(t->ic);
	text_ctx_free(t->tc);
	buf_free(&t->norm);
	buf_free(&t->conv);
	free(t);
	inputs_free(&in);
	st->has_eval = 1;
	return rc;
}

/* --index: "key \t reason \t kept key \t distance" lines after a header. */
static int load_index(dedup_state *st, mvl_err *err)
{
	FILE *f = fopen(st->c.index, "r");
	if (!f)
		return mvl_errf(err, "cannot read index '%s': %s", st->c.index, strerror(errno));
	char *line = NULL;
	size_t cap = 0, lineno = 0;
	ssize_t len;
	int rc = 0;
	st->drop = hset128_new();
	uint32_t capd = 0;
	while ((len = getline(&line, &cap, f)) >= 0) {
		lineno++;
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = 0;
		if (lineno == 1) {
			if (strcmp(line, "# mvl dedup index 1") != 0) {
				rc = mvl_errf(err, "'%s' is not an mvl dedup index (first line '%.60s')", st->c.index, line);
				break;
			}
			continue;
		}
		char *f1 = line, *f2 = strchr(f1, '\t'), *f3 = f2 ? strchr(f2 + 1, '\t') : NULL,
		     *f4 = f3 ? strchr(f3 + 1, '\t') : NULL;
		if (!f4) {
			rc = mvl_errf(err, "'%s' line %zu: expected 4 tab-separated fields", st->c.index, lineno);
			break;
		}
		*f2++ = 0;
		*f3++ = 0;
		*f4++ = 0;
		tsv_unescape(f1);
		tsv_unescape(f3);
		uint8_t why = reason_code(f2);
		if (!why) {
			rc = mvl_errf(err, "'%s' line %zu: unknown reason '%s'", st->c.index, lineno, f2);
			break;
		}
		if (st->ndrop == capd) {
			capd = capd ? capd * 2 : 1024;
			st->drop_why = xrealloc(st->drop_why, capd);
			st->drop_winner = xrealloc(st->drop_winner, capd * sizeof *st->drop_winner);
			st->drop_dist = xrealloc(st->drop_dist, capd * sizeof *st->drop_dist);
		}
		XXH128_hash_t h = XXH3_128bits(f1, strlen(f1));
		st->drop_why[st->ndrop] = why;
		st->drop_winner[st->ndrop] = xstrdup(f3);
		st->drop_dist[st->ndrop] = strtof(f4, NULL);
		hset128_put(st->drop, h.low64, h.high64, st->ndrop);
		st->ndrop++;
	}
	if (rc == 0 && lineno == 0)
		rc = mvl_errf(err, "index '%s' is empty", st->c.index);
	free(line);
	fclose(f);
	return rc;
}

/* The survivor of each cluster: the best metric, then the smallest key,
 * then the first seen: the same whatever the input order. */
static int better(const dedup_state *st, uint32_t a, uint32_t b)
{
	if (st->metric[a] != st->metric[b])
		return st->metric[a] > st->metric[b];
	int k = strcmp(st->allkeys[a], st->allkeys[b]);
	if (k)
		return k < 0;
	return a < b;
}

/* --build-index: write the keys to drop (and --clusters). */
static int write_index(dedup_state *st, mvl_err *err)
{
	uint32_t n = st->n;
	uint32_t *win = xmalloc((n ? n : 1) * sizeof *win);
	for (uint32_t i = 0; i < n; i++)
		win[i] = UINT32_MAX;
	for (uint32_t i = 0; i < n; i++) {
		if (st->why[i] == reason_code("contaminated"))
			continue;
		uint32_t r = uf_find(st->parent, i);
		if (win[r] == UINT32_MAX || better(st, i, win[r]))
			win[r] = i;
	}
	atomic_file af;
	if (atomic_file_open(&af, st->c.build_index, err) != 0) {
		free(win);
		return -1;
	}
	/* Pass 2 drops by key: a key that also names a survivor (the same
	 * shard read twice) would drop the survivor with its copy.  Such a
	 * duplicate is kept, and said. */
	hset128 *survivors = hset128_new();
	for (uint32_t i = 0; i < n; i++)
		if (st->why[i] != reason_code("contaminated") && win[uf_find(st->parent, i)] == i) {
			XXH128_hash_t h = XXH3_128bits(st->allkeys[i], strlen(st->allkeys[i]));
			hset128_put(survivors, h.low64, h.high64, i);
		}
	fprintf(af.f, "# mvl dedup index 1\n");
	uint64_t dropped = 0, ambiguous = 0;
	const char *first_ambiguous = NULL;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t why = st->why[i];
		const char *kept = "-";
		if (why != reason_code("contaminated")) {
			uint32_t w = win[uf_find(st->parent, i)];
			if (w == i)
				continue;
			kept = st->allkeys[w];
			if (!why) /* the first of its cluster lost to a later one */
				why = st->why[w];
		}
		XXH128_hash_t h = XXH3_128bits(st->allkeys[i], strlen(st->allkeys[i]));
		if (hset128_find(survivors, h.low64, h.high64) >= 0) {
			if (!ambiguous++)
				first_ambiguous = st->allkeys[i];
			continue;
		}
		if (why != reason_code("contaminated"))
			record_drop(st, win[uf_find(st->parent, i)], st->allkeys[i], reason_names[why], st->dist[i]);
		/* keys escaped as the rejects TSV escapes them: a tab or a
		 * newline in a key must not break the line */
		tsv_put(af.f, st->allkeys[i]);
		fprintf(af.f, "\t%s\t", reason_names[why]);
		tsv_put(af.f, kept);
		fprintf(af.f, "\t%g\n", (double)st->dist[i]);
		dropped++;
	}
	hset128_free(survivors);
	free(win);
	fprintf(stderr, "mvl dedup: index '%s': %u samples, %llu to drop\n", st->c.build_index, n,
		(unsigned long long)dropped);
	if (ambiguous)
		fprintf(stderr,
			"mvl dedup: index '%s': %llu duplicate%s kept: %s a survivor's key (first: '%.200s'); "
			"keys must be unique for --index\n",
			st->c.build_index, (unsigned long long)ambiguous, ambiguous == 1 ? "" : "s",
			ambiguous == 1 ? "it shares" : "they share", first_ambiguous);
	/* --clusters names the survivors by their keys */
	st->keys = st->allkeys;
	st->nkept = n;
	return atomic_file_commit(&af, err);
}

static int dedup_no_output(const void *state)
{
	return ((const dedup_state *)state)->c.build_index != NULL;
}

static void dedup_close(void *state)
{
	dedup_state *st = state;
	if (!st)
		return;
	side_free(&st->train);
	side_free(&st->eval);
	minhash_free(st->mh);
	for (uint32_t i = 0; st->keys && i < st->nkept; i++)
		free(st->keys[i]);
	if (st->keys != st->allkeys)
		free(st->keys);
	for (size_t i = 0; i < st->ndrops; i++)
		free(st->drops[i].key);
	free(st->drops);
	if (st->keys != st->allkeys)
		for (uint32_t i = 0; i < st->n; i++)
			free(st->allkeys[i]);
	free(st->allkeys);
	free(st->metric);
	free(st->parent);
	free(st->why);
	free(st->dist);
	hset128_free(st->drop);
	for (uint32_t i = 0; i < st->ndrop; i++)
		free(st->drop_winner[i]);
	free(st->drop_winner);
	free(st->drop_why);
	free(st->drop_dist);
	dedup_dist_free(st->dd);
	free(st->seq_dd);
	free(st->seq_key);
	free(st->seq_why);
	free(st->seq_dist);
	free(st);
}

static int dedup_open(const void *conf, void **state, mvl_err *err)
{
	dedup_state *st = xcalloc(1, sizeof *st);
	st->c = *(const dedup_conf *)conf;
	*state = st;
	dedup_conf *c = &st->c;
	int flags[] = {c->exact_image, c->exact_pixels, c->exact_caption, c->exact_pair, c->near_image,
		       c->near_caption};
	for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
		if (flags[i] != 0 && flags[i] != 1)
			return mvl_errf(err, "exact_*, near_image and near_caption take 0 or 1");
	if (c->bands < 4 || c->bands > IMG_MAX_BANDS)
		return mvl_errf(err, "bands %d is not within 4..%d", c->bands, IMG_MAX_BANDS);
	if (c->max_hamming < 0 || c->max_hamming > 64)
		return mvl_errf(err, "max_hamming %d is not within 0..64", c->max_hamming);
	if (c->max_thumb < 0 || c->max_thumb > 255)
		return mvl_errf(err, "max_thumb %g is not within 0..255", c->max_thumb);
	if (!(c->jaccard > 0 && c->jaccard <= 1))
		return mvl_errf(err, "jaccard %g is not within (0, 1]", c->jaccard);
	if (c->num_perm < 8 || c->num_perm > 256)
		return mvl_errf(err, "num_perm %d is not within 8..256", c->num_perm);
	if (c->ngram < 1 || c->ngram > 32)
		return mvl_errf(err, "ngram %d is not within 1..32", c->ngram);
	if (!strcmp(c->keep, "first"))
		st->keep = KEEP_FIRST;
	else if (!strcmp(c->keep, "largest_image"))
		st->keep = KEEP_LARGEST_IMAGE;
	else if (!strcmp(c->keep, "longest_caption"))
		st->keep = KEEP_LONGEST_CAPTION;
	else if (!strncmp(c->keep, "score:", 6) && c->keep[6]) {
		st->keep = KEEP_SCORE;
		st->score_field = c->keep + 6;
	} else
		return mvl_errf(err, "keep '%s' is not first, largest_image, longest_caption or score:FIELD",
				c->keep);
	if (st->keep != KEEP_FIRST && !c->build_index)
		return mvl_errf(err, "keep=%s needs two passes (--build-index, then --index): a single "
				     "pass can only keep the first seen", c->keep);
	if (c->build_index && c->index)
		return mvl_errf(err, "build_index and index are the two passes: give one");
	if (c->index)
		return load_index(st, err);
	if (!(st->mh = minhash_new(c->num_perm, c->ngram, c->seed)))
		return mvl_errf(err, "cannot set up MinHash");
	/* The area-optimal S-curve for the threshold itself finds only ~40% of
	 * the pairs sitting exactly at it (0.8 / 128 perms: 9 x 13); tuning
	 * the bands for 0.1 lower (14 x 9) finds ~87% of them and all but 0.2%
	 * at 0.9, and verification still holds the line at `jaccard`. */
	double tune = c->jaccard > 0.2 ? c->jaccard - 0.1 : c->jaccard;
	lsh_params(tune, c->num_perm, &st->lsh_bands, &st->lsh_rows);
	side_init(&st->train, c, st->lsh_bands, st->lsh_rows);
	side_init(&st->eval, c, st->lsh_bands, st->lsh_rows);
	if (c->against && load_eval(st, err) != 0)
		return -1;
	return 0;
}

static void *dedup_tls_new(const void *state)
{
	(void)state;
	dedup_tls *t = xcalloc(1, sizeof *t);
	t->ic = img_ctx_new();
	t->tc = text_ctx_new();
	return t;
}

static void dedup_tls_free(void *tls)
{
	dedup_tls *t = tls;
	img_ctx_free(t->ic);
	text_ctx_free(t->tc);
	buf_free(&t->norm);
	buf_free(&t->conv);
	free(t);
}

static int by_kept(const void *x, const void *y)
{
	const drop_rec *a = x, *b = y;
	if (a->kept != b->kept)
		return a->kept < b->kept ? -1 : 1;
	return a->pos < b->pos ? -1 : a->pos > b->pos;
}

/* --clusters: one JSON line per cluster, in the order the kept samples
 * were seen; its drops in input order. */
static int dedup_finish(void *state, mvl_err *err)
{
	dedup_state *st = state;
	if (st->replay_mismatch)
		return mvl_errf(err, "the inputs changed between the two passes of a distributed run "
				     "(pass 2 saw %u samples reach dedup, pass 1 %u, or other keys)",
				st->replay, st->nseq);
	if (st->dmode == DM_REPLAY && st->replay != st->nseq)
		return mvl_errf(err, "the inputs changed between the two passes of a distributed run "
				     "(pass 1 saw %u samples reach dedup, pass 2 %u)", st->nseq, st->replay);
	if (st->c.build_index && write_index(st, err) != 0)
		return -1;
	if (!st->c.clusters)
		return 0;
	if (st->ndrops)
		qsort(st->drops, st->ndrops, sizeof *st->drops, by_kept);
	atomic_file af;
	if (atomic_file_open(&af, st->c.clusters, err) != 0)
		return -1;
	for (size_t i = 0; i < st->ndrops;) {
		size_t j = i;
		json_t *dropped = json_array();
		while (j < st->ndrops && st->drops[j].kept == st->drops[i].kept) {
			json_array_append_new(dropped, json_pack("{s:s,s:s,s:f}", "key", st->drops[j].key, "reason",
								 st->drops[j].reason, "distance", st->drops[j].dist));
			j++;
		}
		json_t *line = json_pack("{s:s,s:o}", "kept", st->keys[st->drops[i].kept], "dropped", dropped);
		char *js = json_dumps(line, JSON_COMPACT | JSON_REAL_PRECISION(6));
		fprintf(af.f, "%s\n", js ? js : "{}");
		free(js);
		json_decref(line);
		i = j;
	}
	return atomic_file_commit(&af, err);
}

/* A split run (mpirun): --index drops by key, the same on any rank, so it
 * needs nothing; the rest goes through dedup_dist.h. */
static int dedup_dist_start(void *state, const dist *d, mvl_err *err)
{
	dedup_state *st = state;
	if (st->c.build_index)
		return mvl_errf(err, "build_index reads every input in one process: run it without mpirun");
	if (st->c.clusters)
		return mvl_errf(err, "clusters is written by one process: run it without mpirun");
	if (st->drop)
		return 0;
	const dedup_conf *c = &st->c;
	dd_conf dc = {c->bands, c->max_hamming, c->max_thumb, c->num_perm, st->lsh_bands, st->lsh_rows,
		      c->jaccard};
	st->dd = dedup_dist_new(&dc);
	st->d = d;
	st->dmode = DM_COLLECT;
	return 0;
}

static int dedup_dist_exchange(void *state, mvl_err *err)
{
	dedup_state *st = state;
	if (st->dmode != DM_COLLECT)
		return 0;
	if (dedup_dist_decide(st->dd, st->d, err) != 0)
		return -1;
	st->dmode = DM_REPLAY;
	st->replay = 0;
	return 0;
}

const filter_def filter_dedup = {
	"dedup",
	"Drop exact and near duplicates: image bytes, pixels, perceptual hash with a\n"
	"colour check, captions (exact or MinHash), and samples that duplicate an\n"
	"eval set.  The first-seen member of each cluster is kept.",
	"Drop reasons: dedup.exact_image, dedup.exact_caption, dedup.exact_pair,\n"
	"dedup.near_image, dedup.near_caption, dedup.contaminated.  With no options:\n"
	"exact and near-duplicate images at the default thresholds, first seen kept;\n"
	"caption dedup only when asked (generic captions legitimately repeat across\n"
	"different images).  Memory: about 106 bytes per kept image in the near-image\n"
	"index (48-byte thumbnail, 4 bands x 12 bytes of inline hash and id) plus\n"
	"about 40 for the exact-hash set; 4 * num_perm + 12 * bands bytes per kept\n"
	"caption with near_caption.  Must come last in a filter chain.\n"
	"Under mpirun (-np N, -o shards) the inputs are split across the ranks and the\n"
	"result is that of one process (filters/dedup_dist.h); build_index and\n"
	"clusters run without mpirun.\n"
	"Details, thresholds and how they were chosen: filters/README.md.\n",
	dedup_opts,
	sizeof(dedup_conf),
	dedup_open,
	dedup_tls_new,
	dedup_tls_free,
	dedup_apply,
	dedup_close,
	dedup_ordered,
	dedup_finish,
	dedup_no_output,
	dedup_dist_start,
	dedup_dist_exchange,
};
