/* eval_cmd.c: `mvl eval`: a checkpoint on held-out sets, with test-time
 * resolution search.
 *
 * Captions (KEY.txt + image): loss and perplexity of the caption given the
 * image; retrieval accuracy (the true caption among K candidates, chosen by
 * the model's mean loss per caption token; chance is 1/K); greedy caption
 * exact match and token accuracy.  Questions (KEY.json conversations: the
 * first user turn and the first answer): greedy answer accuracy (exact
 * match after lower-casing and dropping punctuation).  Resolution search:
 * every metric at each max-pixels setting of the grid on the dev split;
 * the best setting per metric is then scored on the test split, beside
 * the default setting's score.  Every sample of a set is accounted for:
 * the report's "samples" gives per set how many were read, used and
 * skipped by reason (no image, no text, an image that does not decode, a
 * text with a special token or over MAX_TEXT_TOKENS); a set that breaks
 * mid-way (a truncated shard) fails the run. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "chat.h"
#include "commands.h"
#include "json_file.h"
#include "data.h"
#include "image.h"
#include "inputs.h"
#include "model.h"
#include "opts.h"
#include "shard_reader.h"
#include "train.h"

typedef struct eval_opts {
	const char *ckpt, *tokenizer, *encoding, *cap_dev, *cap_test, *qa_dev, *qa_test, *grid, *report;
	int k, max_samples, max_tokens;
	uint64_t min_pixels, default_pixels;
} eval_opts;

/* one held-out sample, decoded once; resized per resolution */
typedef struct item {
	char *key;
	img_rgb img;     /* as decoded (orientation applied) */
	char *text;      /* caption, or the question */
	char *answer;    /* QA: the reference answer */
} item;

typedef struct ev {
	model *m;
	bpe *b;
	bpe_ctx *bc;
	chat_tokens t;
	const eval_opts *o;
} ev;

/* ---------------------------------------------------------------------- */
/* reading */

/* Why a held-out sample was not used: each is counted and reported, so
 * a set that lost half its samples does not pass for a whole one. */
enum { SKIP_UNREADABLE, SKIP_NO_IMAGE, SKIP_NO_TEXT, SKIP_BAD_IMAGE, SKIP_BAD_TEXT, SKIP_TOO_LONG, NSKIP };
static const char *const skip_names[NSKIP] = {"unreadable", "no_image", "no_text", "bad_image", "bad_text", "too_long"};

/* a text longer than this many tokens (its image aside) is not scored:
 * one forward over it would cost memory quadratic in it */
enum { MAX_TEXT_TOKENS = 1024 };

typedef struct set_count {
	uint64_t read, used, skipped[NSKIP];
} set_count;

/* whether text encodes as a caption (qa 0) or a question: no special
 * token inside, not too long */
static int text_skip(ev *e, const char *text, int qa)
{
	chat_seq seq = {0};
	mvl_err er;
	int rc = qa ? chat_question(e->b, e->bc, &e->t, text, 0, 0, &seq, &er)
		    : chat_caption(e->b, e->bc, &e->t, text, strlen(text), 0, 0, &seq, &er);
	int why = rc != 0 ? SKIP_BAD_TEXT : seq.n > MAX_TEXT_TOKENS ? SKIP_TOO_LONG : -1;
	chat_seq_free(&seq);
	return why;
}

static int read_items(ev *e, const char *pattern, int qa, int max, item **out, int *n, set_count *cnt, mvl_err *err)
{
	inputs in = {0};
	*n = 0;
	*out = NULL;
	if (inputs_expand(&in, pattern, err) != 0 || inputs_shard_dirs(&in, err) != 0) {
		inputs_free(&in);
		return -1;
	}
	reader_opts ro = {0};
	shard_reader *rd = shard_reader_new(in.path, in.n, &ro);
	img_ctx *ic = img_ctx_new();
	sample s;
	sample_init(&s);
	int cap = 0, rc = 0;
	for (;;) {
		reject_info rj;
		mvl_err er;
		int r = shard_reader_next(rd, &s, &rj, &er);
		if (r == READ_END || (max && *n >= max))
			break;
		if (r != READ_INPUT_ERROR)
			cnt->read++;
		if (r == READ_INPUT_ERROR || r == READ_BROKEN) {
			/* a held-out set read in part would score as if whole */
			if (r == READ_BROKEN)
				cnt->skipped[SKIP_UNREADABLE]++;
			rc = mvl_errf(err, "%s", er.msg);
			break;
		}
		if (r != READ_SAMPLE) {
			cnt->skipped[SKIP_UNREADABLE]++;
			continue;
		}
		member *im = sample_image(&s, NULL);
		item it = {0};
		if (qa) {
			member *j = sample_get(&s, "json");
			json_t *root = j ? json_loadb((const char *)j->data, j->size, 0, NULL) : NULL;
			json_t *conv = json_object_get(root, "conversations");
			const char *q = json_string_value(json_object_get(json_array_get(conv, 0), "value"));
			const char *a = json_string_value(json_object_get(json_array_get(conv, 1), "value"));
			if (q && a) {
				const char *ph = strstr(q, "<image>");
				if (ph)
					q = ph + 7 + (ph[7] == '\n');
				it.text = xstrdup(q);
				it.answer = xstrdup(a);
			}
			json_decref(root);
		} else {
			member *txt = sample_get(&s, "txt");
			if (txt && txt->size)
				it.text = xstrndup((const char *)txt->data, txt->size);
		}
		int why = -1;
		img_decode_opts dopts;
		img_decode_opts_default(&dopts);
		if (!im)
			why = SKIP_NO_IMAGE;
		else if (!it.text)
			why = SKIP_NO_TEXT;
		else if ((why = text_skip(e, it.text, qa)) >= 0)
			;
		else if (img_decode(ic, im->data, im->size, &dopts, &it.img, NULL, &er) != 0)
			why = SKIP_BAD_IMAGE;
		if (why >= 0) {
			cnt->skipped[why]++;
			free(it.text);
			free(it.answer);
			img_rgb_free(&it.img);
			continue;
		}
		it.key = xstrdup(s.key);
		if (*n == cap) {
			cap = cap ? 2 * cap : 64;
			*out = xrealloc(*out, (size_t)cap * sizeof **out);
		}
		(*out)[(*n)++] = it;
		cnt->used++;
	}
	sample_free(&s);
	img_ctx_free(ic);
	shard_reader_free(rd);
	inputs_free(&in);
	if (rc == 0 && !*n)
		rc = mvl_errf(err, "'%s': no usable %s sample (%llu read)", pattern, qa ? "question" : "caption",
			      (unsigned long long)cnt->read);
	return rc;
}

/* the counts as {read, used, skipped: {reason: n}}, and a line on stderr
 * when something was skipped */
static json_t *set_count_json(const set_count *c, const char *pattern)
{
	json_t *sk = json_object();
	buf line = {0};
	for (int k = 0; k < NSKIP; k++)
		if (c->skipped[k]) {
			json_object_set_new(sk, skip_names[k], json_integer((json_int_t)c->skipped[k]));
			buf_printf(&line, "%s%s %llu", line.len ? ", " : "", skip_names[k], (unsigned long long)c->skipped[k]);
		}
	if (line.len)
		fprintf(stderr, "mvl eval: '%s': %llu samples, %llu used, %llu skipped (%s)\n", pattern,
			(unsigned long long)c->read, (unsigned long long)c->used,
			(unsigned long long)(c->read - c->used), (char *)line.data);
	buf_free(&line);
	return json_pack("{s:I,s:I,s:o}", "read", (json_int_t)c->read, "used", (json_int_t)c->used, "skipped", sk);
}

static void free_items(item *it, int n)
{
	for (int i = 0; i < n; i++) {
		free(it[i].key);
		free(it[i].text);
		free(it[i].answer);
		img_rgb_free(&it[i].img);
	}
	free(it);
}

/* ---------------------------------------------------------------------- */
/* scoring */

static int resized(const item *it, uint64_t minp, uint64_t maxp, img_rgb *out, mvl_err *err)
{
	int h, w;
	if (smart_resize(it->img.h, it->img.w, 28, minp, maxp, &h, &w, err) != 0)
		return -1;
	return img_resize(&it->img, w, h, out, err);
}

/* mean loss per caption token of text after image im, for each of n texts */
static int score(ev *e, const img_rgb *im, char **texts, int n, double *mean, mvl_err *err)
{
	chat_seq *seq = xcalloc((size_t)n, sizeof *seq);
	int rc = 0, L = 0;
	for (int i = 0; i < n && rc == 0; i++) {
		rc = chat_caption(e->b, e->bc, &e->t, texts[i], strlen(texts[i]), im->h, im->w, &seq[i], err);
		L = (int)seq[i].n > L ? (int)seq[i].n : L;
	}
	batch_buf bb = {0};
	double *sl = xcalloc((size_t)n, sizeof *sl);
	if (rc == 0) {
		batch_alloc(&bb, n, L);
		for (int i = 0; i < n; i++) {
			int first = -1;
			for (int t = 0; t < L; t++) {
				size_t r = (size_t)i * L + t;
				int in = t < (int)seq[i].n;
				bb.ids[r] = in ? seq[i].ids[t] : e->t.endoftext;
				bb.loss[r] = in ? seq[i].loss[t] : 0;
				bb.seg[r] = in;
				bb.pos[r] = in ? (uint32_t)t : 0;
				if (in && first < 0 && seq[i].ids[t] == e->t.image_pad)
					first = t;
			}
			uint8_t *px = batch_add_image(&bb, i, first, im->h, im->w);
			memcpy(px, im->px, (size_t)im->h * im->w * 3);
		}
		mbatch mb = {n, L, bb.ids, bb.pos, bb.seg, bb.loss, bb.img, bb.nimg, e->t.image_pad, sl};
		double tot;
		uint64_t cnt;
		rc = model_step(e->m, &mb, 0, 1.0f, &tot, &cnt, err);
		for (int i = 0; rc == 0 && i < n; i++) {
			int targets = 0;
			for (size_t t = 1; t < seq[i].n; t++)
				targets += seq[i].loss[t];
			mean[i] = targets ? sl[i] / targets : 0;
		}
		batch_free(&bb);
	}
	for (int i = 0; i < n; i++)
		chat_seq_free(&seq[i]);
	free(seq);
	free(sl);
	return rc;
}

/* lower case, letters and digits and single spaces only */
static void normalize_answer(const char *s, buf *out)
{
	out->len = 0;
	int space = 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (isalnum(c) || c >= 0x80) {
			if (space && out->len)
				buf_append(out, " ", 1);
			space = 0;
			char l = (char)tolower(c);
			buf_append(out, &l, 1);
		} else {
			space = 1;
		}
	}
	buf_append(out, "", 0);
	out->len--;
}

/* greedy continuation (caption mode: after the image; chat: the answer) */
static int greedy(ev *e, const img_rgb *im, const char *prompt, int chat, buf *out, mvl_err *err)
{
	chat_seq seq = {0};
	int rc;
	if (chat) {
		rc = chat_question(e->b, e->bc, &e->t, prompt, im->h, im->w, &seq, err);
	} else {
		rc = chat_caption(e->b, e->bc, &e->t, "", 0, im->h, im->w, &seq, err);
		seq.n--; /* no <|endoftext|>: the caption follows */
	}
	if (rc != 0) {
		chat_seq_free(&seq);
		return -1;
	}
	int n = (int)seq.n, first = -1;
	uint32_t *pos = xmalloc((size_t)n * 4), *sg = xmalloc((size_t)n * 4);
	uint8_t *loss = xcalloc((size_t)n, 1);
	for (int i = 0; i < n; i++) {
		pos[i] = (uint32_t)i;
		sg[i] = 1;
		if (first < 0 && seq.ids[i] == e->t.image_pad)
			first = i;
	}
	mimage mi = {0, first, im->h, im->w, im->px};
	mbatch mb = {1, n, seq.ids, pos, sg, loss, &mi, 1, e->t.image_pad, NULL};
	uint32_t stop[2] = {e->t.im_end, e->t.endoftext}, *gen = xmalloc((size_t)e->o->max_tokens * 4);
	int ng = 0;
	gen_opts g = {.max_new = e->o->max_tokens, .stop = stop, .nstop = 2, .top_p = 1,
		      .ids = (int)bpe_vocab_size(e->b)};
	rc = model_generate(e->m, &mb, &g, gen, &ng, err);
	if (rc == 0 && ng && (gen[ng - 1] == e->t.im_end || gen[ng - 1] == e->t.endoftext))
		ng--;
	out->len = 0;
	if (rc == 0)
		rc = bpe_decode(e->b, gen, (size_t)ng, out, err);
	buf_append(out, "", 0);
	out->len--;
	free(gen);
	free(pos);
	free(sg);
	free(loss);
	chat_seq_free(&seq);
	return rc;
}

/* the metrics of one split at one resolution */
typedef struct scores {
	double loss, retrieval, caption_em, token_acc, qa;
	int has_cap, has_qa;
} scores;

static int eval_split(ev *e, item *cap, int ncap, item *qa, int nqa, uint64_t maxp, scores *s, mvl_err *err)
{
	memset(s, 0, sizeof *s);
	int K = e->o->k < ncap ? e->o->k : ncap;
	buf g = {0}, ref = {0}, got = {0};
	int rc = 0;
	if (ncap) {
		s->has_cap = 1;
		double lsum = 0;
		int right = 0, em = 0;
		double tacc = 0;
		char **cands = xcalloc((size_t)K, sizeof *cands);
		double *mean = xcalloc((size_t)K, sizeof *mean);
		for (int i = 0; i < ncap && rc == 0; i++) {
			img_rgb im = {0};
			if ((rc = resized(&cap[i], e->o->min_pixels, maxp, &im, err)) != 0)
				break;
			/* the true caption first, then the next K-1 samples' captions */
			for (int j = 0; j < K; j++)
				cands[j] = cap[(i + j) % ncap].text;
			rc = score(e, &im, cands, K, mean, err);
			if (rc == 0) {
				lsum += mean[0];
				int best = 0;
				for (int j = 1; j < K; j++)
					if (mean[j] < mean[best])
						best = j;
				right += best == 0;
				rc = greedy(e, &im, "", 0, &g, err);
			}
			if (rc == 0) {
				normalize_answer(cap[i].text, &ref);
				normalize_answer((char *)g.data, &got);
				em += !strcmp((char *)ref.data, (char *)got.data);
				/* token accuracy: words in place */
				int same = 0, nr = 0;
				const char *a = (char *)ref.data, *b = (char *)got.data;
				while (*a) {
					size_t la = strcspn(a, " "), lb = strcspn(b, " ");
					same += la == lb && !strncmp(a, b, la);
					nr++;
					a += la + (a[la] == ' ');
					b += lb + (b[lb] == ' ');
				}
				tacc += nr ? (double)same / nr : 0;
			}
			img_rgb_free(&im);
		}
		s->loss = lsum / ncap;
		s->retrieval = (double)right / ncap;
		s->caption_em = (double)em / ncap;
		s->token_acc = tacc / ncap;
		free(cands);
		free(mean);
	}
	if (nqa && rc == 0) {
		s->has_qa = 1;
		int right = 0;
		for (int i = 0; i < nqa && rc == 0; i++) {
			img_rgb im = {0};
			if ((rc = resized(&qa[i], e->o->min_pixels, maxp, &im, err)) != 0)
				break;
			rc = greedy(e, &im, qa[i].text, 1, &g, err);
			if (rc == 0) {
				normalize_answer(qa[i].answer, &ref);
				normalize_answer((char *)g.data, &got);
				right += !strcmp((char *)ref.data, (char *)got.data);
			}
			img_rgb_free(&im);
		}
		s->qa = (double)right / nqa;
	}
	buf_free(&g);
	buf_free(&ref);
	buf_free(&got);
	return rc;
}

/* ---------------------------------------------------------------------- */

static json_t *scores_json(const scores *s)
{
	json_t *j = json_object();
	if (s->has_cap) {
		json_object_set_new(j, "caption_loss", json_real(s->loss));
		json_object_set_new(j, "perplexity", json_real(exp(s->loss)));
		json_object_set_new(j, "retrieval_accuracy", json_real(s->retrieval));
		json_object_set_new(j, "caption_exact_match", json_real(s->caption_em));
		json_object_set_new(j, "caption_token_accuracy", json_real(s->token_acc));
	}
	if (s->has_qa)
		json_object_set_new(j, "qa_accuracy", json_real(s->qa));
	return j;
}

static int run_eval(const eval_opts *o)
{
	mvl_err err;
	ev e = {.o = o};
	item *cd = NULL, *ct = NULL, *qd = NULL, *qt = NULL;
	int ncd = 0, nct = 0, nqd = 0, nqt = 0, rc = 1;
	uint64_t grid[32];
	int ng = 0;
	json_t *rep = json_object(), *gridj = json_array();
	char *wp = ckpt_weights(o->ckpt, &err);
	e.m = wp ? model_load_new(wp, &err) : NULL;
	if (!e.m)
		goto done;
	if (!(e.b = bpe_open(o->tokenizer, o->encoding, &err)) || chat_tokens_setup(e.b, &e.t, &err) != 0)
		goto done;
	if (bpe_vocab_size(e.b) > (size_t)e.m->c.vocab) {
		mvl_errf(&err, "the tokenizer '%s' has %zu ids, the model '%s' only %d: not the tokenizer it was trained with",
			 o->tokenizer, bpe_vocab_size(e.b), wp, e.m->c.vocab);
		goto done;
	}
	e.bc = bpe_ctx_new(e.b);
	for (const char *p = o->grid; p && *p && ng < 32;) {
		char *end;
		unsigned long long v = strtoull(p, &end, 10);
		if (end == p || v < 784) {
			mvl_errf(&err, "--resolutions: pixel counts >= 784, comma-separated");
			goto done;
		}
		grid[ng++] = v;
		p = *end == ',' ? end + 1 : end;
	}
	set_count cnt[4] = {{0}};
	if ((o->cap_dev && read_items(&e, o->cap_dev, 0, o->max_samples, &cd, &ncd, &cnt[0], &err) != 0) ||
	    (o->cap_test && read_items(&e, o->cap_test, 0, o->max_samples, &ct, &nct, &cnt[1], &err) != 0) ||
	    (o->qa_dev && read_items(&e, o->qa_dev, 1, o->max_samples, &qd, &nqd, &cnt[2], &err) != 0) ||
	    (o->qa_test && read_items(&e, o->qa_test, 1, o->max_samples, &qt, &nqt, &cnt[3], &err) != 0))
		goto done;
	json_t *sets = json_object();
	const char *const set_names[4] = {"captions_dev", "captions_test", "qa_dev", "qa_test"};
	const char *const set_paths[4] = {o->cap_dev, o->cap_test, o->qa_dev, o->qa_test};
	for (int k = 0; k < 4; k++)
		if (set_paths[k])
			json_object_set_new(sets, set_names[k], set_count_json(&cnt[k], set_paths[k]));
	json_object_set_new(rep, "samples", sets);
	if (!ncd && !nct && !nqd && !nqt) {
		mvl_errf(&err, "give held-out sets: --captions-dev/--captions-test and/or --qa-dev/--qa-test");
		goto done;
	}
	/* the search on dev */
	const char *names[4] = {"retrieval_accuracy", "caption_exact_match", "qa_accuracy", "caption_loss"};
	double best[4] = {-1, -1, -1, 1e300};
	uint64_t at[4] = {o->default_pixels, o->default_pixels, o->default_pixels, o->default_pixels};
	printf("%-12s %10s %10s %10s %10s %10s\n", "max_pixels", "loss", "retrieval", "caption_em", "token_acc", "qa");
	for (int g = 0; g < ng && (ncd || nqd); g++) {
		scores s;
		if (eval_split(&e, cd, ncd, qd, nqd, grid[g], &s, &err) != 0)
			goto done;
		printf("%-12llu %10.4f %10.4f %10.4f %10.4f %10.4f  (dev)\n", (unsigned long long)grid[g], s.loss,
		       s.retrieval, s.caption_em, s.token_acc, s.qa);
		json_t *j = scores_json(&s);
		json_object_set_new(j, "max_pixels", json_integer((json_int_t)grid[g]));
		json_array_append_new(gridj, j);
		double v[4] = {s.retrieval, s.caption_em, s.qa, s.loss};
		for (int k = 0; k < 3; k++)
			if (v[k] > best[k]) {
				best[k] = v[k];
				at[k] = grid[g];
			}
		if (s.has_cap && v[3] < best[3]) {
			best[3] = v[3];
			at[3] = grid[g];
		}
	}
	json_object_set_new(rep, "dev_grid", gridj);
	gridj = NULL;
	/* test: the default setting and each metric's chosen one */
	json_t *test = json_object();
	scores sd;
	if (eval_split(&e, ct, nct, qt, nqt, o->default_pixels, &sd, &err) != 0)
		goto done;
	json_object_set_new(test, "default", scores_json(&sd));
	json_object_set_new(test, "default_max_pixels", json_integer((json_int_t)o->default_pixels));
	printf("\ntest at the default %llu pixels: loss %.4f retrieval %.4f caption_em %.4f qa %.4f\n",
	       (unsigned long long)o->default_pixels, sd.loss, sd.retrieval, sd.caption_em, sd.qa);
	json_t *chosen = json_object();
	for (int k = 0; k < 4; k++) {
		scores s;
		if ((k == 2 ? !nqt : !nct) || !ng)
			continue;
		if (eval_split(&e, k == 2 ? NULL : ct, k == 2 ? 0 : nct, k == 2 ? qt : NULL, k == 2 ? nqt : 0, at[k], &s,
			       &err) != 0)
			goto done;
		double v = k == 0 ? s.retrieval : k == 1 ? s.caption_em : k == 2 ? s.qa : s.loss;
		double dv = k == 0 ? sd.retrieval : k == 1 ? sd.caption_em : k == 2 ? sd.qa : sd.loss;
		printf("test %-20s at the dev-chosen %llu pixels: %.4f (default: %.4f)\n", names[k], (unsigned long long)at[k],
		       v, dv);
		json_object_set_new(chosen, names[k], json_pack("{s:I,s:f,s:f}", "max_pixels", (json_int_t)at[k], "score", v,
								  "default_score", dv));
	}
	json_object_set_new(test, "chosen", chosen);
	json_object_set_new(rep, "test", test);
	json_object_set_new(rep, "retrieval_candidates", json_integer(o->k));
	if (o->report) {
		if (json_save(o->report, rep, &err) != 0)
			goto done;
	}
	rc = 0;
done:
	if (rc)
		fprintf(stderr, "mvl eval: %s\n", err.msg);
	json_decref(gridj);
	json_decref(rep);
	free_items(cd, ncd);
	free_items(ct, nct);
	free_items(qd, nqd);
	free_items(qt, nqt);
	bpe_ctx_free(e.bc);
	bpe_free(e.b);
	model_free(e.m);
	free(wp);
	return rc;
}

int cmd_eval(int argc, char **argv)
{
	eval_opts o;
	const opt_spec specs[] = {
		{"ckpt", 0, OPT_STR, &o.ckpt, NULL, "CKPT", "checkpoint directory, run directory or model.safetensors"},
		{"tokenizer", 0, OPT_STR, &o.tokenizer, NULL, "FILE", "the tokenizer it was trained with"},
		{"encoding", 0, OPT_CHOICE, &o.encoding, "cl100k_base", "gpt2|r50k_base|cl100k_base|o200k_base",
		 "pattern for a .tiktoken without its .json"},
		{"captions-dev", 0, OPT_STR, &o.cap_dev, NULL, "SHARDS", "held-out captions for the resolution search"},
		{"captions-test", 0, OPT_STR, &o.cap_test, NULL, "SHARDS", "held-out captions scored at the chosen setting"},
		{"qa-dev", 0, OPT_STR, &o.qa_dev, NULL, "SHARDS", "held-out questions (conversations) for the search"},
		{"qa-test", 0, OPT_STR, &o.qa_test, NULL, "SHARDS", "held-out questions scored at the chosen setting"},
		{"resolutions", 0, OPT_STR, &o.grid, "12544,25088,50176,100352", "LIST", "max-pixels grid searched on dev"},
		{"default-pixels", 0, OPT_U64, &o.default_pixels, "50176", "N", "the setting the search is compared with"},
		{"min-pixels", 0, OPT_U64, &o.min_pixels, "3136", "N", "smart_resize lower bound"},
		{"candidates", 'k', OPT_INT, &o.k, "8", "K", "captions per retrieval question (chance 1/K)"},
		{"max-samples", 0, OPT_INT, &o.max_samples, "0", "N", "at most N samples per set (0: all)"},
		{"max-tokens", 0, OPT_INT, &o.max_tokens, "48", "N", "greedy generation length limit"},
		{"report", 0, OPT_STR, &o.report, NULL, "FILE", "every figure as JSON"},
		{0},
	};
	const opt_cmd cmd = {
		"eval", "--ckpt CKPT --tokenizer FILE [SETS] [OPTIONS]",
		"Scores a checkpoint on held-out captions (loss, perplexity, retrieval among K\n"
		"candidates, greedy caption exact match and token accuracy) and questions\n"
		"(greedy answer accuracy), searching the test-time resolution on dev.",
		NULL, specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	free(args);
	if (!o.ckpt || !o.tokenizer || o.k < 2 || o.max_tokens < 1 || o.max_samples < 0) {
		fprintf(stderr, "mvl eval: --ckpt and --tokenizer are required; --candidates >= 2\nsee 'mvl eval --help'\n");
		return 2;
	}
	return run_eval(&o);
}
