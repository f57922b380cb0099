/* bpe_train.c: byte-level BPE training with tiktoken semantics (see
 * bpe_train.h for the algorithm and why a merge never duplicates bytes). */
#include "bpe_train.h"
#include "bpe.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

enum { NONE = UINT32_MAX };

/* ---------------------------------------------------------------------- */
/* state */

typedef struct pslot { /* piece -> count */
	uint64_t h, off, count;
	uint32_t len; /* 0: empty slot */
	uint32_t word;
} pslot;

typedef struct tslot { /* token bytes -> rank */
	uint64_t h;
	uint32_t id; /* NONE: empty */
} tslot;

typedef struct pair {
	uint32_t a, b;
	int64_t count;
	uint32_t *words; /* pieces that hold (or held) the pair; may repeat */
	uint32_t nw, cw;
	uint32_t inc_step; /* last step its count went up */
} pair;

typedef struct hent {
	int64_t count;
	uint32_t pair;
} hent;

struct bpe_trainer {
	pcre2_code *re;
	pcre2_match_data *md;
	/* counting */
	buf arena; /* piece bytes */
	pslot *ps;
	size_t pcap, pn;
	int trained;
	/* words (distinct pieces), after train */
	uint32_t nw;
	uint64_t *w_off, *w_parts, *w_freq;
	uint32_t *w_len, *w_n, *w_stamp;
	uint32_t *parts; /* token ids, per word, shrinking in place */
	/* tokens */
	buf tpool;
	uint32_t *toff, *tlen, *ma, *mb;
	uint64_t *mcount;
	uint32_t ntok, tokcap;
	tslot *tt;
	size_t ttcap;
	/* pairs */
	pair *pairs;
	uint32_t npairs, cpairs;
	uint64_t *pk; /* key a<<32|b, 0 = empty (no pair (0,0)? see key()) */
	uint32_t *pv;
	size_t pkcap, pkn;
	hent *heap;
	size_t hn, hcap;
	/* scratch for one word */
	uint32_t *st, *nx, *pvv, *pr;
	uint64_t *oldk, *newk, *mh;
	size_t scap;
	uint32_t *incs;
	size_t ninc, cinc;
};

/* ---------------------------------------------------------------------- */
bpe_trainer *bpe_trainer_new(const char *pattern, mvl_err *err)
{
	pcre2_code *re = bpe_compile_pattern(pattern, err);
	if (!re)
		return NULL;
	bpe_trainer *t = xcalloc(1, sizeof *t);
	t->re = re;
	t->md = pcre2_match_data_create_from_pattern(re, NULL);
	t->pcap = 1u << 16;
	t->ps = xcalloc(t->pcap, sizeof *t->ps);
	return t;
}

void bpe_trainer_free(bpe_trainer *t)
{
	if (!t)
		return;
	pcre2_match_data_free(t->md);
	pcre2_code_free(t->re);
	buf_free(&t->arena);
	free(t->ps);
	free(t->w_off);
	free(t->w_parts);
	free(t->w_freq);
	free(t->w_len);
	free(t->w_n);
	free(t->w_stamp);
	free(t->parts);
	buf_free(&t->tpool);
	free(t->toff);
	free(t->tlen);
	free(t->ma);
	free(t->mb);
	free(t->mcount);
	free(t->tt);
	for (uint32_t i = 0; i < t->npairs; i++)
		free(t->pairs[i].words);
	free(t->pairs);
	free(t->pk);
	free(t->pv);
	free(t->heap);
	free(t->st);
	free(t->nx);
	free(t->pvv);
	free(t->pr);
	free(t->oldk);
	free(t->newk);
	free(t->mh);
	free(t->incs);
	free(t);
}

/* ---------------------------------------------------------------------- */
/* counting pieces */

static pslot *piece_find(const bpe_trainer *t, const uint8_t *p, size_t n, uint64_t h)
{
	for (size_t i = h & (t->pcap - 1);; i = (i + 1) & (t->pcap - 1)) {
		pslot *s = &t->ps[i];
		if (!s->len || (s->h == h && s->len == n && !memcmp(t->arena.data + s->off, p, n)))
			return s;
	}
}

void bpe_trainer_add_piece(bpe_trainer *t, const void *piece, size_t n, uint64_t count)
{
	if (!n || t->trained || n > UINT32_MAX - 1)
		return;
	uint64_t h = XXH3_64bits(piece, n);
	pslot *s = piece_find(t, piece, n, h);
	if (s->len) {
		s->count += count;
		return;
	}
	if ((t->pn + 1) * 2 > t->pcap) {
		pslot *old = t->ps;
		size_t oc = t->pcap;
		t->pcap *= 2;
		t->ps = xcalloc(t->pcap, sizeof *t->ps);
		for (size_t i = 0; i < oc; i++)
			if (old[i].len) {
				size_t k = old[i].h & (t->pcap - 1);
				while (t->ps[k].len)
					k = (k + 1) & (t->pcap - 1);
				t->ps[k] = old[i];
			}
		free(old);
		s = piece_find(t, piece, n, h);
	}
	*s = (pslot){.h = h, .off = t->arena.len, .count = count, .len = (uint32_t)n};
	buf_append(&t->arena, piece, n);
	t->pn++;
}

/* Calls fn for each piece of text, split as bpe_encode_ordinary() splits. */
typedef void (*piece_fn)(bpe_trainer *t, const uint8_t *p, size_t n, void *arg);

static void split(bpe_trainer *t, const char *text, size_t n, piece_fn fn, void *arg)
{
	const uint8_t *u = (const uint8_t *)text;
	size_t pos = 0;
	while (pos < n) {
		int rc = pcre2_match(t->re, (PCRE2_SPTR)text, n, pos, 0, t->md, NULL);
		size_t s = n, e = n;
		if (rc >= 0) {
			PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
			s = ov[0];
			e = ov[1];
		}
		if (s > pos)
			fn(t, u + pos, s - pos, arg);
		if (e > s)
			fn(t, u + s, e - s, arg);
		else if (rc >= 0 && e < n) {
			e = s + 1;
			fn(t, u + s, 1, arg);
		}
		pos = e;
	}
}

static void count_piece(bpe_trainer *t, const uint8_t *p, size_t n, void *arg)
{
	(void)arg;
	bpe_trainer_add_piece(t, p, n, 1);
}

void bpe_trainer_add(bpe_trainer *t, const char *text, size_t n)
{
	if (!t->trained)
		split(t, text, n, count_piece, NULL);
}

void bpe_trainer_absorb(bpe_trainer *dst, const bpe_trainer *src)
{
	for (size_t i = 0; i < src->pcap; i++)
		if (src->ps[i].len)
			bpe_trainer_add_piece(dst, src->arena.data + src->ps[i].off, src->ps[i].len,
					      src->ps[i].count);
}

size_t bpe_trainer_npieces(const bpe_trainer *t)
{
	return t->pn;
}

/* ---------------------------------------------------------------------- */
/* tokens */

static uint32_t tok_find(const bpe_trainer *t, const uint8_t *p, size_t n)
{
	uint64_t h = XXH3_64bits(p, n);
	for (size_t i = h & (t->ttcap - 1);; i = (i + 1) & (t->ttcap - 1)) {
		const tslot *s = &t->tt[i];
		if (s->id == NONE)
			return NONE;
		if (s->h == h && t->tlen[s->id] == n && !memcmp(t->tpool.data + t->toff[s->id], p, n))
			return s->id;
	}
}

static uint32_t tok_add(bpe_trainer *t, const uint8_t *p, size_t n)
{
	uint32_t id = t->ntok++;
	t->toff[id] = (uint32_t)t->tpool.len;
	t->tlen[id] = (uint32_t)n;
	buf_append(&t->tpool, p, n);
	uint64_t h = XXH3_64bits(p, n);
	size_t i = h & (t->ttcap - 1);
	while (t->tt[i].id != NONE)
		i = (i + 1) & (t->ttcap - 1);
	t->tt[i] = (tslot){h, id};
	return id;
}

/* ---------------------------------------------------------------------- */
/* pairs */

static uint64_t key(uint32_t a, uint32_t b)
{
	return ((uint64_t)a << 32 | b) + 1; /* 0 marks an empty slot */
}

static uint32_t pair_get(const bpe_trainer *t, uint64_t k)
{
	if (!t->pkcap)
		return NONE;
	for (size_t i = XXH3_64bits(&k, 8) & (t->pkcap - 1);; i = (i + 1) & (t->pkcap - 1)) {
		if (t->pk[i] == k)
			return t->pv[i];
		if (!t->pk[i])
			return NONE;
	}
}

static void pk_put(bpe_trainer *t, uint64_t k, uint32_t v)
{
	size_t i = XXH3_64bits(&k, 8) & (t->pkcap - 1);
	while (t->pk[i])
		i = (i + 1) & (t->pkcap - 1);
	t->pk[i] = k;
	t->pv[i] = v;
}

static uint32_t pair_make(bpe_trainer *t, uint64_t k)
{
	uint32_t p = pair_get(t, k);
	if (p != NONE)
		return p;
	if ((t->pkn + 1) * 2 > t->pkcap) {
		uint64_t *ok = t->pk;
		uint32_t *ov = t->pv;
		size_t oc = t->pkcap;
		t->pkcap = oc ? oc * 2 : 1u << 16;
		t->pk = xcalloc(t->pkcap, sizeof *t->pk);
		t->pv = xmalloc(t->pkcap * sizeof *t->pv);
		for (size_t i = 0; i < oc; i++)
			if (ok[i])
				pk_put(t, ok[i], ov[i]);
		free(ok);
		free(ov);
	}
	if (t->npairs == t->cpairs) {
		t->cpairs = t->cpairs ? t->cpairs * 2 : 1024;
		t->pairs = xrealloc(t->pairs, t->cpairs * sizeof *t->pairs);
	}
	p = t->npairs++;
	k--;
	t->pairs[p] = (pair){.a = (uint32_t)(k >> 32), .b = (uint32_t)k, .inc_step = NONE};
	pk_put(t, k + 1, p);
	t->pkn++;
	return p;
}

static void pair_add_word(pair *p, uint32_t w)
{
	if (p->nw && p->words[p->nw - 1] == w)
		return;
	if (p->nw == p->cw) {
		p->cw = p->cw ? p->cw * 2 : 4;
		p->words = xrealloc(p->words, p->cw * sizeof *p->words);
	}
	p->words[p->nw++] = w;
}

/* ---------------------------------------------------------------------- */
/* the heap: a max-heap on (count, then smaller joined bytes, then shorter
 * left part) */

/* 1 when x ranks before y */
static int better(const bpe_trainer *t, const hent *x, const hent *y)
{
	if (x->count != y->count)
		return x->count > y->count;
	if (x->pair == y->pair)
		return 0;
	const pair *px = &t->pairs[x->pair], *py = &t->pairs[y->pair];
	const uint8_t *xs[2] = {t->tpool.data + t->toff[px->a], t->tpool.data + t->toff[px->b]};
	const uint8_t *ys[2] = {t->tpool.data + t->toff[py->a], t->tpool.data + t->toff[py->b]};
	size_t xl[2] = {t->tlen[px->a], t->tlen[px->b]}, yl[2] = {t->tlen[py->a], t->tlen[py->b]};
	/* compare the concatenations without building them */
	int xi = 0, yi = 0;
	size_t xo = 0, yo = 0;
	for (;;) {
		if (xi < 2 && xo == xl[xi]) {
			xi++;
			xo = 0;
			continue;
		}
		if (yi < 2 && yo == yl[yi]) {
			yi++;
			yo = 0;
			continue;
		}
		if (xi == 2 || yi == 2)
			break;
		size_t k = xl[xi] - xo < yl[yi] - yo ? xl[xi] - xo : yl[yi] - yo;
		int c = memcmp(xs[xi] + xo, ys[yi] + yo, k);
		if (c)
			return c < 0;
		xo += k;
		yo += k;
	}
	if (xi != yi || xi != 2)
		return xi == 2; /* x is a proper prefix of y */
	if (xl[0] != yl[0])
		return xl[0] < yl[0];
	return x->pair < y->pair;
}

static void heap_push(bpe_trainer *t, int64_t count, uint32_t p)
{
	if (t->hn == t->hcap) {
		t->hcap = t->hcap ? t->hcap * 2 : 4096;
		t->heap = xrealloc(t->heap, t->hcap * sizeof *t->heap);
	}
	hent e = {count, p};
	size_t i = t->hn++;
	while (i > 0 && better(t, &e, &t->heap[(i - 1) / 2])) {
		t->heap[i] = t->heap[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	t->heap[i] = e;
}

static hent heap_pop(bpe_trainer *t)
{
	hent top = t->heap[0], last = t->heap[--t->hn];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const hent *mv = &last;
		if (l < t->hn && better(t, &t->heap[l], mv)) {
			m = l;
			mv = &t->heap[l];
		}
		if (r < t->hn && better(t, &t->heap[r], mv))
			m = r;
		if (m == i)
			break;
		t->heap[i] = t->heap[m];
		i = m;
	}
	if (t->hn)
		t->heap[i] = last;
	return top;
}

/* ---------------------------------------------------------------------- */
/* tiktoken's merge loop on one word, continued from its current parts */

static void scratch(bpe_trainer *t, size_t n)
{
	if (t->scap >= n + 2)
		return;
	t->scap = n + 64;
	t->st = xrealloc(t->st, t->scap * sizeof *t->st);
	t->nx = xrealloc(t->nx, t->scap * sizeof *t->nx);
	t->pvv = xrealloc(t->pvv, t->scap * sizeof *t->pvv);
	t->pr = xrealloc(t->pr, t->scap * sizeof *t->pr);
	t->oldk = xrealloc(t->oldk, t->scap * sizeof *t->oldk);
	t->newk = xrealloc(t->newk, t->scap * sizeof *t->newk);
	t->mh = xrealloc(t->mh, t->scap * sizeof *t->mh);
}

static void mh_push(uint64_t *h, size_t *hn, uint64_t k)
{
	size_t i = (*hn)++;
	while (i > 0 && h[(i - 1) / 2] > k) {
		h[i] = h[(i - 1) / 2];
		i = (i - 1) / 2;
	}
	h[i] = k;
}

static uint64_t mh_pop(uint64_t *h, size_t *hn)
{
	uint64_t top = h[0], last = h[--(*hn)];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		uint64_t mv = last;
		if (l < *hn && h[l] < mv) {
			m = l;
			mv = h[l];
		}
		if (r < *hn && h[r] < mv)
			m = r;
		if (m == i)
			break;
		h[i] = h[m];
		i = m;
	}
	if (*hn)
		h[i] = last;
	return top;
}

/* Merges ids[0..m) (parts of the bytes p) by lowest rank, leftmost first,
 * until no adjacent pair forms a token; compacts ids in place.
 * @return the new number of parts (m when nothing merged). */
static uint32_t resegment(bpe_trainer *t, const uint8_t *p, uint32_t *ids, uint32_t m)
{
	if (m < 2)
		return m;
	scratch(t, m);
	uint32_t *st = t->st, *nx = t->nx, *pv = t->pvv, *pr = t->pr;
	st[0] = 0;
	for (uint32_t i = 0; i < m; i++) {
		st[i + 1] = st[i] + t->tlen[ids[i]];
		nx[i] = i + 1;
		pv[i] = i ? i - 1 : NONE;
		pr[i] = NONE;
	}
	size_t hn = 0;
	for (uint32_t i = 0; i + 1 < m; i++) {
		pr[i] = tok_find(t, p + st[i], st[i + 2] - st[i]);
		if (pr[i] != NONE)
			mh_push(t->mh, &hn, (uint64_t)pr[i] << 32 | i);
	}
	if (!hn)
		return m;
	while (hn) {
		uint64_t k = mh_pop(t->mh, &hn);
		uint32_t r = (uint32_t)(k >> 32), i = (uint32_t)k;
		if (pr[i] != r)
			continue; /* stale */
		uint32_t j = nx[i], jn = nx[j];
		ids[i] = r;
		nx[i] = jn;
		if (jn < m)
			pv[jn] = i;
		pr[j] = NONE;
		pr[i] = jn < m ? tok_find(t, p + st[i], st[nx[jn]] - st[i]) : NONE;
		if (pr[i] != NONE)
			mh_push(t->mh, &hn, (uint64_t)pr[i] << 32 | i);
		uint32_t h = pv[i];
		if (h != NONE) {
			pr[h] = tok_find(t, p + st[h], st[nx[i]] - st[h]);
			if (pr[h] != NONE)
				mh_push(t->mh, &hn, (uint64_t)pr[h] << 32 | h);
		}
	}
	uint32_t n = 0;
	for (uint32_t i = 0; i < m; i = nx[i])
		ids[n++] = ids[i];
	return n;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void count_up(bpe_trainer *t, uint32_t p, int64_t by, uint32_t step)
{
	t->pairs[p].count += by;
	if (t->pairs[p].inc_step != step) {
		t->pairs[p].inc_step = step;
		if (t->ninc == t->cinc) {
			t->cinc = t->cinc ? t->cinc * 2 : 1024;
			t->incs = xrealloc(t->incs, t->cinc * sizeof *t->incs);
		}
		t->incs[t->ninc++] = p;
	}
}

/* Re-merges word w after a token was added and moves its pair counts. */
static void update_word(bpe_trainer *t, uint32_t w, uint32_t step)
{
	uint32_t *ids = t->parts + t->w_parts[w], m = t->w_n[w];
	if (m < 2)
		return;
	scratch(t, m);
	uint64_t *oldk = t->oldk;
	for (uint32_t i = 0; i + 1 < m; i++)
		oldk[i] = key(ids[i], ids[i + 1]);
	uint32_t n = resegment(t, t->arena.data + t->w_off[w], ids, m);
	if (n == m)
		return;
	t->w_n[w] = n;
	/* resegment may have grown the scratch */
	oldk = t->oldk;
	uint64_t *newk = t->newk;
	size_t no = m - 1, nn = n ? n - 1 : 0;
	for (size_t i = 0; i < nn; i++)
		newk[i] = key(ids[i], ids[i + 1]);
	qsort(oldk, no, sizeof *oldk, cmp_u64);
	qsort(newk, nn, sizeof *newk, cmp_u64);
	int64_t f = (int64_t)t->w_freq[w];
	size_t i = 0, j = 0;
	while (i < no || j < nn) {
		if (i < no && j < nn && oldk[i] == newk[j]) {
			i++;
			j++;
		} else if (j == nn || (i < no && oldk[i] < newk[j])) {
			t->pairs[pair_get(t, oldk[i])].count -= f;
			i++;
		} else {
			uint32_t p = pair_make(t, newk[j]);
			count_up(t, p, f, step);
			/* new to this word (not anywhere in its old pairs)? */
			if (!bsearch(&newk[j], oldk, no, sizeof *oldk, cmp_u64))
				pair_add_word(&t->pairs[p], w);
			j++;
		}
	}
}

/* ---------------------------------------------------------------------- */
/* training */

static void b64(buf *out, const uint8_t *p, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
			     (i + 2 < n ? p[i + 2] : 0);
		char o[4] = {a[v >> 18], a[v >> 12 & 63], i + 1 < n ? a[v >> 6 & 63] : '=',
			     i + 2 < n ? a[v & 63] : '='};
		buf_append(out, o, 4);
	}
}

static int write_ranks(const bpe_trainer *t, const char *path, mvl_err *err)
{
	atomic_file af;
	if (atomic_file_open(&af, path, err) != 0)
		return -1;
	buf line = {0};
	for (uint32_t r = 0; r < t->ntok; r++) {
		line.len = 0;
		b64(&line, t->tpool.data + t->toff[r], t->tlen[r]);
		buf_printf(&line, " %u\n", r);
		fwrite(line.data, 1, line.len, af.f);
	}
	buf_free(&line);
	return atomic_file_commit(&af, err);
}

int bpe_trainer_train(bpe_trainer *t, int vocab_size, int min_frequency, const char *out_tiktoken,
		      mvl_err *err)
{
	if (t->trained)
		return mvl_errf(err, "bpe trainer: already trained");
	if (vocab_size < 256)
		return mvl_errf(err, "vocabulary size %d: at least 256 (the single bytes)", vocab_size);
	if (min_frequency < 1)
		return mvl_errf(err, "min frequency %d: at least 1", min_frequency);
	t->trained = 1;

	/* tokens: the 256 bytes */
	t->tokcap = (uint32_t)vocab_size;
	t->toff = xmalloc(t->tokcap * sizeof *t->toff);
	t->tlen = xmalloc(t->tokcap * sizeof *t->tlen);
	t->ma = xmalloc(t->tokcap * sizeof *t->ma);
	t->mb = xmalloc(t->tokcap * sizeof *t->mb);
	t->mcount = xmalloc(t->tokcap * sizeof *t->mcount);
	t->ttcap = 1024;
	while (t->ttcap < 2 * (size_t)vocab_size)
		t->ttcap *= 2;
	t->tt = xmalloc(t->ttcap * sizeof *t->tt);
	for (size_t i = 0; i < t->ttcap; i++)
		t->tt[i].id = NONE;
	for (int c = 0; c < 256; c++) {
		uint8_t byte = (uint8_t)c;
		tok_add(t, &byte, 1);
		t->ma[c] = t->mb[c] = NONE;
		t->mcount[c] = 0;
	}

	/* words: the distinct pieces, each as its bytes */
	t->nw = (uint32_t)t->pn;
	t->w_off = xmalloc((t->nw + 1) * sizeof *t->w_off);
	t->w_parts = xmalloc((t->nw + 1) * sizeof *t->w_parts);
	t->w_freq = xmalloc((t->nw + 1) * sizeof *t->w_freq);
	t->w_len = xmalloc((t->nw + 1) * sizeof *t->w_len);
	t->w_n = xmalloc((t->nw + 1) * sizeof *t->w_n);
	t->w_stamp = xmalloc((t->nw + 1) * sizeof *t->w_stamp);
	t->parts = xmalloc((t->arena.len + 1) * sizeof *t->parts);
	uint32_t w = 0;
	for (size_t i = 0; i < t->pcap; i++) {
		pslot *s = &t->ps[i];
		if (!s->len)
			continue;
		s->word = w;
		t->w_off[w] = s->off;
		t->w_parts[w] = s->off; /* one part per byte to start */
		t->w_freq[w] = s->count;
		t->w_len[w] = s->len;
		t->w_n[w] = s->len;
		t->w_stamp[w] = NONE;
		const uint8_t *p = t->arena.data + s->off;
		for (uint32_t k = 0; k < s->len; k++)
			t->parts[s->off + k] = p[k];
		for (uint32_t k = 0; k + 1 < s->len; k++) {
			uint32_t pi = pair_make(t, key(p[k], p[k + 1]));
			t->pairs[pi].count += (int64_t)s->count;
			pair_add_word(&t->pairs[pi], w);
		}
		w++;
	}
	for (uint32_t p = 0; p < t->npairs; p++)
		heap_push(t, t->pairs[p].count, p);

	buf tb = {0};
	uint32_t step = 0;
	while (t->ntok < (uint32_t)vocab_size && t->hn) {
		hent e = heap_pop(t);
		pair *bp = &t->pairs[e.pair];
		if (e.count != bp->count) {
			/* stale: went down since (up pushes a fresh entry) */
			if (e.count > bp->count && bp->count > 0)
				heap_push(t, bp->count, e.pair);
			continue;
		}
		if (e.count < min_frequency || e.count <= 0)
			break; /* the best valid pair: nothing left frequent enough */
		tb.len = 0;
		buf_append(&tb, t->tpool.data + t->toff[bp->a], t->tlen[bp->a]);
		buf_append(&tb, t->tpool.data + t->toff[bp->b], t->tlen[bp->b]);
		if (tok_find(t, tb.data, tb.len) != NONE) {
			/* cannot happen (see bpe_train.h); drop the pair rather
			 * than write a duplicate token */
			bp->count = 0;
			continue;
		}
		uint32_t r = tok_add(t, tb.data, tb.len);
		t->ma[r] = bp->a;
		t->mb[r] = bp->b;
		t->mcount[r] = (uint64_t)e.count;
		step++;
		t->ninc = 0;
		/* every split of the new token's bytes into two tokens: the
		 * words holding any of those pairs re-merge */
		for (size_t k = 1; k < tb.len; k++) {
			uint32_t c = tok_find(t, tb.data, k), d = tok_find(t, tb.data + k, tb.len - k);
			if (c == NONE || d == NONE)
				continue;
			uint32_t sp = pair_get(t, key(c, d));
			if (sp == NONE)
				continue;
			/* update_word may grow t->pairs: index, don't hold */
			for (uint32_t x = 0; x < t->pairs[sp].nw; x++) {
				uint32_t wi = t->pairs[sp].words[x];
				if (t->w_stamp[wi] == step)
					continue;
				t->w_stamp[wi] = step;
				update_word(t, wi, step);
			}
			/* a pair whose bytes form a token never reappears */
			free(t->pairs[sp].words);
			t->pairs[sp].words = NULL;
			t->pairs[sp].nw = t->pairs[sp].cw = 0;
		}
		for (size_t k = 0; k < t->ninc; k++) {
			pair *q = &t->pairs[t->incs[k]];
			if (q->count > 0)
				heap_push(t, q->count, t->incs[k]);
		}
	}
	buf_free(&tb);
	/* the heap and the pairs are not needed past here */
	for (uint32_t i = 0; i < t->npairs; i++)
		free(t->pairs[i].words);
	free(t->pairs);
	t->pairs = NULL;
	t->npairs = t->cpairs = 0;
	free(t->heap);
	t->heap = NULL;
	t->hn = t->hcap = 0;
	free(t->pk);
	free(t->pv);
	t->pk = NULL;
	t->pv = NULL;
	t->pkcap = t->pkn = 0;
	return out_tiktoken ? write_ranks(t, out_tiktoken, err) : 0;
}

/* ---------------------------------------------------------------------- */
/* after training */

size_t bpe_trainer_ntokens(const bpe_trainer *t)
{
	return t->ntok;
}

const uint8_t *bpe_trainer_token(const bpe_trainer *t, uint32_t rank, size_t *len)
{
	if (rank >= t->ntok)
		return NULL;
	*len = t->tlen[rank];
	return t->tpool.data + t->toff[rank];
}

int bpe_trainer_merge(const bpe_trainer *t, uint32_t rank, uint32_t *left, uint32_t *right,
		      uint64_t *count)
{
	if (rank < 256 || rank >= t->ntok)
		return -1;
	*left = t->ma[rank];
	*right = t->mb[rank];
	if (count)
		*count = t->mcount[rank];
	return 0;
}

typedef struct enc_arg {
	uint32_t **ids;
	size_t *cap, *len;
	uint32_t *tmp;
	size_t tcap;
} enc_arg;

static void push_id(enc_arg *a, uint32_t id)
{
	if (*a->len == *a->cap) {
		*a->cap = *a->cap ? *a->cap * 2 : 1024;
		*a->ids = xrealloc(*a->ids, *a->cap * sizeof **a->ids);
	}
	(*a->ids)[(*a->len)++] = id;
}

static void enc_piece(bpe_trainer *t, const uint8_t *p, size_t n, void *arg)
{
	enc_arg *a = arg;
	pslot *s = piece_find(t, p, n, XXH3_64bits(p, n));
	if (s->len) {
		const uint32_t *ids = t->parts + t->w_parts[s->word];
		for (uint32_t i = 0; i < t->w_n[s->word]; i++)
			push_id(a, ids[i]);
		return;
	}
	if (a->tcap < n) {
		a->tcap = n;
		a->tmp = xrealloc(a->tmp, n * sizeof *a->tmp);
	}
	for (size_t i = 0; i < n; i++)
		a->tmp[i] = p[i];
	uint32_t m = resegment(t, p, a->tmp, (uint32_t)n);
	for (uint32_t i = 0; i < m; i++)
		push_id(a, a->tmp[i]);
}

size_t bpe_trainer_encode(bpe_trainer *t, const char *text, size_t n, uint32_t **ids, size_t *cap,
			  size_t *len)
{
	if (!t->trained)
		return 0;
	size_t before = *len;
	enc_arg a = {ids, cap, len, NULL, 0};
	split(t, text, n, enc_piece, &a);
	free(a.tmp);
	return *len - before;
}
