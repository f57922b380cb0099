/* fuzz_sample_json.c: KEY.json of a sample as the stages read it: the
 * caption or conversation text (sample_caption), metadata written back
 * (sample_json_set), the clean filter's checks, and the packer's layout
 * (mixers/layout.c), whose chat template turns "conversations" into token
 * ids and a loss mask. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "layout.h"
#include "filter.h"
#include "fuzz.h"
#include "sample.h"
#include "sample_text.h"

/* a byte-level vocabulary (256 single bytes, one merge) as a rank file */
static bpe *small_bpe(void)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char ranks[256 * 12 + 32], *p = ranks;
	for (int c = 0; c < 256; c++)
		p += sprintf(p, "%c%c== %d\n", b64[c >> 2], b64[(c & 3) << 4], c);
	p += sprintf(p, "aGU= 256\n");
	mvl_err err;
	bpe *b = bpe_load_tiktoken(fuzz_file(".tiktoken", (const uint8_t *)ranks, (size_t)(p - ranks)),
				   bpe_pattern("cl100k_base"), &err);
	if (!b) {
		fprintf(stderr, "fuzz_sample_json: %s\n", err.msg);
		abort();
	}
	return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* built once: loading them is not what is fuzzed here */
	static bpe *b;
	static bpe_ctx *ctx;
	static chat_tokens t;
	static filter_chain *chain;
	mvl_err err;
	if (!b) {
		b = small_bpe();
		ctx = bpe_ctx_new(b);
		chain = filter_chain_parse("clean", &err);
		if (!b || !chain || chat_tokens_setup(b, &t, &err) != 0 || filter_chain_open(chain, 0, &err) != 0) {
			fprintf(stderr, "fuzz_sample_json: %s\n", err.msg);
			abort();
		}
	}

	sample s;
	sample_init(&s);
	sample_set_key(&s, "k", 1);
	sample_put(&s, "json", data, size);
	buf scratch = {0};
	size_t n = 0;
	int bad = 0;
	sample_caption(&s, &scratch, &n, &bad);

	layout L = {.b = b, .c = ctx, .t = &t, .min_pixels = 28 * 28, .max_pixels = 256 * 28 * 28};
	chat_seq seq = {0};
	const member *img;
	int h, w;
	reject_info lrj;
	layout_sample(&L, &s, -1, &seq, &img, &h, &w, &lrj);
	chat_seq_free(&seq);
	buf_free(&L.scratch);

	chain_tls *tls = chain_tls_new(chain);
	reject_info rj;
	if (filter_chain_apply(chain, tls, &s, &rj) == 0)
		filter_chain_ordered(chain, &s, &rj);
	chain_tls_merge(chain, tls);

	sample_json_set(&s, "fuzz", json_integer(1));
	buf_free(&scratch);
	sample_free(&s);
	return 0;
}
