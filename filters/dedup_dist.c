/* dedup_dist.c: candidate matches found by key owners, resolved in order. */
#include "dedup_dist.h"

#include <stdlib.h>
#include <string.h>

#include "dedup_index.h"
#include "minhash.h"
#include "util.h"

#include <xxhash.h>

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

/* one pHash band of a sample, to the band value's owner; cls names its
 * class: the samples with the same hash and thumbnail, which match every
 * other sample alike */
typedef struct img_rec {
	uint64_t hash, cls[2];
	uint32_t rank, idx, band, value;
	uint8_t thumb[THUMB_BYTES];
} img_rec;

/* one LSH band of a caption, to its owner; the sketch follows; cls names
 * the class of captions with the same sketch */
typedef struct cap_rec {
	uint64_t key, cls[2];
	uint32_t rank, idx, band, pad;
} cap_rec;

/* owner -> rank 0: sample (rank, idx) belongs to group g of its kind: an
 * exact key held by several samples ({owner << 32 | number, 0}), or a near
 * class with several members or with a neighbour */
typedef struct member_rec {
	uint32_t rank, idx, kind, pad;
	uint64_t g[2];
} member_rec;

/* owner -> rank 0: near classes a and b match (d: Hamming bits; t:
 * thumbnail distance, or the Jaccard of the captions); both ways alike */
typedef struct edge_rec {
	uint64_t a[2], b[2];
	uint32_t kind;
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
				member_rec m = {r[k].rank, r[k].idx, r[k].kind, 0, {g, 0}};
				buf_append(members, &m, sizeof m);
			}
		}
		i = j;
	}
}

/* Near keys, images and captions alike: a bucket holds the samples
 * sharing one band; samples of one class (same hash and thumbnail, or same
 * sketch) match everything alike, so pairs are verified class by class:
 * the work and the report grow with the distinct entries of a bucket, not
 * with its copies (a caption repeated 1000 times is one class). */
typedef struct near_ref {
	const uint64_t *cls;  /* [2] */
	uint32_t rank, idx, band;
	uint64_t bucket;      /* band value or LSH key */
	const void *rec;
} near_ref;

static int cmp_near(const void *a, const void *b)
{
	const near_ref *x = a, *y = b;
	if (x->band != y->band)
		return x->band < y->band ? -1 : 1;
	if (x->bucket != y->bucket)
		return x->bucket < y->bucket ? -1 : 1;
	if (x->cls[0] != y->cls[0])
		return x->cls[0] < y->cls[0] ? -1 : 1;
	if (x->cls[1] != y->cls[1])
		return x->cls[1] < y->cls[1] ? -1 : 1;
	if (x->rank != y->rank)
		return x->rank < y->rank ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* verify: 1 when p and q match and this band is the first they share (so
 * each pair is reported once); *d and *t as edge_rec */
typedef int (*near_verify)(const dedup_dist *x, const void *p, const void *q, uint32_t band, int *d,
			   double *t);

static int same_cls(const near_ref *a, const near_ref *b)
{
	return a->cls[0] == b->cls[0] && a->cls[1] == b->cls[1];
}

static void member_of(buf *members, const near_ref *r, uint32_t kind)
{
	member_rec m = {r->rank, r->idx, kind, 0, {r->cls[0], r->cls[1]}};
	buf_append(members, &m, sizeof m);
}

static void near_pairs(const dedup_dist *x, near_ref *r, size_t n, uint32_t kind, near_verify verify,
		       buf *members, buf *edges)
{
	qsort(r, n, sizeof *r, cmp_near);
	size_t *cs = xmalloc((n + 1) * sizeof *cs); /* class starts in a bucket */
	for (size_t i = 0; i < n;) {
		size_t j = i + 1, m = 0;
		while (j < n && r[j].band == r[i].band && r[j].bucket == r[i].bucket)
			j++;
		for (size_t k = i; k < j; k++)
			if (k == i || !same_cls(&r[k], &r[k - 1]))
				cs[m++] = k;
		cs[m] = j;
		/* every member sits in band 0's bucket: the members of a class
		 * with copies are reported there, once */
		for (size_t c = 0; r[i].band == 0 && c < m; c++)
			if (cs[c + 1] - cs[c] > 1)
				for (size_t k = cs[c]; k < cs[c + 1]; k++)
					member_of(members, &r[k], kind);
		for (size_t q = 1; q < m; q++)
			for (size_t p = 0; p < q; p++) {
				const near_ref *a = &r[cs[p]], *b = &r[cs[q]];
				int d = 0;
				double t = 0;
				if (!verify(x, a->rec, b->rec, a->band, &d, &t))
					continue;
				edge_rec e = {{a->cls[0], a->cls[1]}, {b->cls[0], b->cls[1]}, kind, d, t};
				buf_append(edges, &e, sizeof e);
				/* a class of one is reported where it has a neighbour */
				if (cs[p + 1] - cs[p] == 1)
					member_of(members, a, kind);
				if (cs[q + 1] - cs[q] == 1)
					member_of(members, b, kind);
			}
		i = j;
	}
	free(cs);
}

static int verify_image(const dedup_dist *x, const void *p, const void *q, uint32_t band, int *d, double *t)
{
	const img_rec *a = p, *b = q;
	*d = hamming64(a->hash, b->hash);
	if (*d > x->c.max_hamming)
		return 0;
	for (uint32_t c = 0; c < band; c++)
		if (img_band_value(x->c.img_bands, a->hash, (int)c) == img_band_value(x->c.img_bands, b->hash, (int)c))
			return 0;
	*t = thumb_distance(a->thumb, b->thumb); /* symmetric */
	return *t <= x->c.max_thumb;
}

static int verify_caption(const dedup_dist *x, const void *p, const void *q, uint32_t band, int *d, double *t)
{
	const cap_rec *a = p, *b = q;
	const uint32_t *sa = (const uint32_t *)(a + 1), *sb = (const uint32_t *)(b + 1);
	size_t rows = (size_t)x->c.lsh_rows;
	for (uint32_t c = 0; c < band; c++)
		if (!memcmp(sa + c * rows, sb + c * rows, rows * sizeof *sa))
			return 0;
	*t = minhash_jaccard(sa, sb, x->c.num_perm);
	return *t >= x->c.jaccard;
}

static void image_pairs(const dedup_dist *x, const img_rec *r, size_t n, buf *members, buf *edges)
{
	near_ref *ref = xmalloc((n ? n : 1) * sizeof *ref);
	for (size_t i = 0; i < n; i++)
		ref[i] = (near_ref){r[i].cls, r[i].rank, r[i].idx, r[i].band, r[i].value, &r[i]};
	near_pairs(x, ref, n, DD_NEAR_IMAGE, verify_image, members, edges);
	free(ref);
}

static void caption_pairs(const dedup_dist *x, const uint8_t *data, size_t len, buf *members, buf *edges)
{
	size_t rs = sizeof(cap_rec) + (size_t)x->c.num_perm * sizeof(uint32_t), n = len / rs;
	near_ref *ref = xmalloc((n ? n : 1) * sizeof *ref);
	for (size_t i = 0; i < n; i++) {
		const cap_rec *r = (const cap_rec *)(data + i * rs);
		ref[i] = (near_ref){r->cls, r->rank, r->idx, r->band, r->key, r};
	}
	near_pairs(x, ref, n, DD_NEAR_CAPTION, verify_caption, members, edges);
	free(ref);
}

/* ---------------------------------------------------------------------- */
/* step 2: rank 0 resolves in the global order */

static const uint64_t *sort_off; /* qsort has no context argument */

static uint64_t gid_of(const member_rec *m)
{
	return sort_off[m->rank] + m->idx;
}

static int cmp_member(const void *a, const void *b)
{
	const member_rec *x = a, *y = b;
	uint64_t gx = gid_of(x), gy = gid_of(y);
	if (gx != gy)
		return gx < gy ? -1 : 1;
	return x->kind < y->kind ? -1 : x->kind > y->kind;
}

/* one direction of a class edge: from class `from` to its neighbour */
typedef struct adj {
	uint64_t from[2], to[2];
	uint32_t kind;
	int32_t d;
	double t;
} adj;

static int cmp_adj(const void *a, const void *b)
{
	const adj *x = a, *y = b;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->from[0] != y->from[0])
		return x->from[0] < y->from[0] ? -1 : 1;
	return x->from[1] < y->from[1] ? -1 : x->from[1] > y->from[1];
}

/* the neighbours of class g of kind: *n of them from the returned one */
static const adj *neighbours(const adj *v, size_t nv, uint32_t kind, const uint64_t g[2], size_t *n)
{
	adj key = {{g[0], g[1]}, {0, 0}, kind, 0, 0};
	size_t lo = 0, hi = nv;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (cmp_adj(&v[mid], &key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	size_t e = lo;
	while (e < nv && !cmp_adj(&v[e], &key))
		e++;
	*n = e - lo;
	return v + lo;
}

/* The verdicts for every rank, as verdict_rec blocks in rank order:
 * the single-process lookup, with "the kept samples" being the first kept
 * member of each group or class so far. */
static void resolve(const dist *d, const uint64_t *off, member_rec *m, size_t nm, const edge_rec *e,
		    size_t ne, buf *out, size_t *counts)
{
	sort_off = off;
	qsort(m, nm, sizeof *m, cmp_member);
	size_t u = 0; /* a sample is reported once per kind (near: maybe more) */
	for (size_t i = 0; i < nm; i++)
		if (!u || cmp_member(&m[u - 1], &m[i]))
			m[u++] = m[i];
	nm = u;
	adj *v = xmalloc((2 * ne + 1) * sizeof *v);
	for (size_t i = 0; i < ne; i++) {
		v[2 * i] = (adj){{e[i].a[0], e[i].a[1]}, {e[i].b[0], e[i].b[1]}, e[i].kind, e[i].d, e[i].t};
		v[2 * i + 1] = (adj){{e[i].b[0], e[i].b[1]}, {e[i].a[0], e[i].a[1]}, e[i].kind, e[i].d, e[i].t};
	}
	qsort(v, 2 * ne, sizeof *v, cmp_adj);

	hset128 *claimed[DD_KINDS]; /* group or class -> its first kept sample */
	for (int k = 0; k < DD_KINDS; k++)
		claimed[k] = hset128_new();
	uint64_t *kno = xmalloc((nm + 1) * sizeof *kno); /* by sample slot */
	buf *per = xcalloc((size_t)d->size, sizeof *per);
	uint64_t ndrop = 0;
	uint32_t slot = 0;
	for (size_t i = 0; i < nm; slot++) {
		uint64_t g = gid_of(&m[i]);
		size_t m0 = i;
		while (i < nm && gid_of(&m[i]) == g)
			i++;
		kno[slot] = g - ndrop; /* every drop before g is a sample here */
		int kind = -1;
		uint64_t with = 0;
		double dist = 0;
		for (size_t k = m0; k < i && kind < 0; k++) {
			uint32_t mk = m[k].kind;
			int64_t c = hset128_find(claimed[mk], m[k].g[0], m[k].g[1]);
			if (mk < DD_NEAR_IMAGE) { /* exact kinds, in order */
				if (c >= 0) {
					kind = (int)mk;
					with = kno[c];
				}
				continue;
			}
			/* the same class first (distance 0, similarity 1), then its
			 * neighbours; best by the index's own order */
			size_t nn;
			const adj *nb = neighbours(v, 2 * ne, mk, m[k].g, &nn);
			int bd = 0;
			double bt = 0;
			for (size_t a = 0; a <= nn; a++) {
				int64_t cc = a == 0 ? c : hset128_find(claimed[mk], nb[a - 1].to[0], nb[a - 1].to[1]);
				if (cc < 0)
					continue;
				int dd = a == 0 ? 0 : nb[a - 1].d;
				double tt = a == 0 ? (mk == DD_NEAR_IMAGE ? 0 : 1) : nb[a - 1].t;
				uint64_t kn = kno[cc];
				int better;
				if (kind < 0)
					better = 1;
				else if (mk == DD_NEAR_IMAGE) /* Hamming, thumbnail, earliest */
					better = dd < bd || (dd == bd && (tt < bt || (tt == bt && kn < with)));
				else /* most similar, earliest */
					better = tt > bt || (tt == bt && kn < with);
				if (better) {
					kind = (int)mk;
					bd = dd;
					bt = tt;
					with = kn;
					dist = mk == DD_NEAR_IMAGE ? dd : 1 - tt;
				}
			}
		}
		if (kind >= 0) {
			int r = d->size - 1;
			while (off[r] > g)
				r--;
			verdict_rec vr = {(uint32_t)(g - off[r]), (uint32_t)kind, with, dist};
			buf_append(&per[r], &vr, sizeof vr);
			ndrop++;
			continue;
		}
		for (size_t k = m0; k < i; k++) /* first kept member claims it */
			hset128_put(claimed[m[k].kind], m[k].g[0], m[k].g[1], slot);
	}
	for (int r = 0; r < d->size; r++) {
		counts[r] = per[r].len;
		if (per[r].len)
			buf_append(out, per[r].data, per[r].len);
		buf_free(&per[r]);
	}
	free(per);
	for (int k = 0; k < DD_KINDS; k++)
		hset128_free(claimed[k]);
	free(kno);
	free(v);
	sort_off = NULL;
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
				img_rec r = {it->hash, {0, 0}, (uint32_t)d->rank, i, (uint32_t)b,
					     img_band_value(x->c.img_bands, it->hash, b), {0}};
				memcpy(r.thumb, it->thumb, THUMB_BYTES);
				uint8_t id[8 + THUMB_BYTES]; /* the class: hash and thumbnail */
				memcpy(id, &it->hash, 8);
				memcpy(id + 8, it->thumb, THUMB_BYTES);
				XXH128_hash_t h = XXH3_128bits(id, sizeof id);
				r.cls[0] = h.low64;
				r.cls[1] = h.high64;
				uint64_t owner = mix64((uint64_t)b << 32 | r.value) % (uint64_t)nr;
				buf_append(&im.to[owner], &r, sizeof r);
			}
		if (it->has & (1u << DD_NEAR_CAPTION)) {
			const uint32_t *sk = x->sketch + (size_t)i * np;
			XXH128_hash_t h = XXH3_128bits(sk, np * sizeof *sk);
			for (int b = 0; b < x->c.lsh_bands; b++) {
				cap_rec r = {lsh_band_key(sk, b, x->c.lsh_rows), {h.low64, h.high64}, (uint32_t)d->rank, i,
					     (uint32_t)b, 0};
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
	image_pairs(x, rim, nim / sizeof(img_rec), &members, &edges);
	caption_pairs(x, rcp, ncp - ncp % crs, &members, &edges);
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
