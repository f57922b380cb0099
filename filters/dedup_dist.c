/* dedup_dist.c: candidate matches found by key owners, resolved in order. */
#include "dedup_dist.h"

#include <stdlib.h>
#include <string.h>

#include "dedup_index.h"
#include "minhash.h"
#include "util.h"

struct dedup_dist {
	dd_conf c;
	uint32_t n, cap;
	dd_item *item;
	uint32_t *sketch; /* n * num_perm, only with near captions */
	/* verdicts, after decide */
	int8_t *kind;
	uint64_t *kept;
	double *dist;
};

/* ---- what travels ---- */

/* an exact key, to its owner */
typedef struct ex_rec {
	uint64_t lo, hi;
	uint32_t rank, idx, kind, pad;
} ex_rec;

/* one pHash band of a sample, to the band value's owner */
typedef struct img_rec {
	uint64_t hash;
	uint32_t rank, idx, band, value;
	uint8_t thumb[THUMB_BYTES];
} img_rec;

/* one LSH band of a caption, to its owner; the sketch follows */
typedef struct cap_rec {
	uint64_t key;
	uint32_t rank, idx, band, pad;
} cap_rec;

/* owner -> rank 0: sample (rank, idx) holds an exact key shared with
 * others, the group naming that key (owner << 32 | number) */
typedef struct member_rec {
	uint32_t rank, idx, kind, pad;
	uint64_t group;
} member_rec;

/* owner -> rank 0: sample i matches the earlier sample j (d: Hamming
 * bits; t: thumbnail distance, or the Jaccard of captions) */
typedef struct edge_rec {
	uint32_t irank, iidx, jrank, jidx, kind;
	int32_t d;
	double t;
} edge_rec;

/* rank 0 -> a rank: its sample idx is dropped */
typedef struct verdict_rec {
	uint32_t idx, kind;
	uint64_t kept;
	double dist;
} verdict_rec;

dedup_dist *dedup_dist_new(const dd_conf *c)
{
	dedup_dist *x = xcalloc(1, sizeof *x);
	x->c = *c;
	return x;
}

void dedup_dist_free(dedup_dist *x)
{
	if (!x)
		return;
	free(x->item);
	free(x->sketch);
	free(x->kind);
	free(x->kept);
	free(x->dist);
	free(x);
}

uint32_t dedup_dist_add(dedup_dist *x, const dd_item *it, const uint32_t *sketch)
{
	size_t np = (size_t)x->c.num_perm;
	if (x->n == x->cap) {
		x->cap = x->cap ? x->cap * 2 : 1024;
		x->item = xrealloc(x->item, x->cap * sizeof *x->item);
		x->sketch = xrealloc(x->sketch, (size_t)x->cap * np * sizeof *x->sketch);
	}
	uint32_t i = x->n++;
	x->item[i] = *it;
	if ((it->has & (1u << DD_NEAR_CAPTION)) && sketch)
		memcpy(x->sketch + (size_t)i * np, sketch, np * sizeof *sketch);
	else
		x->item[i].has &= ~(1u << DD_NEAR_CAPTION);
	return i;
}

static uint64_t mix64(uint64_t z)
{
	/* splitmix64's finalizer: band values are small integers, and owners
	 * must get an even share of them */
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ---------------------------------------------------------------------- */
/* step 1a: route every key to its owner */

/* per-destination byte buffers -> one send buffer with counts */
typedef struct outbox {
	buf *to;
	int n;
} outbox;

static void outbox_init(outbox *o, int n)
{
	o->to = xcalloc((size_t)n, sizeof *o->to);
	o->n = n;
}

static int outbox_send(outbox *o, const dist *d, void **recv, size_t *rlen, mvl_err *err)
{
	size_t *counts = xmalloc((size_t)o->n * sizeof *counts), *rc = xmalloc((size_t)o->n * sizeof *rc);
	buf all = {0};
	for (int q = 0; q < o->n; q++) {
		counts[q] = o->to[q].len;
		if (o->to[q].len)
			buf_append(&all, o->to[q].data, o->to[q].len);
		buf_free(&o->to[q]);
	}
	free(o->to);
	int rcode = dist_alltoallv(d, all.data, counts, recv, rc, err);
	*rlen = 0;
	for (int q = 0; rcode == 0 && q < o->n; q++)
		*rlen += rc[q];
	buf_free(&all);
	free(counts);
	free(rc);
	return rcode;
}

/* ---------------------------------------------------------------------- */
/* step 1b: an owner's groups and verified pairs */

static int cmp_ex(const void *a, const void *b)
{
	const ex_rec *x = a, *y = b;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int cmp_img(const void *a, const void *b)
{
	const img_rec *x = a, *y = b;
	if (x->band != y->band)
		return x->band < y->band ? -1 : 1;
	if (x->value != y->value)
		return x->value < y->value ? -1 : 1;
	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* caption records are variable-length; sorted through an index */
typedef struct cap_ref {
	const cap_rec *r;
} cap_ref;

static int cmp_cap(const void *a, const void *b)
{
	const cap_rec *x = ((const cap_ref *)a)->r, *y = ((const cap_ref *)b)->r;
	if (x->band != y->band)
		return x->band < y->band ? -1 : 1;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void exact_groups(const dist *d, ex_rec *r, size_t n, buf *members)
{
	qsort(r, n, sizeof *r, cmp_ex);
	uint32_t groups = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && r[j].kind == r[i].kind && r[j].lo == r[i].lo && r[j].hi == r[i].hi)
			j++;
		if (j - i > 1) { /* a key nobody else holds decides nothing */
			uint64_t g = (uint64_t)d->rank << 32 | groups++;
			for (size_t k = i; k < j; k++) {
				member_rec m = {r[k].rank, r[k].idx, r[k].kind, 0, g};
				buf_append(members, &m, sizeof m);
			}
		}
		i = j;
	}
}

static void image_pairs(const dedup_dist *x, img_rec *r, size_t n, buf *edges)
{
	qsort(r, n, sizeof *r, cmp_img);
	int bands = x->c.img_bands;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && r[j].band == r[i].band && r[j].value == r[i].value)
			j++;
		for (size_t q = i + 1; q < j; q++)
			for (size_t p = i; p < q; p++) {
				int dh = hamming64(r[p].hash, r[q].hash);
				if (dh > x->c.max_hamming)
					continue;
				/* each pair once: at the first band the two share */
				int earlier = 0;
				for (uint32_t c = 0; c < r[i].band && !earlier; c++)
					earlier = img_band_value(bands, r[p].hash, (int)c) ==
						  img_band_value(bands, r[q].hash, (int)c);
				if (earlier)
					continue;
				/* argument order as img_index_query: indexed, query */
				double t = thumb_distance(r[p].thumb, r[q].thumb);
				if (t > x->c.max_thumb)
					continue;
				edge_rec e = {r[q].rank, r[q].idx, r[p].rank, r[p].idx, DD_NEAR_IMAGE, dh, t};
				buf_append(edges, &e, sizeof e);
			}
		i = j;
	}
}

static void caption_pairs(const dedup_dist *x, const uint8_t *data, size_t len, buf *edges)
{
	size_t np = (size_t)x->c.num_perm, rows = (size_t)x->c.lsh_rows;
	size_t rs = sizeof(cap_rec) + np * sizeof(uint32_t);
	size_t n = len / rs;
	cap_ref *ref = xmalloc((n ? n : 1) * sizeof *ref);
	for (size_t i = 0; i < n; i++)
		ref[i].r = (const cap_rec *)(data + i * rs);
	qsort(ref, n, sizeof *ref, cmp_cap);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && ref[j].r->band == ref[i].r->band && ref[j].r->key == ref[i].r->key)
			j++;
		for (size_t q = i + 1; q < j; q++)
			for (size_t p = i; p < q; p++) {
				const cap_rec *a = ref[p].r, *b = ref[q].r;
				const uint32_t *sa = (const uint32_t *)(a + 1), *sb = (const uint32_t *)(b + 1);
				int earlier = 0;
				for (uint32_t c = 0; c < a->band && !earlier; c++)
					earlier = !memcmp(sa + c * rows, sb + c * rows, rows * sizeof *sa);
				if (earlier)
					continue;
				double s = minhash_jaccard(sa, sb, x->c.num_perm);
				if (s < x->c.jaccard)
					continue;
				edge_rec e = {b->rank, b->idx, a->rank, a->idx, DD_NEAR_CAPTION, 0, s};
				buf_append(edges, &e, sizeof e);
			}
		i = j;
	}
	free(ref);
}

/* ---------------------------------------------------------------------- */
/* step 2: rank 0 resolves in the global order */

typedef struct resolver {
	const uint64_t *off; /* first global number of each rank */
	uint64_t *ids;       /* the samples with a match, sorted */
	size_t nids;
} resolver;

static uint64_t gid(const resolver *z, uint32_t rank, uint32_t idx)
{
	return z->off[rank] + idx;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static size_t slot(const resolver *z, uint64_t g)
{
	size_t lo = 0, hi = z->nids;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (z->ids[mid] < g)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static const resolver *sort_ctx; /* qsort has no context argument */

static int cmp_member(const void *a, const void *b)
{
	const member_rec *x = a, *y = b;
	uint64_t gx = gid(sort_ctx, x->rank, x->idx), gy = gid(sort_ctx, y->rank, y->idx);
	if (gx != gy)
		return gx < gy ? -1 : 1;
	return x->kind < y->kind ? -1 : x->kind > y->kind;
}

static int cmp_edge(const void *a, const void *b)
{
	const edge_rec *x = a, *y = b;
	uint64_t gx = gid(sort_ctx, x->irank, x->iidx), gy = gid(sort_ctx, y->irank, y->iidx);
	return gx < gy ? -1 : gx > gy;
}

/* The verdicts for every rank, as verdict_rec blocks in rank order. */
static void resolve(const dist *d, const uint64_t *off, member_rec *m, size_t nm, edge_rec *e,
		    size_t ne, buf *out, size_t *counts)
{
	resolver z = {off, NULL, 0};
	z.ids = xmalloc((nm + 2 * ne + 1) * sizeof *z.ids);
	for (size_t i = 0; i < nm; i++)
		z.ids[z.nids++] = gid(&z, m[i].rank, m[i].idx);
	for (size_t i = 0; i < ne; i++) {
		z.ids[z.nids++] = gid(&z, e[i].irank, e[i].iidx);
		z.ids[z.nids++] = gid(&z, e[i].jrank, e[i].jidx);
	}
	qsort(z.ids, z.nids, sizeof *z.ids, cmp_u64);
	size_t u = 0;
	for (size_t i = 0; i < z.nids; i++)
		if (!u || z.ids[u - 1] != z.ids[i])
			z.ids[u++] = z.ids[i];
	z.nids = u;
	sort_ctx = &z;
	qsort(m, nm, sizeof *m, cmp_member);
	qsort(e, ne, sizeof *e, cmp_edge);
	sort_ctx = NULL;

	uint8_t *kept = xcalloc(z.nids ? z.nids : 1, 1);
	uint64_t *kno = xmalloc((z.nids ? z.nids : 1) * sizeof *kno);
	hset128 *claimed = hset128_new(); /* exact group -> slot of its kept sample */
	buf *per = xcalloc((size_t)d->size, sizeof *per);
	uint64_t ndrop = 0;
	size_t mi = 0, ei = 0;
	for (size_t s = 0; s < z.nids; s++) {
		uint64_t g = z.ids[s];
		size_t m0 = mi, e0 = ei;
		while (mi < nm && gid(&z, m[mi].rank, m[mi].idx) == g)
			mi++;
		while (ei < ne && gid(&z, e[ei].irank, e[ei].iidx) == g)
			ei++;
		kno[s] = g - ndrop; /* every drop before g is a sample with a match */
		int kind = -1;
		uint64_t with = 0;
		double dist = 0;
		for (size_t k = m0; k < mi && kind < 0; k++) { /* sorted by kind */
			int64_t v = hset128_find(claimed, m[k].group, 0);
			if (v >= 0) {
				kind = (int)m[k].kind;
				with = kno[v];
			}
		}
		if (kind < 0) { /* the nearest kept image: Hamming, thumbnail, earliest */
			int bd = 65;
			double bt = 0;
			for (size_t k = e0; k < ei; k++) {
				if (e[k].kind != DD_NEAR_IMAGE)
					continue;
				size_t j = slot(&z, gid(&z, e[k].jrank, e[k].jidx));
				if (!kept[j])
					continue;
				if (kind < 0 || e[k].d < bd || (e[k].d == bd && e[k].t < bt) ||
				    (e[k].d == bd && e[k].t == bt && kno[j] < with)) {
					kind = DD_NEAR_IMAGE;
					bd = e[k].d;
					bt = e[k].t;
					with = kno[j];
					dist = bd;
				}
			}
		}
		if (kind < 0) { /* the most similar kept caption, earliest */
			double bs = -1;
			for (size_t k = e0; k < ei; k++) {
				if (e[k].kind != DD_NEAR_CAPTION)
					continue;
				size_t j = slot(&z, gid(&z, e[k].jrank, e[k].jidx));
				if (!kept[j])
					continue;
				if (e[k].t > bs || (e[k].t == bs && kno[j] < with)) {
					kind = DD_NEAR_CAPTION;
					bs = e[k].t;
					with = kno[j];
					dist = 1 - bs;
				}
			}
		}
		if (kind >= 0) {
			int r = d->size - 1;
			while (off[r] > g)
				r--;
			verdict_rec v = {(uint32_t)(g - off[r]), (uint32_t)kind, with, dist};
			buf_append(&per[r], &v, sizeof v);
			ndrop++;
			continue;
		}
		kept[s] = 1;
		for (size_t k = m0; k < mi; k++) /* first kept holder claims its key */
			hset128_put(claimed, m[k].group, 0, (uint32_t)s);
	}
	for (int r = 0; r < d->size; r++) {
		counts[r] = per[r].len;
		if (per[r].len)
			buf_append(out, per[r].data, per[r].len);
		buf_free(&per[r]);
	}
	free(per);
	hset128_free(claimed);
	free(kept);
	free(kno);
	free(z.ids);
}

/* ---------------------------------------------------------------------- */

int dedup_dist_decide(dedup_dist *x, const dist *d, mvl_err *err)
{
	int nr = d->size, rc = -1;
	size_t np = (size_t)x->c.num_perm;
	size_t crs = sizeof(cap_rec) + np * sizeof(uint32_t);
	outbox ex, im, cp;
	outbox_init(&ex, nr);
	outbox_init(&im, nr);
	outbox_init(&cp, nr);
	for (uint32_t i = 0; i < x->n; i++) {
		const dd_item *it = &x->item[i];
		for (uint32_t k = 0; k < 4; k++) {
			if (!(it->has & (1u << k)))
				continue;
			ex_rec r = {it->exact[k][0], it->exact[k][1], (uint32_t)d->rank, i, k, 0};
			buf_append(&ex.to[mix64(r.lo ^ k) % (uint64_t)nr], &r, sizeof r);
		}
		if (it->has & (1u << DD_NEAR_IMAGE))
			for (int b = 0; b < x->c.img_bands; b++) {
				img_rec r = {it->hash, (uint32_t)d->rank, i, (uint32_t)b,
					     img_band_value(x->c.img_bands, it->hash, b), {0}};
				memcpy(r.thumb, it->thumb, THUMB_BYTES);
				uint64_t owner = mix64((uint64_t)b << 32 | r.value) % (uint64_t)nr;
				buf_append(&im.to[owner], &r, sizeof r);
			}
		if (it->has & (1u << DD_NEAR_CAPTION)) {
			const uint32_t *sk = x->sketch + (size_t)i * np;
			for (int b = 0; b < x->c.lsh_bands; b++) {
				cap_rec r = {lsh_band_key(sk, b, x->c.lsh_rows), (uint32_t)d->rank, i, (uint32_t)b, 0};
				uint64_t owner = mix64(r.key ^ (uint64_t)b) % (uint64_t)nr;
				buf_append(&cp.to[owner], &r, sizeof r);
				buf_append(&cp.to[owner], sk, np * sizeof *sk);
			}
		}
	}
	void *rex = NULL, *rim = NULL, *rcp = NULL, *rm = NULL, *re = NULL, *mine = NULL;
	size_t nex = 0, nim = 0, ncp = 0, nmine = 0;
	size_t *cm = xcalloc((size_t)nr, sizeof *cm), *ce = xcalloc((size_t)nr, sizeof *ce);
	uint64_t *off = xcalloc((size_t)nr + 1, sizeof *off);
	buf members = {0}, edges = {0}, verdicts = {0};
	if (outbox_send(&ex, d, &rex, &nex, err) != 0 || outbox_send(&im, d, &rim, &nim, err) != 0 ||
	    outbox_send(&cp, d, &rcp, &ncp, err) != 0)
		goto out;
	exact_groups(d, rex, nex / sizeof(ex_rec), &members);
	image_pairs(x, rim, nim / sizeof(img_rec), &edges);
	caption_pairs(x, rcp, ncp - ncp % crs, &edges);
	if (dist_gatherv(d, members.data, members.len, &rm, cm, err) != 0 ||
	    dist_gatherv(d, edges.data, edges.len, &re, ce, err) != 0)
		goto out;
	dist_allgather_u64(d, x->n, off);
	uint64_t first = 0;
	for (int r = 0; r < nr; r++) { /* counts -> first numbers */
		uint64_t c = off[r];
		off[r] = first;
		first += c;
	}
	size_t *cv = xcalloc((size_t)nr, sizeof *cv);
	if (d->rank == 0) {
		size_t tm = 0, te = 0;
		for (int r = 0; r < nr; r++) {
			tm += cm[r];
			te += ce[r];
		}
		resolve(d, off, rm, tm / sizeof(member_rec), re, te / sizeof(edge_rec), &verdicts, cv);
	}
	int sc = dist_scatterv(d, verdicts.data, cv, &mine, &nmine, err);
	free(cv);
	if (sc != 0)
		goto out;
	x->kind = xmalloc((x->n ? x->n : 1) * sizeof *x->kind);
	x->kept = xcalloc(x->n ? x->n : 1, sizeof *x->kept);
	x->dist = xcalloc(x->n ? x->n : 1, sizeof *x->dist);
	memset(x->kind, -1, x->n);
	const verdict_rec *v = mine;
	for (size_t i = 0; i < nmine / sizeof *v; i++) {
		if (v[i].idx >= x->n) {
			mvl_errf(err, "dedup exchange: verdict for sample %u of %u", v[i].idx, x->n);
			goto out;
		}
		x->kind[v[i].idx] = (int8_t)v[i].kind;
		x->kept[v[i].idx] = v[i].kept;
		x->dist[v[i].idx] = v[i].dist;
	}
	rc = 0;
out:
	free(rex);
	free(rim);
	free(rcp);
	free(rm);
	free(re);
	free(mine);
	free(cm);
	free(ce);
	free(off);
	buf_free(&members);
	buf_free(&edges);
	buf_free(&verdicts);
	/* a rank that failed must not leave the others waiting in a later
	 * collective: they all learn of it here */
	if (dist_max_int(d, rc != 0) && rc == 0)
		rc = mvl_errf(err, "dedup exchange failed on another rank");
	return rc;
}

int dedup_dist_verdict(const dedup_dist *x, uint32_t i, uint64_t *kept, double *dist)
{
	if (!x->kind || i >= x->n || x->kind[i] < 0)
		return -1;
	*kept = x->kept[i];
	*dist = x->dist[i];
	return x->kind[i];
}
