/* phash_sig.c: prints the image signatures (filters/phash.h) of files, as
 * `mvl dedup` computes them, for scripts/eval_phash.py; and times them.
 *
 *   phash_sig [--full] FILE...      one line per file:
 *       PHASH DHASH THUMB W H PATH  (hex; THUMB is the 48 bytes; W x H the
 *                                    decoded size), or "error MESSAGE PATH"
 *   phash_sig --bench [FILE...]     signatures per second: from a decoded
 *                                    64x64 RGB image, from 32x32 luma
 *                                    (phash_from_luma32), and decode plus
 *                                    signature of each FILE's bytes
 *
 * Files are decoded as dedup does (a 32x32 size hint: JPEG and WebP
 * decode at a reduced scale); --full decodes at full size.  With "-" the
 * paths come from stdin, one a line.
 *
 * Build (scripts/eval_phash.py does):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Ipipeline -Ifilters scripts/phash_sig.c \
 *      filters/phash.c pipeline/image.c pipeline/resize.c pipeline/util.c \
 *      -lturbojpeg -lwebpdemux -lwebp -lspng -lz -lm -lpthread
 */
#include "image.h"
#include "phash.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int full;

static int decode_file(img_ctx *c, const char *path, img_rgb *im, mvl_err *err)
{
	buf b = {0};
	if (read_file(path, (size_t)1 << 30, &b, err))
		return -1;
	img_decode_opts o;
	img_decode_opts_default(&o);
	if (!full)
		o.want_w = o.want_h = 32;
	int r = img_decode(c, b.data, b.len, &o, im, NULL, err);
	buf_free(&b);
	return r;
}

static void one(img_ctx *c, const char *path)
{
	mvl_err err = {{0}};
	img_rgb im = {0};
	img_sig s;
	if (decode_file(c, path, &im, &err) || img_signature(&im, &s)) {
		printf("error %s %s\n", err.msg[0] ? "decode" : "signature", path);
		img_rgb_free(&im);
		return;
	}
	printf("%016llx %016llx ", (unsigned long long)s.phash, (unsigned long long)s.dhash);
	for (int i = 0; i < THUMB_BYTES; i++)
		printf("%02x", s.thumb[i]);
	printf(" %d %d %s\n", im.w, im.h, path);
	img_rgb_free(&im);
}

/* runs fn until at least 0.5 s have passed: calls per second */
#define RATE(out, body)                                                  \
	do {                                                             \
		long n_ = 0;                                             \
		double t0_ = now_sec(), t_;                              \
		do {                                                     \
			for (int i_ = 0; i_ < 256; i_++, n_++) {         \
				body;                                    \
			}                                                \
		} while ((t_ = now_sec() - t0_) < 0.5);                  \
		out = n_ / t_;                                           \
	} while (0)

static void bench(img_ctx *c, char **files, int nfiles)
{
	uint64_t sink = 0;
	double r;
	img_rgb im = {64, 64, xmalloc(64 * 64 * 3)};
	for (int i = 0; i < 64 * 64 * 3; i++)
		im.px[i] = (uint8_t)((i * 7 + i / 192 * 13) ^ (i >> 5));
	img_sig s;
	RATE(r, (im.px[i_ % 97] ^= 1, img_signature(&im, &s), sink += s.phash));
	printf("img_signature 64x64 RGB: %.0f /s (%.2f us)\n", r, 1e6 / r);
	img_rgb_free(&im);
	float luma[32 * 32];
	for (int i = 0; i < 32 * 32; i++)
		luma[i] = (float)((i * 37) % 101);
	RATE(r, (luma[i_ & 1023] += 1, sink += phash_from_luma32(luma)));
	printf("phash_from_luma32: %.0f /s (%.2f us)\n", r, 1e6 / r);
	for (int f = 0; f < nfiles; f++) {
		buf b = {0};
		mvl_err err;
		img_rgb d = {0};
		if (read_file(files[f], (size_t)1 << 30, &b, &err) || decode_file(c, files[f], &d, &err)) {
			printf("%s: %s\n", files[f], err.msg);
			buf_free(&b);
			continue;
		}
		double rs, rd;
		RATE(rs, (img_signature(&d, &s), sink += s.phash));
		img_decode_opts o;
		img_decode_opts_default(&o);
		if (!full)
			o.want_w = o.want_h = 32;
		RATE(rd, ({
			img_rgb t = {0};
			if (img_decode(c, b.data, b.len, &o, &t, NULL, &err) == 0) {
				img_signature(&t, &s);
				sink += s.phash;
			}
			img_rgb_free(&t);
		}));
		printf("%s (%d bytes, decoded %dx%d): signature %.0f /s, decode + signature %.0f /s\n",
		       files[f], (int)b.len, d.w, d.h, rs, rd);
		img_rgb_free(&d);
		buf_free(&b);
	}
	fprintf(stderr, "(%llx)\n", (unsigned long long)(sink & 1));
}

int main(int argc, char **argv)
{
	int i = 1, do_bench = 0;
	for (; i < argc && argv[i][0] == '-' && argv[i][1]; i++) {
		if (!strcmp(argv[i], "--full"))
			full = 1;
		else if (!strcmp(argv[i], "--bench"))
			do_bench = 1;
		else
			die("usage: phash_sig [--full] [--bench] FILE... (- for stdin)");
	}
	img_ctx *c = img_ctx_new();
	if (do_bench) {
		bench(c, argv + i, argc - i);
	} else {
		for (; i < argc; i++) {
			if (strcmp(argv[i], "-")) {
				one(c, argv[i]);
				continue;
			}
			char line[4096];
			while (fgets(line, sizeof line, stdin)) {
				line[strcspn(line, "\n")] = 0;
				if (line[0])
					one(c, line);
			}
		}
	}
	img_ctx_free(c);
	if (fflush(stdout) || ferror(stdout))
		die("cannot write the output");
	return 0;
}
