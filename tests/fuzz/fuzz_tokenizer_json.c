/* fuzz_tokenizer_json.c: Hugging Face tokenizer.json files (model BPE,
 * merges in both formats, added tokens, normalizer and pre-tokenizer
 * choices); a file that loads then encodes, with special tokens allowed,
 * and decodes a fixed text. */
#include <stdlib.h>

#include "bpe.h"
#include "fuzz.h"

static const char text[] = "Hello, world! <|endoftext|> 12345 caf\xc3\xa9 \xff\xfe  \n\tend<s>";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mvl_err err;
	bpe *b = bpe_load_hf(fuzz_file(".json", data, size), &err);
	if (!b)
		return 0;
	bpe_ctx *c = bpe_ctx_new(b);
	uint32_t *ids = NULL;
	size_t cap = 0, len = 0;
	if (bpe_encode(b, c, text, sizeof text - 1, BPE_SPECIAL_ALLOW, &ids, &cap, &len, &err) == 0) {
		buf out = {0};
		bpe_decode(b, ids, len, &out, &err);
		buf_free(&out);
	}
	free(ids);
	bpe_ctx_free(c);
	bpe_free(b);
	return 0;
}
