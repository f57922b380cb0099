/* fuzz_tiktoken.c: .tiktoken rank files (base64 token, space, rank per
 * line); a file that loads then encodes and decodes a fixed text. */
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "fuzz.h"

static const char text[] = "Hello, world! <|endoftext|> 12345 caf\xc3\xa9 \xff\xfe  \n\tend";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mvl_err err;
	bpe *b = bpe_load_tiktoken(fuzz_file(".tiktoken", data, size), bpe_pattern("gpt2"), &err);
	if (!b)
		return 0;
	bpe_ctx *c = bpe_ctx_new(b);
	uint32_t *ids = NULL;
	size_t cap = 0, len = 0;
	/* a vocabulary without all 256 bytes cannot encode everything: that
	 * must be an error or a skip, never a read outside the table */
	bpe_encode_ordinary(b, c, text, sizeof text - 1, &ids, &cap, &len);
	buf out = {0};
	bpe_decode(b, ids, len, &out, &err);
	buf_free(&out);
	free(ids);
	bpe_ctx_free(c);
	bpe_free(b);
	return 0;
}
