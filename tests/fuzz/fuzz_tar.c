/* fuzz_tar.c: WebDataset shards as shard_reader meets them: the tar layer
 * (ustar, pax, GNU long names and base-256 sizes), the zstd / gzip / other
 * compressed streams recognised from content, and grouping members into
 * samples (keys, extensions, unsafe names, duplicates, oversize members). */
#include <stdlib.h>

#include "fuzz.h"
#include "shard_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *path = (char *)fuzz_file(".tar", data, size);
	/* small enough that a member bigger than the input is cheap to skip,
	 * big enough that decompressed members are read into memory */
	reader_opts o = {.max_member = 1 << 20};
	shard_reader *r = shard_reader_new(&path, 1, &o);
	sample s;
	sample_init(&s);
	reject_info rj;
	mvl_err err;
	int rc;
	uint64_t sum = 0;
	/* one input: after an input error the reader moves on and ends */
	while ((rc = shard_reader_next(r, &s, &rj, &err)) != READ_END) {
		for (int i = 0; i < s.n; i++)
			if (s.m[i].size)
				sum += s.m[i].data[0] + s.m[i].data[s.m[i].size - 1];
	}
	shard_reader_free(r);
	sample_free(&s);
	fuzz_sink = (uint64_t)sum; /* the reads must happen */
	return 0;
}
