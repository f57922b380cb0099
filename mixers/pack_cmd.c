/* pack_cmd.c: `mvl pack`: a (mixed) sample stream into a pack file. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "commands.h"
#include "json_file.h"
#include "image.h"
#include "layout.h"
#include "pack.h"
#include "parallel.h"
#include "recipe.h"
#include "stream_cmd.h"

typedef struct pack_opts {
	const char *recipe, *stage, *tokenizer, *encoding, *output, *stats;
	int seq_len, window, open_bins, greedy, threads, no_truncate;
	uint64_t min_pixels, max_pixels;
	stream_opts so;
} pack_opts;

typedef struct pack_job {
	const bpe *b;
	chat_tokens t;
	uint32_t seq_len;
	uint64_t min_pixels, max_pixels;
	int truncate;
	packer *pk;
	pack_writer *pw;
} pack_job;

typedef struct pack_tls {
	layout L;
	img_ctx *ic;
	chat_seq seq;
} pack_tls;

static void *tls_new(void *ctx)
{
	pack_job *j = ctx;
	pack_tls *t = xcalloc(1, sizeof *t);
	t->L = (layout){.b = j->b, .c = bpe_ctx_new(j->b), .t = &j->t, .min_pixels = j->min_pixels,
			.max_pixels = j->max_pixels};
	t->ic = img_ctx_new();
	return t;
}

static void tls_free(void *tls)
{
	pack_tls *t = tls;
	bpe_ctx_free(t->L.c);
	buf_free(&t->L.scratch);
	img_ctx_free(t->ic);
	chat_seq_free(&t->seq);
	free(t);
}

/* the kind mvl mix recorded, else -1 (from the content) */
static int mixed_kind(const sample *s)
{
	member *j = sample_get(s, "json");
	if (!j || !memmem(j->data, j->size, "\"mix\"", 5))
		return -1;
	json_t *root = json_loadb((const char *)j->data, j->size, 0, NULL);
	const char *k = json_string_value(json_object_get(json_object_get(root, "mix"), "kind"));
	int kind = -1;
	for (int i = 0; k && src_kind_names[i]; i++)
		if (!strcmp(k, src_kind_names[i]))
			kind = i;
	json_decref(root);
	return kind;
}

/* Worker: lay the sample out, fit it to the sequence, decode and resize
 * its image.  The result replaces the sample's members: pk.ids (u32),
 * pk.loss (u8), pk.meta (u32 h, w, first image pad, truncated), pk.rgb. */
static int pack_work(void *ctx, void *tls, sample *s, reject_info *rj)
{
	pack_job *j = ctx;
	pack_tls *t = tls;
	const member *img;
	int h, w;
	if (layout_sample(&t->L, s, mixed_kind(s), &t->seq, &img, &h, &w, rj))
		return 1;
	chat_seq *q = &t->seq;
	uint32_t first_pad = 0, block_end = 0;
	for (size_t i = 0; i < q->n; i++)
		if (q->ids[i] == j->t.vision_end) {
			block_end = (uint32_t)i + 1;
			break;
		} else if (q->ids[i] == j->t.image_pad && !first_pad) {
			first_pad = (uint32_t)i;
		}
	int truncated = 0;
	if (q->n > j->seq_len) {
		if (!j->truncate)
			return reject_set(rj, "too_long", "%zu tokens, sequences hold %u", q->n, j->seq_len);
		if (block_end > j->seq_len)
			return reject_set(rj, "too_long", "the image alone ends at token %u of %u (%dx%d)", block_end,
					  j->seq_len, w, h);
		q->n = j->seq_len;
		truncated = 1;
	}
	int targets = 0;
	for (size_t i = 1; i < q->n; i++)
		targets += q->loss[i];
	if (!targets)
		return reject_set(rj, "no_target", "no token to learn from%s", truncated ? " after truncation" : "");
	img_rgb rgb = {0};
	if (img) {
		img_decode_opts o;
		img_decode_opts_default(&o);
		o.want_w = w;
		o.want_h = h;
		mvl_err err;
		img_rgb dec = {0};
		if (img_decode(t->ic, img->data, img->size, &o, &dec, NULL, &err) != 0)
			return reject_from_err(rj, "bad_image", err.msg);
		if (dec.w == w && dec.h == h) {
			rgb = dec;
		} else {
			int rc = img_resize(&dec, w, h, &rgb, &err);
			img_rgb_free(&dec);
			if (rc != 0)
				return reject_from_err(rj, "bad_image", err.msg);
		}
	}
	uint32_t meta[4] = {(uint32_t)h, (uint32_t)w, first_pad, (uint32_t)truncated};
	s->n = 0; /* members replaced (buffers kept) */
	sample_put(s, "pk.ids", q->ids, q->n * sizeof *q->ids);
	sample_put(s, "pk.loss", q->loss, q->n);
	sample_put(s, "pk.meta", meta, sizeof meta);
	if (img)
		sample_put(s, "pk.rgb", rgb.px, (size_t)w * h * 3);
	img_rgb_free(&rgb);
	return 0;
}

static int pack_sink(void *ctx, const sample *s, mvl_err *err)
{
	pack_job *j = ctx;
	member *ids = sample_get(s, "pk.ids"), *loss = sample_get(s, "pk.loss"), *meta = sample_get(s, "pk.meta"),
	       *rgb = sample_get(s, "pk.rgb");
	uint32_t m[4];
	memcpy(m, meta->data, sizeof m);
	pack_item *it = xcalloc(1, sizeof *it);
	it->key = xstrdup(s->key);
	it->n = (uint32_t)(ids->size / 4);
	it->ids = xmalloc(ids->size);
	memcpy(it->ids, ids->data, ids->size);
	it->loss = xmalloc(loss->size);
	memcpy(it->loss, loss->data, loss->size);
	if (rgb) {
		it->img_h = m[0];
		it->img_w = m[1];
		it->img_token = m[2];
		it->px = xmalloc(rgb->size);
		memcpy(it->px, rgb->data, rgb->size);
	}
	it->truncated = (int)m[3];
	return packer_add(j->pk, it, err);
}

static int emit(void *ctx, const pack_seq *s, mvl_err *err)
{
	return pack_writer_add(((pack_job *)ctx)->pw, s, err);
}

static int run_pack(pack_opts *o, char **args, int nargs)
{
	mvl_err err;
	recipe *r = NULL;
	bpe *b = NULL;
	pack_job j = {0};
	j.seq_len = (uint32_t)o->seq_len;
	j.min_pixels = o->min_pixels;
	j.max_pixels = o->max_pixels;
	j.truncate = !o->no_truncate;
	const char *tokfile = o->tokenizer, *encoding = o->encoding;
	if (o->recipe) {
		buf diag = {0};
		r = recipe_load(o->recipe, &diag, &err);
		if (diag.len)
			fwrite(diag.data, 1, diag.len, stderr);
		buf_free(&diag);
		if (!r) {
			fprintf(stderr, "mvl pack: %s\n", err.msg);
			return 1;
		}
		const rstage *st = o->stage ? recipe_stage(r, o->stage) : NULL;
		if (!st) {
			fprintf(stderr, "mvl pack: %s\n", o->stage ? "no such stage in the recipe" : "--recipe needs --stage");
			recipe_free(r);
			return 2;
		}
		if (!o->seq_len)
			j.seq_len = (uint32_t)st->seq_len[0];
		j.min_pixels = st->min_pixels;
		j.max_pixels = st->max_pixels;
		j.truncate = st->truncate && !o->no_truncate;
		if (!tokfile)
			tokfile = r->tok.file;
		encoding = r->tok.encoding;
	}
	if (!j.seq_len || j.seq_len < 16 || j.seq_len > (1u << 20)) {
		fprintf(stderr, "mvl pack: --seq-len in [16, 1048576] is required (or --recipe and --stage)\n");
		recipe_free(r);
		return 2;
	}
	if (!tokfile || !o->output) {
		fprintf(stderr, "mvl pack: %s is required\n", !tokfile ? "--tokenizer FILE (or a recipe naming one)" : "-o FILE");
		recipe_free(r);
		return 2;
	}
	if (!(b = bpe_open(tokfile, encoding, &err)) || chat_tokens_setup(b, &j.t, &err) != 0) {
		fprintf(stderr, "mvl pack: %s\n", err.msg);
		bpe_free(b);
		recipe_free(r);
		return 1;
	}
	j.b = b;
	stream_run sr;
	o->so.output = NULL;
	if (stream_run_open(&sr, "pack", &o->so, args, nargs, RUN_SHARDS, &err) != 0) {
		fprintf(stderr, "mvl pack: %s\n", err.msg);
		bpe_free(b);
		recipe_free(r);
		return 1;
	}
	int rc = 1;
	if (!(j.pw = pack_writer_open(o->output, j.seq_len, &err))) {
		fprintf(stderr, "mvl pack: %s\n", err.msg);
	} else {
		packer_opts po = {j.seq_len, o->window, o->open_bins, o->greedy, j.t.endoftext};
		j.pk = packer_new(&po, emit, &j);
		parallel_work w = {pack_work, &j, tls_new, tls_free, o->threads, 0, pack_sink, NULL};
		int ok = stream_run_parallel(&sr, &w) == 0;
		if (ok && sr.input_errors && !o->so.allow_damaged) {
			/* a pack missing an input's samples must not look whole,
			 * unless the user said so */
			fprintf(stderr, "mvl pack: %d input%s failed: '%s' not written (--allow-damaged writes it)\n",
				sr.input_errors, sr.input_errors == 1 ? "" : "s", o->output);
			ok = 0;
		}
		if (ok && packer_finish(j.pk, &err) != 0) {
			fprintf(stderr, "mvl pack: %s\n", err.msg);
			ok = 0;
		}
		pack_stats ps = packer_stats(j.pk);
		if (pack_writer_close(j.pw, ok, &err) != 0) {
			fprintf(stderr, "mvl pack: %s\n", err.msg);
			ok = 0;
		}
		double cap = (double)ps.sequences * j.seq_len;
		double padding = cap > 0 ? 1 - (double)ps.tokens / cap : 0;
		if (!o->so.quiet || o->stats)
			fprintf(stderr,
				"mvl pack: %llu samples -> %llu sequences of %u (%.2f samples each), padding %.2f%%, "
				"%llu truncated, %llu images\n",
				(unsigned long long)ps.samples, (unsigned long long)ps.sequences, j.seq_len,
				ps.sequences ? (double)ps.samples / (double)ps.sequences : 0, 100 * padding,
				(unsigned long long)ps.truncated, (unsigned long long)ps.images);
		if (ok && o->stats) {
			json_t *js = json_pack("{s:I,s:I,s:i,s:I,s:f,s:f,s:I,s:I,s:I,s:s}", "samples",
					       (json_int_t)ps.samples, "sequences", (json_int_t)ps.sequences, "seq_len",
					       (int)j.seq_len, "tokens", (json_int_t)ps.tokens, "padding", padding,
					       "samples_per_sequence",
					       ps.sequences ? (double)ps.samples / (double)ps.sequences : 0.0, "truncated",
					       (json_int_t)ps.truncated, "images", (json_int_t)ps.images, "rejected",
					       (json_int_t)rejects_total(sr.rj), "packer", o->greedy ? "greedy" : "bfd-window");
			if (json_save(o->stats, js, &err) != 0)
				ok = 0;
			if (!ok)
				fprintf(stderr, "mvl pack: %s\n", err.msg);
			json_decref(js);
		}
		packer_free(j.pk);
		rc = ok ? 0 : 1;
	}
	int src = stream_run_close(&sr);
	bpe_free(b);
	recipe_free(r);
	return rc ? rc : src;
}

int cmd_pack(int argc, char **argv)
{
	pack_opts o;
	const opt_spec specs[] = {
		{"recipe", 0, OPT_STR, &o.recipe, NULL, "FILE", "take seq_len, pixel bounds, truncation and tokenizer from a recipe"},
		{"stage", 0, OPT_STR, &o.stage, NULL, "NAME", "the recipe's stage"},
		{"seq-len", 0, OPT_INT, &o.seq_len, "0", "N", "tokens per sequence (default: the stage's first)"},
		{"tokenizer", 0, OPT_STR, &o.tokenizer, NULL, "FILE", ".tiktoken or tokenizer.json (default: the recipe's)"},
		{"encoding", 0, OPT_CHOICE, &o.encoding, "cl100k_base", "gpt2|r50k_base|cl100k_base|o200k_base",
		 "pattern for a .tiktoken without its .json"},
		{"min-pixels", 0, OPT_U64, &o.min_pixels, "3136", "N", "smart_resize lower bound (without a recipe)"},
		{"max-pixels", 0, OPT_U64, &o.max_pixels, "1003520", "N", "smart_resize upper bound (without a recipe)"},
		{"no-truncate", 0, OPT_FLAG, &o.no_truncate, NULL, NULL,
		 "reject samples longer than a sequence instead of cutting their text"},
		{"window", 0, OPT_INT, &o.window, "1000", "N", "samples waiting to be placed (best-fit decreasing)"},
		{"open-bins", 0, OPT_INT, &o.open_bins, "64", "N", "sequences open at once"},
		{"greedy", 0, OPT_FLAG, &o.greedy, NULL, NULL, "sequential packing (one open sequence), for comparison"},
		{"output", 'o', OPT_STR, &o.output, NULL, "FILE", "the pack file (required)"},
		{"stats", 0, OPT_STR, &o.stats, NULL, "FILE",
		 "write padding fraction, samples per sequence, truncations as JSON"},
		{"threads", 'j', OPT_INT, &o.threads, "0", "N", "worker threads (0: all cores)"},
		STREAM_INPUT_SPECS(o.so),
		{0},
	};
	const opt_cmd cmd = {
		"pack", "[OPTIONS] -o FILE [INPUT...]",
		"Turns a sample stream (what `mvl mix` writes) into fixed-length sequences for\n"
		"the trainer: each sample laid out with the chat template and its image resized\n"
		"by smart_resize into the right number of image pads, packed best-fit-decreasing\n"
		"over a bounded window, with segment ids, positions restarting per sample, the\n"
		"loss mask and the images' pixels.  Format: mixers/PACK_FORMAT.md.",
		NULL, specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	if (o.window < 1 || o.window > 1000000 || o.open_bins < 1 || o.open_bins > 100000) {
		fprintf(stderr, "mvl pack: --window must be in [1, 1000000] and --open-bins in [1, 100000]\n");
		free(args);
		return 2;
	}
	int rc = run_pack(&o, args, nargs);
	free(args);
	return rc;
}
