/* pack.c: best-fit decreasing over a sliding window. */
#include "pack.h"

#include <stdlib.h>
#include <string.h>

typedef struct bin {
	pack_item **items;
	int n, cap;
	uint32_t used;
	uint64_t born; /* creation order: ties and the final flush */
} bin;

struct packer {
	packer_opts o;
	pack_emit_fn emit;
	void *ctx;
	pack_item **win;
	int nwin;
	bin *bins;
	int nbins;
	uint64_t born;
	pack_stats st;
	/* the sequence being written */
	pack_seq seq;
	pack_segment *segs;
	pack_image *img;
	int segcap, imgcap;
};

void pack_item_free(pack_item *it)
{
	if (!it)
		return;
	free(it->key);
	free(it->ids);
	free(it->loss);
	free(it->px);
	free(it);
}

packer *packer_new(const packer_opts *o, pack_emit_fn emit, void *ctx)
{
	packer *p = xcalloc(1, sizeof *p);
	p->o = *o;
	if (p->o.window < 1 || p->o.greedy)
		p->o.window = 1;
	if (p->o.open_bins < 1 || p->o.greedy)
		p->o.open_bins = 1;
	p->emit = emit;
	p->ctx = ctx;
	p->win = xcalloc((size_t)p->o.window, sizeof *p->win);
	p->bins = xcalloc((size_t)p->o.open_bins, sizeof *p->bins);
	uint32_t L = o->seq_len;
	p->seq.seq_len = L;
	p->seq.ids = xmalloc((size_t)L * sizeof *p->seq.ids);
	p->seq.pos = xmalloc((size_t)L * sizeof *p->seq.pos);
	p->seq.seg = xmalloc((size_t)L * sizeof *p->seq.seg);
	p->seq.loss = xmalloc(L);
	return p;
}

/* writes bin k and removes it from the open bins */
static int flush(packer *p, int k, mvl_err *err)
{
	bin *b = &p->bins[k];
	pack_seq *s = &p->seq;
	uint32_t L = p->o.seq_len, t = 0;
	if (b->n > p->segcap) {
		p->segcap = b->n;
		p->segs = xrealloc(p->segs, (size_t)p->segcap * sizeof *p->segs);
		p->img = xrealloc(p->img, (size_t)p->segcap * sizeof *p->img);
	}
	s->nseg = (uint32_t)b->n;
	s->nimg = 0;
	s->segs = p->segs;
	s->img = p->img;
	for (int i = 0; i < b->n; i++) {
		const pack_item *it = b->items[i];
		memcpy(s->ids + t, it->ids, (size_t)it->n * sizeof *s->ids);
		memcpy(s->loss + t, it->loss, it->n);
		s->loss[t] = 0;
		for (uint32_t j = 0; j < it->n; j++) {
			s->pos[t + j] = j;
			s->seg[t + j] = (uint32_t)i + 1;
		}
		p->segs[i] = (pack_segment){t, it->n, it->truncated ? PACK_SEG_TRUNCATED : 0u, it->key,
					    (uint32_t)strlen(it->key)};
		if (it->img_h)
			p->img[s->nimg++] = (pack_image){(uint32_t)i + 1, t + it->img_token, it->img_h, it->img_w, it->px};
		p->st.truncated += it->truncated != 0;
		p->st.images += it->img_h != 0;
		t += it->n;
	}
	s->ntok = t;
	for (uint32_t j = t; j < L; j++) {
		s->ids[j] = p->o.pad_id;
		s->pos[j] = 0;
		s->seg[j] = 0;
		s->loss[j] = 0;
	}
	p->st.sequences++;
	p->st.samples += (uint64_t)b->n;
	p->st.tokens += t;
	int rc = p->emit(p->ctx, s, err);
	for (int i = 0; i < b->n; i++)
		pack_item_free(b->items[i]);
	free(b->items);
	/* keep the open bins in creation order */
	memmove(&p->bins[k], &p->bins[k + 1], (size_t)(p->nbins - k - 1) * sizeof *p->bins);
	p->nbins--;
	return rc;
}

static void bin_push(bin *b, pack_item *it)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 8;
		b->items = xrealloc(b->items, (size_t)b->cap * sizeof *b->items);
	}
	b->items[b->n++] = it;
	b->used += it->n;
}

/* best fit: the open bin with the least room that still holds it */
static int place(packer *p, pack_item *it, mvl_err *err)
{
	uint32_t L = p->o.seq_len;
	int best = -1;
	uint32_t room = 0;
	for (int k = 0; k < p->nbins; k++) {
		uint32_t r = L - p->bins[k].used;
		if (r >= it->n && (best < 0 || r < room)) {
			best = k;
			room = r;
		}
	}
	if (best < 0) {
		if (p->nbins == p->o.open_bins) {
			/* out of bins: write the fullest (the first of equals) */
			int full = 0;
			for (int k = 1; k < p->nbins; k++)
				if (p->bins[k].used > p->bins[full].used)
					full = k;
			if (flush(p, full, err) != 0) {
				pack_item_free(it);
				return -1;
			}
		}
		best = p->nbins++;
		p->bins[best] = (bin){.born = p->born++};
	}
	bin_push(&p->bins[best], it);
	if (p->bins[best].used == L)
		return flush(p, best, err);
	return 0;
}

/* places the window's longest sample (the first of equals) */
static int place_longest(packer *p, mvl_err *err)
{
	int k = 0;
	for (int i = 1; i < p->nwin; i++)
		if (p->win[i]->n > p->win[k]->n)
			k = i;
	pack_item *it = p->win[k];
	memmove(&p->win[k], &p->win[k + 1], (size_t)(p->nwin - k - 1) * sizeof *p->win);
	p->nwin--;
	return place(p, it, err);
}

int packer_add(packer *p, pack_item *it, mvl_err *err)
{
	p->win[p->nwin++] = it;
	if (p->nwin < p->o.window)
		return 0;
	return place_longest(p, err);
}

int packer_finish(packer *p, mvl_err *err)
{
	while (p->nwin)
		if (place_longest(p, err) != 0)
			return -1;
	while (p->nbins)
		if (flush(p, 0, err) != 0)
			return -1;
	return 0;
}

pack_stats packer_stats(const packer *p)
{
	return p->st;
}

void packer_free(packer *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->nwin; i++)
		pack_item_free(p->win[i]);
	for (int k = 0; k < p->nbins; k++) {
		for (int i = 0; i < p->bins[k].n; i++)
			pack_item_free(p->bins[k].items[i]);
		free(p->bins[k].items);
	}
	free(p->win);
	free(p->bins);
	free(p->seq.ids);
	free(p->seq.pos);
	free(p->seq.seg);
	free(p->seq.loss);
	free(p->segs);
	free(p->img);
	free(p);
}
