/* fuzz_packfile.c: pack files the trainer reads: the header, the index
 * and each record's counts, offsets, segments, keys and images, every
 * field a sequence exposes read end to end. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz.h"
#include "packfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	mvl_err err;
	pack_reader *r = pack_open(fuzz_file(".pack", data, size), &err);
	if (!r)
		return 0;
	uint64_t sum = 0;
	uint64_t n = pack_count(r);
	for (uint64_t i = 0; i < n && i < 64; i++) {
		pack_seq s;
		if (pack_read(r, i, &s, &err) != 0)
			continue;
		for (uint32_t k = 0; k < s.seq_len; k++)
			sum += s.ids[k] + s.pos[k] + s.seg[k] + s.loss[k];
		for (uint32_t k = 0; k < s.nseg; k++)
			sum += s.segs[k].start + s.segs[k].len + (s.segs[k].keylen ? (uint8_t)s.segs[k].key[s.segs[k].keylen - 1] : 0);
		for (uint32_t k = 0; k < s.nimg; k++) {
			/* the reader promises h * w * 3 bytes of pixels: a size
			 * that overflows cannot be such a promise */
			if (s.img[k].h && s.img[k].w > SIZE_MAX / 3 / s.img[k].h)
				abort();
			uint64_t px = (uint64_t)s.img[k].h * s.img[k].w * 3;
			if (px)
				sum += s.img[k].px[0] + s.img[k].px[px - 1];
		}
	}
	pack_close(r);
	fuzz_sink = (uint64_t)sum; /* the reads must happen */
	return 0;
}
