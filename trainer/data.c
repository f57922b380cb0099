/* data.c: batches from packs or synthetic, evaluation, checkpoint names. */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void batch_alloc(batch_buf *b, int B, int L)
{
	size_t n = (size_t)B * L;
	b->B = B;
	b->L = L;
	b->ids = xmalloc(n * sizeof *b->ids);
	b->pos = xmalloc(n * sizeof *b->pos);
	b->seg = xmalloc(n * sizeof *b->seg);
	b->loss = xmalloc(n);
}

void batch_clear_images(batch_buf *b)
{
	for (int i = 0; i < b->nimg; i++)
		free(b->px[i]);
	b->nimg = 0;
}

void batch_free(batch_buf *b)
{
	batch_clear_images(b);
	free(b->ids);
	free(b->pos);
	free(b->seg);
	free(b->loss);
	free(b->img);
	free(b->px);
}

uint8_t *batch_add_image(batch_buf *b, int seq, int token, int h, int w)
{
	if (b->nimg == b->imgcap) {
		b->imgcap = b->imgcap ? 2 * b->imgcap : 8;
		b->img = xrealloc(b->img, (size_t)b->imgcap * sizeof *b->img);
		b->px = xrealloc(b->px, (size_t)b->imgcap * sizeof *b->px);
	}
	uint8_t *px = xmalloc((size_t)h * w * 3);
	b->px[b->nimg] = px;
	b->img[b->nimg++] = (mimage){seq, token, h, w, px};
	return px;
}

static uint64_t mix64(uint64_t z)
{
	z += 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Synthetic sequence g: one image of the preset's size, then random text
 * to the sequence's end; a function of (seed, g) only, so any split of the
 * global batch (accumulation, ranks) sees the same data. */
void synth_seq(batch_buf *b, int s, uint64_t seed, uint64_t g, const model_config *c, uint32_t pad,
		      uint32_t vstart, uint32_t vend)
{
	uint64_t st = mix64(seed ^ mix64(g + 1));
	int L = b->L, side = c->image;
	size_t base = (size_t)s * L;
	int npad = (side / 28) * (side / 28), t = 0;
	uint8_t *px = batch_add_image(b, s, 1, side, side);
	for (size_t i = 0; i < (size_t)side * side * 3; i++) {
		if (i % 8 == 0)
			st = mix64(st);
		px[i] = (uint8_t)(st >> (8 * (i % 8)));
	}
	b->ids[base + t++] = vstart;
	for (int i = 0; i < npad; i++)
		b->ids[base + t++] = pad;
	b->ids[base + t++] = vend;
	for (; t < L; t++) {
		st = mix64(st);
		b->ids[base + t] = (uint32_t)(st % (uint64_t)(c->vocab - 3));
	}
	for (int i = 0; i < L; i++) {
		b->pos[base + i] = (uint32_t)i;
		b->seg[base + i] = 1;
		b->loss[base + i] = i > npad + 1;
	}
}

int pack_src_open(pack_src *p, char **paths, int n, uint32_t L, mvl_err *err)
{
	p->r = xcalloc((size_t)n, sizeof *p->r);
	for (int i = 0; i < n; i++) {
		p->r[i] = pack_open(paths[i], err);
		if (!p->r[i])
			return -1;
		p->n++;
		if (pack_seq_len(p->r[i]) != L)
			return mvl_errf(err, "'%s' holds sequences of %u tokens, not %u", paths[i], pack_seq_len(p->r[i]), L);
		p->total += pack_count(p->r[i]);
	}
	if (!p->total)
		return mvl_errf(err, "the packs hold no sequence");
	/* the image pad id is whatever token the images' first pads carry */
	p->image_pad = UINT32_MAX;
	for (int i = 0; i < p->n && p->image_pad == UINT32_MAX; i++)
		for (uint64_t k = 0; k < pack_count(p->r[i]) && k < 4096; k++) {
			pack_seq q;
			if (pack_read(p->r[i], k, &q, err) != 0)
				return -1;
			if (q.nimg) {
				p->image_pad = q.ids[q.img[0].token];
				break;
			}
		}
	return 0;
}

void pack_src_close(pack_src *p)
{
	for (int i = 0; i < p->n; i++)
		pack_close(p->r[i]);
	free(p->r);
}

int pack_fill(pack_src *p, batch_buf *b, int s, uint64_t g, mvl_err *err)
{
	uint64_t k = g % p->total;
	int f = 0;
	while (k >= pack_count(p->r[f]))
		k -= pack_count(p->r[f++]);
	pack_seq q;
	if (pack_read(p->r[f], k, &q, err) != 0)
		return -1;
	size_t base = (size_t)s * b->L;
	memcpy(b->ids + base, q.ids, (size_t)b->L * 4);
	memcpy(b->pos + base, q.pos, (size_t)b->L * 4);
	memcpy(b->seg + base, q.seg, (size_t)b->L * 4);
	memcpy(b->loss + base, q.loss, (size_t)b->L);
	for (uint32_t i = 0; i < q.nimg; i++) {
		uint8_t *px = batch_add_image(b, s, (int)q.img[i].token, (int)q.img[i].h, (int)q.img[i].w);
		memcpy(px, q.img[i].px, (size_t)q.img[i].h * q.img[i].w * 3);
	}
	return 0;
}

/* the newest checkpoint directory of out, or out itself when it is a
 * checkpoint (holds state.json) */
char *ckpt_latest(const char *out, mvl_err *err)
{
	buf p = {0}, l = {0};
	buf_printf(&p, "%s/state.json", out);
	if (access((char *)p.data, F_OK) == 0) {
		buf_free(&p);
		return xstrdup(out);
	}
	p.len = 0;
	buf_printf(&p, "%s/latest", out);
	if (read_file((char *)p.data, 4096, &l, err) != 0) {
		buf_free(&p);
		return NULL;
	}
	while (l.len && (l.data[l.len - 1] == '\n' || l.data[l.len - 1] == '\r'))
		l.len--;
	buf_append(&l, "", 0); /* NUL-terminated where trimmed */
	/* the trainer writes step-NNNNNNNN; anything else (../x, an absolute
	 * path, a second line) is not followed */
	long long n;
	int used = 0;
	if (l.len != 13 || sscanf((char *)l.data, "step-%8lld%n", &n, &used) != 1 || used != 13 || n < 0 ||
	    memchr(l.data, '/', l.len)) {
		mvl_errf(err, "'%s' names '%.*s', not a checkpoint of this directory (step-NNNNNNNN)", (char *)p.data,
			 (int)(l.len > 64 ? 64 : l.len), (char *)l.data);
		buf_free(&p);
		buf_free(&l);
		return NULL;
	}
	p.len = 0;
	buf_printf(&p, "%s/%.*s", out, (int)l.len, (char *)l.data);
	buf_free(&l);
	return (char *)p.data;
}

char *ckpt_weights(const char *name, mvl_err *err)
{
	struct stat st;
	buf p = {0};
	if (stat(name, &st) == 0 && S_ISDIR(st.st_mode)) {
		char *d = ckpt_latest(name, err);
		if (!d)
			return NULL;
		buf_printf(&p, "%s/model.safetensors", d);
		free(d);
	} else {
		buf_printf(&p, "%s", name);
	}
	return (char *)p.data;
}

/* the mean loss over every sequence of a held-out pack, B at a time */
int eval_pack(model *m, pack_src *ev, batch_buf *bb, int B, int L, uint64_t max, double *mean, mvl_err *err)
{
	double sum = 0;
	uint64_t count = 0;
	uint64_t total = max && max < ev->total ? max : ev->total;
	for (uint64_t g = 0; g < total; g += (uint64_t)B) {
		int n = (int)(total - g < (uint64_t)B ? total - g : (uint64_t)B);
		batch_clear_images(bb);
		for (int s = 0; s < n; s++)
			if (pack_fill(ev, bb, s, g + (uint64_t)s, err) != 0)
				return -1;
		mbatch mb = {n, L, bb->ids, bb->pos, bb->seg, bb->loss, bb->img, bb->nimg, ev->image_pad, NULL};
		double ls;
		uint64_t cnt;
		if (model_step(m, &mb, 0, 1.0f, &ls, &cnt, err) != 0)
			return mvl_errprefix(err, "evaluation");
		sum += ls;
		count += cnt;
	}
	*mean = count ? sum / (double)count : 0;
	return 0;
}

