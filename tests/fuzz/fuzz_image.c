/* fuzz_image.c: image bytes from a shard: the format probe (header only)
 * and the full decode of JPEG (turbojpeg), PNG (spng) and WebP, with the
 * limits the pipeline uses, plus the scaled decode a size hint selects. */
#include "fuzz.h"
#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* one context per process, as one per thread in the pipeline: the
	 * handles are meant to be reused, and reuse is part of what is tested */
	static img_ctx *c;
	if (!c)
		c = img_ctx_new();
	img_info info;
	mvl_err err;
	img_probe(data, size, &info, &err);

	img_decode_opts o;
	img_decode_opts_default(&o);
	/* 4 Mpx, not the default 178: a lossless WebP of 68 bytes can be a
	 * real 8198 x 8196 image, whose honest decode takes seconds under
	 * the sanitizers and would drown the search in timeouts.  Claims
	 * above the limit are still refused before any allocation. */
	o.max_pixels = 1 << 22;
	if (size & 1)
		o.want_w = o.want_h = 64;
	img_rgb im = {0};
	if (img_decode(c, data, size, &o, &im, &info, &err) == 0)
		img_rgb_free(&im);
	return 0;
}
