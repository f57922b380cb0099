/* generate_cmd.c: `mvl generate`: what a checkpoint says about an image. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "chat.h"
#include "commands.h"
#include "image.h"
#include "model.h"
#include "opts.h"
#include "train.h"
#include "data.h"

typedef struct generate_cmd_opts {
	const char *ckpt, *tokenizer, *encoding, *image, *prompt, *mode;
	int max_tokens;
	double temperature, top_p;
	uint64_t seed, min_pixels, max_pixels;
} generate_cmd_opts;

/* the prompt's forward costs time quadratic in its length: a prompt far
 * beyond any training length is refused rather than run for hours */
enum { MAX_PROMPT_TOKENS = 8192 };

static int load_image(const generate_cmd_opts *o, img_rgb *out, mvl_err *err)
{
	buf data = {0};
	if (read_file(o->image, (size_t)1 << 30, &data, err) != 0)
		return -1;
	img_ctx *ic = img_ctx_new();
	img_decode_opts dopts;
	img_decode_opts_default(&dopts);
	img_rgb dec = {0};
	int rc = img_decode(ic, data.data, data.len, &dopts, &dec, NULL, err);
	int h = 0, w = 0;
	if (rc == 0)
		rc = smart_resize(dec.h, dec.w, 28, o->min_pixels, o->max_pixels, &h, &w, err);
	if (rc == 0)
		rc = img_resize(&dec, w, h, out, err);
	img_rgb_free(&dec);
	img_ctx_free(ic);
	buf_free(&data);
	if (rc)
		mvl_errprefix(err, "'%s'", o->image);
	return rc;
}

static int run_generate(const generate_cmd_opts *o)
{
	mvl_err err;
	int rc = 1;
	char *wp = ckpt_weights(o->ckpt, &err);
	model *m = wp ? model_load_new(wp, &err) : NULL;
	bpe *b = NULL;
	bpe_ctx *bc = NULL;
	chat_tokens t;
	chat_seq seq = {0};
	img_rgb im = {0};
	uint32_t *out = NULL, *pos = NULL, *segv = NULL;
	uint8_t *loss = NULL;
	buf text = {0};
	if (!m)
		goto done;
	if (!(b = bpe_open(o->tokenizer, o->encoding, &err)) || chat_tokens_setup(b, &t, &err) != 0)
		goto done;
	if (bpe_vocab_size(b) > (size_t)m->c.vocab) {
		mvl_errf(&err, "the tokenizer '%s' has %zu ids, the model '%s' only %d: not the tokenizer it was trained with",
			 o->tokenizer, bpe_vocab_size(b), wp, m->c.vocab);
		goto done;
	}
	bc = bpe_ctx_new(b);
	if (o->image && load_image(o, &im, &err) != 0)
		goto done;
	const char *prompt = o->prompt ? o->prompt : "";
	int chat = !strcmp(o->mode, "chat");
	if (chat) {
		if (chat_question(b, bc, &t, prompt, im.h, im.w, &seq, &err) != 0)
			goto done;
	} else if (chat_caption(b, bc, &t, prompt, strlen(prompt), im.h, im.w, &seq, &err) != 0) {
		goto done;
	} else {
		seq.n--; /* the caption continues: no <|endoftext|> yet */
	}
	if (seq.n > MAX_PROMPT_TOKENS) {
		mvl_errf(&err, "the prompt is %zu tokens, more than the %d a prompt may have", seq.n, MAX_PROMPT_TOKENS);
		goto done;
	}
	int n = (int)seq.n;
	pos = xmalloc((size_t)n * sizeof *pos);
	segv = xmalloc((size_t)n * sizeof *segv);
	loss = xcalloc((size_t)n, 1);
	int first_pad = -1;
	for (int i = 0; i < n; i++) {
		pos[i] = (uint32_t)i;
		segv[i] = 1;
		if (first_pad < 0 && seq.ids[i] == t.image_pad)
			first_pad = i;
	}
	mimage mi = {0, first_pad, im.h, im.w, im.px};
	mbatch mb = {1, n, seq.ids, pos, segv, loss, &mi, im.px ? 1 : 0, t.image_pad, NULL};
	uint32_t stop[2] = {t.im_end, t.endoftext};
	out = xmalloc((size_t)(o->max_tokens + 1) * sizeof *out);
	int nout;
	gen_opts g = {o->max_tokens, stop, 2, (float)o->temperature, (float)o->top_p, o->seed, (int)bpe_vocab_size(b)};
	if (model_generate(m, &mb, &g, out, &nout, &err) != 0)
		goto done;
	if (nout && (out[nout - 1] == t.im_end || out[nout - 1] == t.endoftext))
		nout--;
	if (bpe_decode(b, out, (size_t)nout, &text, &err) != 0)
		goto done;
	fwrite(text.data, 1, text.len, stdout);
	fputc('\n', stdout);
	rc = 0;
done:
	if (rc)
		fprintf(stderr, "mvl generate: %s\n", err.msg);
	buf_free(&text);
	free(out);
	free(pos);
	free(segv);
	free(loss);
	img_rgb_free(&im);
	chat_seq_free(&seq);
	bpe_ctx_free(bc);
	bpe_free(b);
	model_free(m);
	free(wp);
	return rc;
}

int cmd_generate(int argc, char **argv)
{
	generate_cmd_opts o;
	const opt_spec specs[] = {
		{"ckpt", 0, OPT_STR, &o.ckpt, NULL, "CKPT", "a checkpoint directory (its latest) or model.safetensors (required)"},
		{"tokenizer", 0, OPT_STR, &o.tokenizer, NULL, "FILE", "the tokenizer it was trained with (required)"},
		{"encoding", 0, OPT_CHOICE, &o.encoding, "cl100k_base", "gpt2|r50k_base|cl100k_base|o200k_base",
		 "pattern for a .tiktoken without its .json"},
		{"image", 0, OPT_STR, &o.image, NULL, "FILE", "an image (JPEG, PNG, WebP)"},
		{"prompt", 0, OPT_STR, &o.prompt, NULL, "TEXT", "the user's question (chat) or the caption's start (caption)"},
		{"mode", 0, OPT_CHOICE, &o.mode, "chat", "chat|caption",
		 "answer as the assistant of a conversation, or continue a caption"},
		{"max-tokens", 0, OPT_INT, &o.max_tokens, "64", "N", "new tokens at most"},
		{"temperature", 0, OPT_DOUBLE, &o.temperature, "0", "T", "0: greedy; else sampling"},
		{"top-p", 0, OPT_DOUBLE, &o.top_p, "0.9", "P", "nucleus sampling mass (with a temperature)"},
		{"seed", 0, OPT_U64, &o.seed, "1", "N", "sampling seed"},
		{"min-pixels", 0, OPT_U64, &o.min_pixels, "3136", "N", "smart_resize lower bound"},
		{"max-pixels", 0, OPT_U64, &o.max_pixels, "1003520", "N", "smart_resize upper bound"},
		{0},
	};
	const opt_cmd cmd = {
		"generate", "--ckpt CKPT --tokenizer FILE [--image FILE] [--prompt TEXT] [OPTIONS]",
		"Runs a trained checkpoint on an image and a prompt, greedy or with top-p\n"
		"sampling, with a KV cache; prints the generated text.",
		NULL, specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	free(args);
	if (!o.ckpt || !o.tokenizer || o.max_tokens < 1 || o.temperature < 0 || o.top_p <= 0 || o.top_p > 1) {
		fprintf(stderr, "mvl generate: --ckpt and --tokenizer are required; --max-tokens >= 1, --temperature >= 0, "
				"0 < --top-p <= 1\nsee 'mvl generate --help'\n");
		return 2;
	}
	return run_generate(&o);
}
