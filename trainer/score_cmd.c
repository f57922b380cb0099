/* score_cmd.c: `mvl score`: a trained checkpoint's verdict on each
 * image-caption pair, written into KEY.json for the pairscore filter.
 *
 * For each sample with an image and a caption: the mean log-likelihood per
 * caption token (and <|endoftext|>) with the image before it, and without
 * any image; "gain" is their difference, how much the image explains the
 * caption; "contrast" is the log-likelihood under its own image minus the
 * mean under the images of the previous three scored samples (a caption
 * of another image is no likelier under its own).  Samples without both
 * pass through unscored (counted). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <xxhash.h>

#include "chat.h"
#include "commands.h"
#include "data.h"
#include "image.h"
#include "json_file.h"
#include "model.h"
#include "sample_text.h"
#include "stream_cmd.h"
#include "train.h"

typedef struct score_opts {
	const char *ckpt, *tokenizer, *encoding, *stats;
	uint64_t min_pixels, max_pixels;
	stream_opts so;
} score_opts;

/* mean log-likelihood per target token of n sequences, sequence i after
 * image im[i] (NULL: none), in one batch */
static int score_seqs(model *m, const chat_tokens *t, chat_seq *const *q, const img_rgb *const *im, int n, double *out,
		      mvl_err *err)
{
	int L = 0;
	for (int i = 0; i < n; i++)
		L = (int)q[i]->n > L ? (int)q[i]->n : L;
	batch_buf bb = {0};
	batch_alloc(&bb, n, L);
	int *targets = xcalloc((size_t)n, sizeof *targets);
	for (int i = 0; i < n; i++) {
		int first = -1;
		for (int k = 0; k < L; k++) {
			size_t r = (size_t)i * L + k;
			int in = k < (int)q[i]->n;
			bb.ids[r] = in ? q[i]->ids[k] : t->endoftext;
			bb.loss[r] = in ? q[i]->loss[k] : 0;
			bb.seg[r] = in;
			bb.pos[r] = in ? (uint32_t)k : 0;
			targets[i] += in && k > 0 && q[i]->loss[k];
			if (in && first < 0 && q[i]->ids[k] == t->image_pad)
				first = k;
		}
		if (im[i]) {
			uint8_t *px = batch_add_image(&bb, i, first, im[i]->h, im[i]->w);
			memcpy(px, im[i]->px, (size_t)im[i]->h * im[i]->w * 3);
		}
	}
	double *sl = xcalloc((size_t)n, sizeof *sl), tot;
	uint64_t cnt;
	mbatch mb = {n, L, bb.ids, bb.pos, bb.seg, bb.loss, bb.img, bb.nimg, t->image_pad, sl};
	int rc = model_step(m, &mb, 0, 1.0f, &tot, &cnt, err);
	for (int i = 0; rc == 0 && i < n; i++)
		out[i] = targets[i] ? -sl[i] / targets[i] : 0;
	batch_free(&bb);
	free(sl);
	free(targets);
	return rc;
}

/* The distribution of one metric over the scored samples, for --stats:
 * a reservoir of at most RES values (exact below that many samples, a
 * uniform sample above: memory stays bounded however long the stream),
 * replacement decided by a hash of the sample's index so runs repeat. */
enum { RES = 65536 };
typedef struct dist1 {
	double *v, sum, lo, hi;
	uint64_t n;
	int len;
} dist1;

static void dist_add(dist1 *d, double x)
{
	if (!d->v)
		d->v = xmalloc(RES * sizeof *d->v);
	if (!d->n || x < d->lo)
		d->lo = x;
	if (!d->n || x > d->hi)
		d->hi = x;
	d->sum += x;
	d->n++;
	if (d->len < RES) {
		d->v[d->len++] = x;
	} else {
		uint64_t j = XXH64(&d->n, sizeof d->n, 0x5eed) % d->n;
		if (j < RES)
			d->v[j] = x;
	}
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* {n, mean, min, max, quantiles: [q0, q1, ... q100]} (percent steps,
 * linear between order statistics of the reservoir) */
static json_t *dist_json(dist1 *d)
{
	json_t *o = json_object(), *q = json_array();
	json_object_set_new(o, "n", json_integer((json_int_t)d->n));
	if (!d->n) {
		json_object_set_new(o, "quantiles", q);
		return o;
	}
	qsort(d->v, (size_t)d->len, sizeof *d->v, cmp_dbl);
	json_object_set_new(o, "mean", json_real(d->sum / (double)d->n));
	json_object_set_new(o, "min", json_real(d->lo));
	json_object_set_new(o, "max", json_real(d->hi));
	for (int p = 0; p <= 100; p++) {
		double at = (d->len - 1) * p / 100.0;
		int i = (int)at;
		double f = at - i, v = i + 1 < d->len ? d->v[i] * (1 - f) + d->v[i + 1] * f : d->v[i];
		json_array_append_new(q, json_real(v));
	}
	json_object_set_new(o, "quantiles", q);
	return o;
}

/* the images of the last few scored samples: the other images a caption
 * is also scored under (its contrast) */
enum { OTHERS = 3 };

/* samples scored in one forward */
enum { BATCH = 8 };

/* a caption longer than this many tokens is not scored: BATCH x 5
 * sequences of it in one forward would cost memory without bound */
enum { MAX_CAPTION_TOKENS = 1024 };

/* a sample read and waiting for its batch's forward */
typedef struct pend {
	sample s;
	int ok;                          /* has an image and a caption: scored */
	img_rgb im;                      /* its image at the scoring size */
	chat_seq seq[2 + OTHERS];        /* with its image, without, after others */
	const img_rgb *img[2 + OTHERS];  /* the image before each sequence */
	int nq;
} pend;

int cmd_score(int argc, char **argv)
{
	score_opts o;
	const opt_spec specs[] = {
		{"ckpt", 0, OPT_STR, &o.ckpt, NULL, "CKPT", "checkpoint directory, run directory or model.safetensors"},
		{"tokenizer", 0, OPT_STR, &o.tokenizer, NULL, "FILE", "the tokenizer it was trained with"},
		{"encoding", 0, OPT_CHOICE, &o.encoding, "cl100k_base", "gpt2|r50k_base|cl100k_base|o200k_base",
		 "pattern for a .tiktoken without its .json"},
		{"min-pixels", 0, OPT_U64, &o.min_pixels, "3136", "N", "smart_resize lower bound"},
		{"max-pixels", 0, OPT_U64, &o.max_pixels, "12544", "N", "smart_resize upper bound"},
		{"stats", 0, OPT_STR, &o.stats, NULL, "FILE",
		 "write the scores' distribution (count, mean, percentiles of gain, contrast, with_image) as JSON"},
		STREAM_INPUT_SPECS(o.so),
		STREAM_OUTPUT_SPECS(o.so, "0", "0"),
		{0},
	};
	const opt_cmd cmd = {
		"score", "--ckpt CKPT --tokenizer FILE [OPTIONS] [INPUT...]",
		"Adds to each sample's KEY.json \"pairscore\": {with_image, without_image,\n"
		"gain, contrast}: the caption's mean log-likelihood per token under a\n"
		"checkpoint with its image and without, their difference, and its own image\n"
		"against the previous three samples' images.\n"
		"The pairscore filter drops pairs by it.",
		NULL, specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	if (!o.ckpt || !o.tokenizer) {
		fprintf(stderr, "mvl score: --ckpt and --tokenizer are required\nsee 'mvl score --help'\n");
		free(args);
		return 2;
	}
	mvl_err err;
	char *wp = ckpt_weights(o.ckpt, &err);
	model *m = wp ? model_load_new(wp, &err) : NULL;
	bpe *b = m ? bpe_open(o.tokenizer, o.encoding, &err) : NULL;
	chat_tokens t;
	int ok = m && b && chat_tokens_setup(b, &t, &err) == 0;
	if (ok && bpe_vocab_size(b) > (size_t)m->c.vocab) {
		mvl_errf(&err, "the tokenizer '%s' has %zu ids, the model '%s' only %d: not the tokenizer it was trained "
			       "with", o.tokenizer, bpe_vocab_size(b), wp, m->c.vocab);
		ok = 0;
	}
	free(wp);
	if (!ok) {
		fprintf(stderr, "mvl score: %s\n", err.msg);
		bpe_free(b);
		model_free(m);
		free(args);
		return 1;
	}
	stream_run sr;
	if (stream_run_open(&sr, "score", &o.so, args, nargs, RUN_SHARDS | RUN_WRITES, &err) != 0) {
		fprintf(stderr, "mvl score: %s\n", err.msg);
		bpe_free(b);
		model_free(m);
		free(args);
		return 1;
	}
	bpe_ctx *bc = bpe_ctx_new(b);
	img_ctx *ic = img_ctx_new();
	/* BATCH samples are read, then scored in one forward of up to
	 * BATCH x (2 + OTHERS) sequences (one sample's five are too few to keep
	 * the matrix products busy), then written in input order */
	pend *P = xcalloc(BATCH, sizeof *P);
	for (int j = 0; j < BATCH; j++)
		sample_init(&P[j].s);
	/* the last OTHERS scored images: in others[k], or in a pending sample
	 * until its batch is written, when it moves into others[k] */
	img_rgb others[OTHERS] = {{0}};
	const img_rgb *hist[OTHERS] = {0};
	int nh = 0, hnext = 0, np = 0;
	buf scratch = {0};
	uint64_t scored = 0, unscored = 0;
	dist1 dist[3] = {{0}}; /* gain, contrast, with_image */
	int failed = 0, more = 1;
	while (!failed && more) {
		more = stream_run_read(&sr, &P[np].s);
		if (more) {
			pend *p = &P[np++];
			size_t n;
			const char *cap = sample_caption(&p->s, &scratch, &n, NULL);
			member *imm = sample_image(&p->s, NULL);
			img_rgb dec = {0};
			img_decode_opts dopts;
			img_decode_opts_default(&dopts);
			mvl_err e;
			int h = 0, w = 0;
			p->ok = cap && n && imm && img_decode(ic, imm->data, imm->size, &dopts, &dec, NULL, &e) == 0 &&
				smart_resize(dec.h, dec.w, 28, o.min_pixels, o.max_pixels, &h, &w, &e) == 0 &&
				img_resize(&dec, w, h, &p->im, &e) == 0;
			img_rgb_free(&dec);
			p->nq = 0;
			for (int k = 0; k < 2 + OTHERS; k++)
				p->seq[k].n = 0;
			p->ok = p->ok && chat_caption(b, bc, &t, cap, n, 0, 0, &p->seq[1], &e) == 0 &&
				p->seq[1].n <= MAX_CAPTION_TOKENS && chat_caption(b, bc, &t, cap, n, h, w, &p->seq[0], &e) == 0;
			if (p->ok) {
				p->img[0] = &p->im;
				p->img[1] = NULL;
				p->nq = 2;
				/* the same caption after each of the last scored images */
				for (int k = 0; k < nh; k++)
					if (chat_caption(b, bc, &t, cap, n, hist[k]->h, hist[k]->w, &p->seq[p->nq], &e) == 0)
						p->img[p->nq++] = hist[k];
				hist[hnext] = &p->im;
				hnext = (hnext + 1) % OTHERS;
				if (nh < OTHERS)
					nh++;
			}
		}
		if (np == 0 || (more && np < BATCH))
			continue;
		/* score the batch */
		chat_seq *q[BATCH * (2 + OTHERS)];
		const img_rgb *qi[BATCH * (2 + OTHERS)];
		double ll[BATCH * (2 + OTHERS)];
		int nq = 0;
		for (int j = 0; j < np; j++)
			for (int k = 0; P[j].ok && k < P[j].nq; k++) {
				q[nq] = &P[j].seq[k];
				qi[nq++] = P[j].img[k];
			}
		if (nq && score_seqs(m, &t, q, qi, nq, ll, &err) != 0) {
			fprintf(stderr, "mvl score: '%s': %s\n", P[0].s.key, err.msg);
			failed = 1;
		}
		int at = 0;
		for (int j = 0; !failed && j < np; j++) {
			pend *p = &P[j];
			if (p->ok) {
				const double *l = ll + at;
				at += p->nq;
				json_t *ps = json_pack("{s:f,s:f,s:f}", "with_image", l[0], "without_image", l[1], "gain",
						       l[0] - l[1]);
				dist_add(&dist[0], l[0] - l[1]);
				dist_add(&dist[2], l[0]);
				if (p->nq > 2) {
					double mo = 0;
					for (int k = 2; k < p->nq; k++)
						mo += l[k];
					json_object_set_new(ps, "contrast", json_real(l[0] - mo / (p->nq - 2)));
					dist_add(&dist[1], l[0] - mo / (p->nq - 2));
				}
				sample_json_set(&p->s, "pairscore", ps);
				scored++;
			} else {
				unscored++;
			}
			if (stream_run_write(&sr, &p->s, &err) != 0)
				failed = 1;
		}
		/* the images the next samples are scored against move out of
		 * the batch; the rest are freed */
		for (int k = 0; k < nh; k++)
			for (int j = 0; j < np; j++)
				if (hist[k] == &P[j].im) {
					img_rgb_free(&others[k]);
					others[k] = P[j].im;
					P[j].im = (img_rgb){0};
					hist[k] = &others[k];
				}
		for (int j = 0; j < np; j++) {
			img_rgb_free(&P[j].im);
			sample_clear(&P[j].s);
		}
		np = 0;
	}
	if (!o.so.quiet || unscored)
		fprintf(stderr, "mvl score: %llu scored, %llu passed through unscored (no image or caption, an "
				"image that does not decode, or a caption that does not encode or runs over %d tokens)\n",
			(unsigned long long)scored, (unsigned long long)unscored, MAX_CAPTION_TOKENS);
	if (failed)
		sr.output_failed = 1;
	int rc = stream_run_close(&sr);
	if (rc == 0 && o.stats) {
		json_t *st = json_object(), *ms = json_object();
		json_object_set_new(st, "scored", json_integer((json_int_t)scored));
		json_object_set_new(st, "unscored", json_integer((json_int_t)unscored));
		json_object_set_new(st, "reservoir", json_integer(RES));
		static const char *const names[3] = {"gain", "contrast", "with_image"};
		for (int k = 0; k < 3; k++)
			json_object_set_new(ms, names[k], dist_json(&dist[k]));
		json_object_set_new(st, "metrics", ms);
		if (json_save(o.stats, st, &err) != 0) {
			fprintf(stderr, "mvl score: %s\n", err.msg);
			rc = 1;
		}
		json_decref(st);
	}
	for (int k = 0; k < 3; k++)
		free(dist[k].v);
	for (int j = 0; j < BATCH; j++) {
		for (int k = 0; k < 2 + OTHERS; k++)
			chat_seq_free(&P[j].seq[k]);
		img_rgb_free(&P[j].im);
		sample_free(&P[j].s);
	}
	free(P);
	for (int k = 0; k < OTHERS; k++)
		img_rgb_free(&others[k]);
	buf_free(&scratch);
	img_ctx_free(ic);
	bpe_ctx_free(bc);
	bpe_free(b);
	model_free(m);
	free(args);
	return rc;
}
