/* dedup_index.c: exact sets, pHash band index, MinHash LSH index. */
#include "dedup_index.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "minhash.h"
#include "util.h"

/* ---------------------------------------------------------------------- */
/* hset128 */

typedef struct h128 {
	uint64_t lo, hi;
	uint32_t value;
	uint32_t used;
} h128;

struct hset128 {
	h128 *t;
	size_t cap, n;
};

hset128 *hset128_new(void)
{
	hset128 *h = xcalloc(1, sizeof *h);
	h->cap = 1024;
	h->t = xcalloc(h->cap, sizeof *h->t);
	return h;
}

void hset128_free(hset128 *h)
{
	if (!h)
		return;
	free(h->t);
	free(h);
}

int64_t hset128_find(const hset128 *h, uint64_t lo, uint64_t hi)
{
	for (size_t i = lo & (h->cap - 1);; i = (i + 1) & (h->cap - 1)) {
		const h128 *e = &h->t[i];
		if (!e->used)
			return -1;
		if (e->lo == lo && e->hi == hi)
			return e->value;
	}
}

static void h128_insert(h128 *t, size_t cap, h128 e)
{
	size_t i = e.lo & (cap - 1);
	while (t[i].used)
		i = (i + 1) & (cap - 1);
	t[i] = e;
}

void hset128_put(hset128 *h, uint64_t lo, uint64_t hi, uint32_t value)
{
	if (hset128_find(h, lo, hi) >= 0)
		return;
	if ((h->n + 1) * 10 > h->cap * 7) { /* load factor 0.7 */
		size_t nc = h->cap * 2;
		h128 *nt = xcalloc(nc, sizeof *nt);
		for (size_t i = 0; i < h->cap; i++)
			if (h->t[i].used)
				h128_insert(nt, nc, h->t[i]);
		free(h->t);
		h->t = nt;
		h->cap = nc;
	}
	h128_insert(h->t, h->cap, (h128){lo, hi, value, 1});
	h->n++;
}

size_t hset128_bytes(const hset128 *h)
{
	return h->cap * sizeof(h128);
}

/* ---------------------------------------------------------------------- */
/* img_index */

/* One bucket per band value: the hashes of its entries stored inline and
 * contiguous, so a query scans them with popcount at memory speed instead
 * of chasing one cache miss per candidate; ids alongside for the rest. */
typedef struct bucket {
	uint64_t *hash; /* cap hashes, then cap uint32 ids: one allocation */
	uint32_t n, cap;
} bucket;

static inline uint32_t *bucket_ids(const bucket *k)
{
	return (uint32_t *)(k->hash + k->cap);
}

/* thumbnails and values in fixed chunks: no doubling slack (at 10M images
 * a doubled array would hold 16.7M slots) */
enum { CHUNK_BITS = 16, CHUNK = 1 << CHUNK_BITS };
typedef struct chunk {
	uint8_t thumb[CHUNK][THUMB_BYTES];
	uint32_t value[CHUNK];
} chunk;

struct img_index {
	int bands;
	int shift[IMG_MAX_BANDS], width[IMG_MAX_BANDS];
	bucket *bk[IMG_MAX_BANDS]; /* 1 << width each */
	chunk **ch;
	uint32_t nch, capch;
	uint32_t n;
	size_t bucket_bytes;
};

img_index *img_index_new(int bands)
{
	if (bands < 4 || bands > IMG_MAX_BANDS)
		return NULL;
	img_index *x = xcalloc(1, sizeof *x);
	x->bands = bands;
	int pos = 64;
	for (int b = 0; b < bands; b++) {
		/* the first 64 % bands bands get one bit more */
		int w = 64 / bands + (b < 64 % bands);
		pos -= w;
		x->shift[b] = pos;
		x->width[b] = w;
		x->bk[b] = xcalloc((size_t)1 << w, sizeof(bucket));
	}
	return x;
}

void img_index_free(img_index *x)
{
	if (!x)
		return;
	for (int b = 0; b < x->bands; b++) {
		for (size_t v = 0; v < ((size_t)1 << x->width[b]); v++)
			free(x->bk[b][v].hash);
		free(x->bk[b]);
	}
	for (uint32_t i = 0; i < x->nch; i++)
		free(x->ch[i]);
	free(x->ch);
	free(x);
}

static inline uint32_t band_of(const img_index *x, uint64_t h, int b)
{
	return (uint32_t)((h >> x->shift[b]) & ((1ull << x->width[b]) - 1));
}

uint32_t img_index_add(img_index *x, uint64_t hash, const uint8_t thumb[THUMB_BYTES], uint32_t value)
{
	uint32_t id = x->n++;
	if ((id >> CHUNK_BITS) == x->nch) {
		if (x->nch == x->capch) {
			x->capch = x->capch ? x->capch * 2 : 16;
			x->ch = xrealloc(x->ch, x->capch * sizeof *x->ch);
		}
		x->ch[x->nch++] = xmalloc(sizeof(chunk));
	}
	chunk *c = x->ch[id >> CHUNK_BITS];
	memcpy(c->thumb[id & (CHUNK - 1)], thumb, THUMB_BYTES);
	c->value[id & (CHUNK - 1)] = value;
	for (int b = 0; b < x->bands; b++) {
		bucket *k = &x->bk[b][band_of(x, hash, b)];
		if (k->n == k->cap) {
			uint32_t nc = k->cap ? k->cap + k->cap / 4 + 1 : 1; /* x1.25: little slack */
			k->hash = xrealloc(k->hash, nc * 12);
			/* the ids move up behind the longer hash run */
			memmove(k->hash + nc, k->hash + k->cap, (size_t)k->n * 4);
			x->bucket_bytes += (size_t)(nc - k->cap) * 12;
			k->cap = nc;
		}
		k->hash[k->n] = hash;
		bucket_ids(k)[k->n++] = id;
	}
	return id;
}

int64_t img_index_query(const img_index *x, uint64_t hash, const uint8_t thumb[THUMB_BYTES],
			int max_hamming, double max_thumb, int *dist, double *tdist)
{
	int64_t best = -1;
	int bd = 65;
	double bt = 1e9;
	uint32_t bid = 0;
	for (int b = 0; b < x->bands; b++) {
		const bucket *k = &x->bk[b][band_of(x, hash, b)];
		for (uint32_t i = 0; i < k->n; i++) {
			uint64_t h = k->hash[i];
			int d = hamming64(h, hash);
			if (d > max_hamming || d > bd)
				continue;
			/* visit each candidate once: at the first band it shares */
			int earlier = 0;
			for (int c = 0; c < b && !earlier; c++)
				earlier = band_of(x, h, c) == band_of(x, hash, c);
			if (earlier)
				continue;
			uint32_t id = bucket_ids(k)[i];
			const chunk *c = x->ch[id >> CHUNK_BITS];
			double t = thumb_distance(c->thumb[id & (CHUNK - 1)], thumb);
			if (t > max_thumb)
				continue;
			if (d < bd || t < bt || (t == bt && id < bid)) {
				bd = d;
				bt = t;
				bid = id;
				best = c->value[id & (CHUNK - 1)];
			}
		}
	}
	if (best >= 0) {
		*dist = bd;
		*tdist = bt;
	}
	return best;
}

size_t img_index_bytes(const img_index *x)
{
	size_t b = 0;
	for (int i = 0; i < x->bands; i++)
		b += ((size_t)1 << x->width[i]) * sizeof(bucket);
	return b + x->bucket_bytes + (size_t)x->nch * sizeof(chunk) + x->capch * sizeof(chunk *);
}

uint32_t img_band_value(int bands, uint64_t hash, int b)
{
	/* the layout of img_index_new: widest bands first, from the top bit */
	int pos = 64, w = 0;
	for (int c = 0; c <= b; c++) {
		w = 64 / bands + (c < 64 % bands);
		pos -= w;
	}
	return (uint32_t)((hash >> pos) & ((1ull << w) - 1));
}

uint32_t img_index_size(const img_index *x)
{
	return x->n;
}

/* ---------------------------------------------------------------------- */
/* cap_index */

typedef struct kvslot {
	uint64_t key;
	uint32_t head; /* id + 1; 0 = empty slot */
} kvslot;

typedef struct kvmap {
	kvslot *t;
	size_t cap, n;
} kvmap;

static uint32_t *kv_slot(kvmap *m, uint64_t key)
{
	if ((m->n + 1) * 10 > m->cap * 7) {
		size_t nc = m->cap ? m->cap * 2 : 1024;
		kvslot *nt = xcalloc(nc, sizeof *nt);
		for (size_t i = 0; i < m->cap; i++) {
			if (!m->t[i].head)
				continue;
			size_t j = m->t[i].key & (nc - 1);
			while (nt[j].head)
				j = (j + 1) & (nc - 1);
			nt[j] = m->t[i];
		}
		free(m->t);
		m->t = nt;
		m->cap = nc;
	}
	size_t i = key & (m->cap - 1);
	while (m->t[i].head && m->t[i].key != key)
		i = (i + 1) & (m->cap - 1);
	if (!m->t[i].head) {
		m->t[i].key = key;
		m->n++;
	}
	return &m->t[i].head;
}

static uint32_t kv_get(const kvmap *m, uint64_t key)
{
	if (!m->cap)
		return 0;
	for (size_t i = key & (m->cap - 1); m->t[i].head; i = (i + 1) & (m->cap - 1))
		if (m->t[i].key == key)
			return m->t[i].head;
	return 0;
}

struct cap_index {
	int num_perm, bands, rows;
	kvmap *band;       /* bands maps */
	uint32_t *next;    /* n * bands */
	uint32_t *sig;     /* n * num_perm */
	uint32_t *value;
	uint32_t n, cap;
};

cap_index *cap_index_new(int num_perm, int bands, int rows)
{
	cap_index *x = xcalloc(1, sizeof *x);
	x->num_perm = num_perm;
	x->bands = bands;
	x->rows = rows;
	x->band = xcalloc((size_t)bands, sizeof *x->band);
	return x;
}

void cap_index_free(cap_index *x)
{
	if (!x)
		return;
	for (int b = 0; b < x->bands; b++)
		free(x->band[b].t);
	free(x->band);
	free(x->next);
	free(x->sig);
	free(x->value);
	free(x);
}

uint32_t cap_index_add(cap_index *x, const uint32_t *sig, uint32_t value)
{
	if (x->n == x->cap) {
		x->cap = x->cap ? x->cap * 2 : 1024;
		x->next = xrealloc(x->next, (size_t)x->cap * (size_t)x->bands * sizeof *x->next);
		x->sig = xrealloc(x->sig, (size_t)x->cap * (size_t)x->num_perm * sizeof *x->sig);
		x->value = xrealloc(x->value, (size_t)x->cap * sizeof *x->value);
	}
	uint32_t id = x->n++;
	memcpy(x->sig + (size_t)id * (size_t)x->num_perm, sig, (size_t)x->num_perm * sizeof *sig);
	x->value[id] = value;
	for (int b = 0; b < x->bands; b++) {
		uint32_t *h = kv_slot(&x->band[b], lsh_band_key(sig, b, x->rows));
		x->next[(size_t)id * (size_t)x->bands + (size_t)b] = *h;
		*h = id + 1;
	}
	return id;
}

int64_t cap_index_query(const cap_index *x, const uint32_t *sig, double threshold, double *sim)
{
	int64_t best = -1;
	double bs = -1;
	uint32_t bid = 0;
	for (int b = 0; b < x->bands; b++) {
		uint64_t key = lsh_band_key(sig, b, x->rows);
		for (uint32_t e = kv_get(&x->band[b], key); e;
		     e = x->next[(size_t)(e - 1) * (size_t)x->bands + (size_t)b]) {
			uint32_t id = e - 1;
			const uint32_t *other = x->sig + (size_t)id * (size_t)x->num_perm;
			int earlier = 0;
			for (int c = 0; c < b && !earlier; c++)
				earlier = !memcmp(other + c * x->rows, sig + c * x->rows,
						  (size_t)x->rows * sizeof *sig);
			if (earlier)
				continue;
			double s = minhash_jaccard(other, sig, x->num_perm);
			if (s < threshold)
				continue;
			if (s > bs || (s == bs && id < bid)) {
				bs = s;
				bid = id;
				best = x->value[id];
			}
		}
	}
	if (best >= 0)
		*sim = bs;
	return best;
}

size_t cap_index_bytes(const cap_index *x)
{
	size_t b = 0;
	for (int i = 0; i < x->bands; i++)
		b += x->band[i].cap * sizeof(kvslot);
	return b + (size_t)x->cap * ((size_t)x->bands * 4 + (size_t)x->num_perm * 4 + 4);
}
