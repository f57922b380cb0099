/* fuzz_safetensors.c: checkpoint files: the 8-byte header length, the
 * JSON header (dtypes, shapes, data offsets, __metadata__) and the data
 * it points into; every tensor of a file that opens is read end to end. */
#include "fuzz.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mvl_err err;
	st_file *f = st_open(fuzz_file(".safetensors", data, size), &err);
	if (!f)
		return 0;
	uint64_t sum = 0;
	for (int i = 0; i < st_count(f); i++) {
		const st_tensor *t = st_at(f, i);
		int64_t n = 1;
		for (int d = 0; d < t->ndim; d++)
			n *= t->shape[d];
		if (n > 0)
			/* as bytes: a float from the file may be NaN */
			sum += ((const uint8_t *)t->data)[0] + ((const uint8_t *)(t->data + n))[-1];
		st_get(f, t->name);
	}
	st_meta(f, "format");
	st_close(f);
	fuzz_sink = sum; /* the reads must happen */
	return 0;
}
