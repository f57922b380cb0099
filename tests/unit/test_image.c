/* test_image.c: probe, decode, orientation, resize, sizing rules and
 * encode, on images made here with the same libraries (turbojpeg,
 * libwebp, libspng) plus hand-built containers for what those encoders
 * cannot write (EXIF, interlacing, animation), and on hostile input:
 * forged sizes, every truncation, random bytes and bit flips.
 *
 * The expected resize values were computed once with Pillow 9.4
 * (Image.resize(..., Image.BICUBIC)) on the same synthetic pattern, and
 * the smart_resize values with qwen_vl_utils' formula in Python.
 */
#include "image.h"
#include "check.h"

#include <stdlib.h>
#include <string.h>

#include <spng.h>
#include <turbojpeg.h>
#include <webp/encode.h>
#include <zlib.h>

/* --------------------------------------------------------------- helpers */

static uint32_t rng_state = 12345;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

/* A smooth gradient: lossy codecs keep it well, so round trips can be
 * checked against small errors. */
static uint8_t *gradient(int w, int h)
{
	uint8_t *p = xmalloc((size_t)w * h * 3);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t *q = p + ((size_t)y * w + x) * 3;
			q[0] = (uint8_t)(x * 255 / (w > 1 ? w - 1 : 1));
			q[1] = (uint8_t)(y * 255 / (h > 1 ? h - 1 : 1));
			q[2] = (uint8_t)((x + y) * 127 / (w + h));
		}
	return p;
}

/* The pattern the Pillow reference values were computed on. */
static uint8_t *pattern(int w, int h)
{
	uint8_t *p = xmalloc((size_t)w * h * 3);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int c = 0; c < 3; c++)
				p[((size_t)y * w + x) * 3 + c] =
					(uint8_t)((x * x * 7 + y * 13 + c * 50 + x * y * 3) % 256);
	return p;
}

static double mean_abs_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += abs((int)a[i] - (int)b[i]);
	return n ? s / n : 0;
}

static const uint8_t *px_at(const img_rgb *im, int x, int y)
{
	return im->px + ((size_t)y * im->w + x) * 3;
}

static int near(const uint8_t *p, int r, int g, int b, int tol)
{
	return abs(p[0] - r) <= tol && abs(p[1] - g) <= tol && abs(p[2] - b) <= tol;
}

static int starts(const char *s, const char *prefix)
{
	return !strncmp(s, prefix, strlen(prefix));
}

static int has_reason(const char *msg)
{
	return starts(msg, "too_large: ") || starts(msg, "corrupt_image: ") ||
	       starts(msg, "unsupported_image: ") || starts(msg, "not_an_image: ");
}

/* ----------------------------------------------------------- encoders */

static buf jpeg_make(const uint8_t *px, int w, int h, int pf, int samp, int q,
		     int flags)
{
	tjhandle t = tjInitCompress();
	unsigned char *out = NULL;
	unsigned long len = 0;
	buf b = { 0 };
	if (tjCompress2(t, px, w, 0, h, pf, &out, &len, samp, q, flags) == 0)
		buf_append(&b, out, len);
	else
		fprintf(stderr, "tjCompress2: %s\n", tjGetErrorStr2(t));
	tjFree(out);
	tjDestroy(t);
	return b;
}

static buf jpeg_rgb(const uint8_t *px, int w, int h, int q)
{
	return jpeg_make(px, w, h, TJPF_RGB, TJSAMP_420, q, 0);
}

static buf png_make(const void *px, int w, int h, int color, int depth,
		    int interlace, const struct spng_plte *plte,
		    const struct spng_trns *trns)
{
	spng_ctx *s = spng_ctx_new(SPNG_CTX_ENCODER);
	struct spng_ihdr ih = { .width = (uint32_t)w, .height = (uint32_t)h,
				.bit_depth = (uint8_t)depth, .color_type = (uint8_t)color,
				.interlace_method = (uint8_t)interlace };
	buf b = { 0 };
	size_t len = 0, rowbits;
	int r, ch = color == 0 || color == 3 ? 1 : color == 4 ? 2 : color == 2 ? 3 : 4;
	rowbits = (size_t)w * ch * depth;
	spng_set_option(s, SPNG_ENCODE_TO_BUFFER, 1);
	spng_set_ihdr(s, &ih);
	if (plte)
		spng_set_plte(s, (struct spng_plte *)plte);
	if (trns)
		spng_set_trns(s, (struct spng_trns *)trns);
	r = spng_encode_image(s, px, (rowbits + 7) / 8 * h, SPNG_FMT_PNG,
			      SPNG_ENCODE_FINALIZE);
	void *p = r ? NULL : spng_get_png_buffer(s, &len, &r);
	if (p)
		buf_append(&b, p, len);
	else
		fprintf(stderr, "spng encode: %s\n", spng_strerror(r));
	free(p);
	spng_ctx_free(s);
	return b;
}

static buf webp_wrap(uint8_t *p, size_t len)
{
	buf b = { 0 };
	if (len)
		buf_append(&b, p, len);
	WebPFree(p);
	return b;
}

/* ------------------------------------------------- container surgery */

static void put_be16(uint8_t *p, unsigned v) { p[0] = v >> 8; p[1] = v; }
static void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static void put_le16(uint8_t *p, unsigned v) { p[0] = v; p[1] = v >> 8; }
static void put_le24(uint8_t *p, uint32_t v) { p[0] = v; p[1] = v >> 8; p[2] = v >> 16; }
static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}

/* A TIFF block whose IFD0 holds a Make tag and then the orientation. */
static size_t tiff_orientation(uint8_t *t, int orientation, int le)
{
	void (*p16)(uint8_t *, unsigned) = le ? put_le16 : put_be16;
	void (*p32)(uint8_t *, uint32_t) = le ? put_le32 : put_be32;
	memset(t, 0, 64);
	memcpy(t, le ? "II" : "MM", 2);
	p16(t + 2, 42);
	p32(t + 4, 8);
	p16(t + 8, 2);                          /* two entries */
	p16(t + 10, 0x010F); p16(t + 12, 2);    /* Make, ASCII */
	p32(t + 14, 4); memcpy(t + 18, "mvl", 4);
	p16(t + 22, 0x0112); p16(t + 24, 3);    /* Orientation, SHORT */
	p32(t + 26, 1); p16(t + 30, (unsigned)orientation);
	p32(t + 34, 0);                         /* no next IFD */
	return 38;
}

static buf jpeg_with_exif(const buf *j, int orientation, int le)
{
	uint8_t seg[128];
	size_t tl = tiff_orientation(seg + 10, orientation, le);
	seg[0] = 0xFF; seg[1] = 0xE1;
	put_be16(seg + 2, (unsigned)(2 + 6 + tl));
	memcpy(seg + 4, "Exif\0\0", 6);
	buf b = { 0 };
	buf_append(&b, j->data, 2);             /* SOI */
	buf_append(&b, seg, 10 + tl);
	buf_append(&b, j->data + 2, j->len - 2);
	return b;
}

static void png_chunk(buf *b, const char *type, const uint8_t *data, size_t len)
{
	uint8_t h[8];
	put_be32(h, (uint32_t)len);
	memcpy(h + 4, type, 4);
	buf_append(b, h, 8);
	if (len)
		buf_append(b, data, len);
	uint32_t crc = (uint32_t)crc32(0, h + 4, 4);
	crc = (uint32_t)crc32(crc, data, (uInt)len);
	put_be32(h, crc);
	buf_append(b, h, 4);
}

static buf png_with_exif(const buf *p, int orientation, int le)
{
	uint8_t t[64];
	size_t tl = tiff_orientation(t, orientation, le);
	buf b = { 0 };
	buf_append(&b, p->data, 33);            /* signature + IHDR */
	png_chunk(&b, "eXIf", t, tl);
	buf_append(&b, p->data + 33, p->len - 33);
	return b;
}

/* The first chunk of a simple-format WebP (RIFF header stripped). */
static void webp_first_chunk(const buf *w, const uint8_t **p, size_t *len)
{
	uint32_t sz = w->data[16] | w->data[17] << 8 | w->data[18] << 16 |
		      (uint32_t)w->data[19] << 24;
	*p = w->data + 12;
	*len = 8 + sz + (sz & 1);
}

static void riff_finish(buf *b)
{
	put_le32(b->data + 4, (uint32_t)(b->len - 8));
}

static buf webp_with_exif(const buf *w, int cw, int ch, int orientation)
{
	const uint8_t *c;
	size_t cl;
	webp_first_chunk(w, &c, &cl);
	uint8_t hdr[30] = "RIFF\0\0\0\0WEBPVP8X";
	put_le32(hdr + 16, 10);
	hdr[20] = 0x08;                          /* EXIF present */
	put_le24(hdr + 24, (uint32_t)cw - 1);
	put_le24(hdr + 27, (uint32_t)ch - 1);
	buf b = { 0 };
	buf_append(&b, hdr, 30);
	buf_append(&b, c, cl);
	uint8_t t[72], eh[8] = "EXIF";
	memcpy(t, "Exif\0\0", 6);              /* the prefix some writers keep */
	size_t tl = 6 + tiff_orientation(t + 6, orientation, 1);
	put_le32(eh + 4, (uint32_t)tl);
	buf_append(&b, eh, 8);
	buf_append(&b, t, tl);
	if (tl & 1)
		buf_append(&b, "", 1);
	riff_finish(&b);
	return b;
}

/* An animated WebP: a cw x ch canvas holding one lossless frame f at
 * (2*fx, 2*fy); the rest of the canvas stays transparent. */
static buf webp_anim(const buf *f, int fw, int fh, int cw, int ch, int fx, int fy)
{
	const uint8_t *c;
	size_t cl;
	webp_first_chunk(f, &c, &cl);
	uint8_t hdr[30] = "RIFF\0\0\0\0WEBPVP8X";
	put_le32(hdr + 16, 10);
	hdr[20] = 0x02 | 0x10;                   /* animation, alpha */
	put_le24(hdr + 24, (uint32_t)cw - 1);
	put_le24(hdr + 27, (uint32_t)ch - 1);
	uint8_t anim[14] = "ANIM";
	put_le32(anim + 4, 6);                   /* bg colour 0, loop 0 */
	uint8_t anmf[24] = "ANMF";
	put_le32(anmf + 4, (uint32_t)(16 + cl));
	put_le24(anmf + 8, (uint32_t)fx);
	put_le24(anmf + 11, (uint32_t)fy);
	put_le24(anmf + 14, (uint32_t)fw - 1);
	put_le24(anmf + 17, (uint32_t)fh - 1);
	put_le24(anmf + 20, 100);                /* duration */
	anmf[23] = 0x02;                         /* no blending */
	buf b = { 0 };
	buf_append(&b, hdr, 30);
	buf_append(&b, anim, 14);
	buf_append(&b, anmf, 24);
	buf_append(&b, c, cl);
	riff_finish(&b);
	return b;
}

/* Where display pixel (x, y) of a W x H stored image comes from, written
 * out per case (independently of the decoder's stepping). */
static void stored_coord(int o, int W, int H, int x, int y, int *sx, int *sy)
{
	switch (o) {
	case 2: *sx = W - 1 - x; *sy = y; break;
	case 3: *sx = W - 1 - x; *sy = H - 1 - y; break;
	case 4: *sx = x; *sy = H - 1 - y; break;
	case 5: *sx = y; *sy = x; break;
	case 6: *sx = y; *sy = H - 1 - x; break;
	case 7: *sx = W - 1 - y; *sy = H - 1 - x; break;
	case 8: *sx = W - 1 - y; *sy = x; break;
	default: *sx = x; *sy = y; break;
	}
}

static int decode(img_ctx *c, const buf *b, const img_decode_opts *o,
		  img_rgb *im, img_info *info, mvl_err *err)
{
	img_decode_opts d;
	if (!o) {
		img_decode_opts_default(&d);
		o = &d;
	}
	return img_decode(c, b->data, b->len, o, im, info, err);
}

/* ------------------------------------------------------------- tests */

static void test_names(void)
{
	CHECK(!strcmp(img_format_name(IMG_JPEG), "jpeg"), "name jpeg");
	CHECK(!strcmp(img_format_name(IMG_UNKNOWN), "unknown"), "name unknown");
	CHECK(!strcmp(img_format_ext(IMG_JPEG), "jpg"), "ext jpg");
	CHECK(!strcmp(img_format_ext(IMG_WEBP), "webp"), "ext webp");
	CHECK(img_format_from_ext("jpeg") == IMG_JPEG && img_format_from_ext("jpg") == IMG_JPEG,
	      "from_ext jpeg");
	CHECK(img_format_from_ext("png") == IMG_PNG && img_format_from_ext("webp") == IMG_WEBP,
	      "from_ext png webp");
	CHECK(img_format_from_ext("gif") == IMG_UNKNOWN && img_format_from_ext("JPG") == IMG_UNKNOWN,
	      "from_ext other");
}

static void test_jpeg(img_ctx *c)
{
	int w = 96, h = 64;
	uint8_t *g = gradient(w, h);
	img_info in;
	img_rgb im;
	mvl_err err;

	buf base = jpeg_rgb(g, w, h, 95);
	CHECK(img_probe(base.data, base.len, &in, &err) == 0 && in.format == IMG_JPEG &&
	      in.width == w && in.height == h && in.channels == 3 && in.orientation == 1,
	      "jpeg probe baseline");
	int r = decode(c, &base, NULL, &im, &in, &err);
	CHECKF(r == 0 && im.w == w && im.h == h, "jpeg decode baseline", "%s", err.msg);
	double e = r ? 999 : mean_abs_diff(im.px, g, (size_t)w * h * 3);
	CHECKF(e < 2.0, "jpeg baseline round trip", "mean error %.2f", e);
	img_rgb_free(&im);

	buf prog = jpeg_make(g, w, h, TJPF_RGB, TJSAMP_420, 90, TJFLAG_PROGRESSIVE);
	CHECK(img_probe(prog.data, prog.len, &in, &err) == 0 && in.width == w && in.height == h,
	      "jpeg probe progressive");
	r = decode(c, &prog, NULL, &im, NULL, &err);
	e = r ? 999 : mean_abs_diff(im.px, g, (size_t)w * h * 3);
	CHECKF(r == 0 && e < 2.5, "jpeg progressive round trip", "%s %.2f", err.msg, e);
	img_rgb_free(&im);

	/* grayscale: one component, comes out as R = G = B */
	uint8_t *gray = xmalloc((size_t)w * h);
	for (int i = 0; i < w * h; i++)
		gray[i] = g[i * 3];
	buf gj = jpeg_make(gray, w, h, TJPF_GRAY, TJSAMP_GRAY, 95, 0);
	CHECK(img_probe(gj.data, gj.len, &in, &err) == 0 && in.channels == 1, "jpeg probe gray");
	r = decode(c, &gj, NULL, &im, NULL, &err);
	int rgb_equal = r == 0;
	double ge = 0;
	for (int i = 0; r == 0 && i < w * h; i++) {
		rgb_equal &= im.px[i * 3] == im.px[i * 3 + 1] && im.px[i * 3] == im.px[i * 3 + 2];
		ge += abs(im.px[i * 3] - gray[i]);
	}
	CHECKF(rgb_equal && ge / (w * h) < 1.5, "jpeg gray to rgb", "%s %.2f", err.msg, ge / (w * h));
	img_rgb_free(&im);

	/* CMYK: turbojpeg writes YCCK with an Adobe marker, and the values
	 * are taken as inverted (Adobe): stored 255 - ink. */
	uint8_t *cmyk = xmalloc((size_t)w * h * 4);
	for (int i = 0; i < w * h; i++) {
		int left = (i % w) < w / 2;
		/* left half red (no cyan, full magenta and yellow), right half
		 * 50% grey (only black ink) */
		cmyk[i * 4 + 0] = 255;
		cmyk[i * 4 + 1] = left ? 0 : 255;
		cmyk[i * 4 + 2] = left ? 0 : 255;
		cmyk[i * 4 + 3] = left ? 255 : 128;
	}
	buf cj = jpeg_make(cmyk, w, h, TJPF_CMYK, TJSAMP_444, 95, 0);
	CHECK(img_probe(cj.data, cj.len, &in, &err) == 0 && in.channels == 4, "jpeg probe cmyk");
	r = decode(c, &cj, NULL, &im, NULL, &err);
	CHECKF(r == 0 && near(px_at(&im, 10, 10), 255, 0, 0, 6) &&
	       near(px_at(&im, w - 10, 10), 128, 128, 128, 6),
	       "jpeg cmyk to rgb", "%s %d,%d,%d", err.msg, r ? -1 : px_at(&im, 10, 10)[0],
	       r ? -1 : px_at(&im, 10, 10)[1], r ? -1 : px_at(&im, 10, 10)[2]);
	img_rgb_free(&im);

	/* stray bytes between segments: libjpeg warns, the image is fine */
	buf junk = { 0 };
	size_t app0 = 4 + ((size_t)base.data[4] << 8 | base.data[5]);  /* after SOI + APP0 */
	buf_append(&junk, base.data, app0);
	buf_append(&junk, "\x12\x34\x56", 3);
	buf_append(&junk, base.data + app0, base.len - app0);
	r = decode(c, &junk, NULL, &im, NULL, &err);
	CHECKF(r == 0 && im.w == w, "jpeg extraneous bytes accepted", "%s", err.msg);
	img_rgb_free(&im);

	/* a missing EOI is truncation */
	buf noeoi = { 0 };
	buf_append(&noeoi, base.data, base.len - 2);
	r = decode(c, &noeoi, NULL, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "corrupt_image: "), "jpeg without EOI refused", "%s", err.msg);

	/* cut in the middle of the scan, EOI put back: libjpeg's warning */
	buf cut = { 0 };
	buf_append(&cut, base.data, base.len * 2 / 3);
	buf_append(&cut, "\xFF\xD9", 2);
	r = decode(c, &cut, NULL, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "corrupt_image: ") && strstr(err.msg, "remature end"),
	       "jpeg cut scan refused", "%s", err.msg);

	/* SOF3 (lossless) is a real JPEG process that libjpeg-turbo 2 lacks */
	buf sof3 = { 0 };
	buf_append(&sof3, base.data, base.len);
	for (size_t i = 2; i + 1 < sof3.len; i++)
		if (sof3.data[i] == 0xFF && sof3.data[i + 1] == 0xC0) {
			sof3.data[i + 1] = 0xC3;
			break;
		}
	r = decode(c, &sof3, NULL, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "unsupported_image: "), "jpeg sof3 unsupported", "%s", err.msg);

	buf_free(&base); buf_free(&prog); buf_free(&gj); buf_free(&cj);
	buf_free(&junk); buf_free(&noeoi); buf_free(&cut); buf_free(&sof3);
	free(g); free(gray); free(cmyk);
}

/* Picks a DCT scale from the size hint; orientation swaps the hint. */
static void test_jpeg_scaling(img_ctx *c)
{
	int w = 1024, h = 768;
	uint8_t *g = gradient(w, h);
	buf j = jpeg_rgb(g, w, h, 85);
	img_decode_opts o;
	img_rgb im;
	mvl_err err;
	struct { int ww, wh, ew, eh; const char *name; } cases[] = {
		{ 0, 0, 1024, 768, "jpeg scale none" },
		{ 128, 96, 128, 96, "jpeg scale 1/8 exact" },
		{ 100, 50, 128, 96, "jpeg scale 1/8 smaller hint" },
		{ 130, 96, 256, 192, "jpeg scale 1/4" },
		{ 224, 168, 256, 192, "jpeg scale 224 fits 1/4" },
		{ 300, 200, 384, 288, "jpeg scale 3/8" },
		{ 1000, 700, 1024, 768, "jpeg scale 1 near full" },
		{ 4000, 3000, 1024, 768, "jpeg scale never up" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		img_decode_opts_default(&o);
		o.want_w = cases[i].ww;
		o.want_h = cases[i].wh;
		int r = decode(c, &j, &o, &im, NULL, &err);
		CHECKF(r == 0 && im.w == cases[i].ew && im.h == cases[i].eh, cases[i].name,
		       "%s got %dx%d", r ? err.msg : "", im.w, im.h);
		if (r == 0 && cases[i].ew == 128) {
			/* a scaled decode is still the same picture */
			double s = 0;
			for (int y = 0; y < im.h; y++)
				for (int x = 0; x < im.w; x++)
					s += abs(px_at(&im, x, y)[0] - (int)((x * 8 + 4) * 255 / (w - 1)));
			CHECKF(s / (im.w * im.h) < 3, "jpeg scaled content", "%.2f", s / (im.w * im.h));
		}
		img_rgb_free(&im);
	}
	/* orientation 6: the hint is for the displayed (portrait) image */
	buf e = jpeg_with_exif(&j, 6, 0);
	img_decode_opts_default(&o);
	o.want_w = 96;
	o.want_h = 128;
	int r = decode(c, &e, &o, &im, NULL, &err);
	CHECKF(r == 0 && im.w == 96 && im.h == 128, "jpeg scale with orientation",
	       "%s got %dx%d", r ? err.msg : "", im.w, im.h);
	img_rgb_free(&im);
	buf_free(&e);
	buf_free(&j);
	free(g);
}

static void test_png(img_ctx *c)
{
	int w = 37, h = 23;  /* odd sizes exercise interlace passes */
	uint8_t *g = gradient(w, h);
	img_info in;
	img_rgb im;
	mvl_err err;
	int r;

	buf p = png_make(g, w, h, SPNG_COLOR_TYPE_TRUECOLOR, 8, 0, NULL, NULL);
	CHECK(img_probe(p.data, p.len, &in, &err) == 0 && in.format == IMG_PNG &&
	      in.width == w && in.height == h && in.channels == 3 && !in.has_alpha,
	      "png probe rgb");
	r = decode(c, &p, NULL, &im, NULL, &err);
	CHECKF(r == 0 && im.w == w && im.h == h && !memcmp(im.px, g, (size_t)w * h * 3),
	       "png rgb exact", "%s", err.msg);
	img_rgb_free(&im);

	buf pi = png_make(g, w, h, SPNG_COLOR_TYPE_TRUECOLOR, 8, 1, NULL, NULL);
	CHECK(pi.len > 33 && pi.data[28] == 1, "png interlaced written");
	r = decode(c, &pi, NULL, &im, NULL, &err);
	CHECKF(r == 0 && !memcmp(im.px, g, (size_t)w * h * 3), "png interlaced exact", "%s", err.msg);
	img_rgb_free(&im);

	/* RGBA: opaque, transparent red, half-transparent black */
	uint8_t *rgba = xmalloc((size_t)w * h * 4);
	for (int i = 0; i < w * h; i++) {
		memcpy(rgba + i * 4, g + i * 3, 3);
		rgba[i * 4 + 3] = 255;
	}
	memcpy(rgba, "\xff\x00\x00\x00", 4);            /* (0,0) red, a=0 */
	memcpy(rgba + 4, "\x00\x00\x00\x80", 4);        /* (1,0) black, a=128 */
	buf pa = png_make(rgba, w, h, SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 8, 0, NULL, NULL);
	CHECK(img_probe(pa.data, pa.len, &in, &err) == 0 && in.has_alpha && in.channels == 4,
	      "png probe rgba");
	r = decode(c, &pa, NULL, &im, NULL, &err);
	CHECKF(r == 0 && near(px_at(&im, 0, 0), 255, 255, 255, 0), "png transparent red is white",
	       "%s", err.msg);
	/* (128*0 + 127*255 + 127) / 255 = 127 */
	CHECK(r == 0 && near(px_at(&im, 1, 0), 127, 127, 127, 0), "png half alpha rounding");
	CHECK(r == 0 && !memcmp(px_at(&im, 5, 5), g + (5 * w + 5) * 3, 3), "png opaque kept");
	img_rgb_free(&im);
	img_decode_opts o;
	img_decode_opts_default(&o);
	memcpy(o.bg, "\x00\x00\xff", 3);
	r = decode(c, &pa, &o, &im, NULL, &err);
	CHECK(r == 0 && near(px_at(&im, 0, 0), 0, 0, 255, 0), "png alpha on custom background");
	img_rgb_free(&im);

	/* palette with tRNS: index 1 transparent */
	struct spng_plte plte = { .n_entries = 3 };
	plte.entries[0] = (struct spng_plte_entry){ 10, 20, 30, 255 };
	plte.entries[1] = (struct spng_plte_entry){ 255, 0, 0, 255 };
	plte.entries[2] = (struct spng_plte_entry){ 0, 200, 0, 255 };
	struct spng_trns trns = { .n_type3_entries = 2, .type3_alpha = { 255, 0 } };
	uint8_t *idx = xmalloc((size_t)w * h);
	for (int i = 0; i < w * h; i++)
		idx[i] = (uint8_t)(i % 3);
	buf pp = png_make(idx, w, h, SPNG_COLOR_TYPE_INDEXED, 8, 0, &plte, &trns);
	CHECK(img_probe(pp.data, pp.len, &in, &err) == 0 && in.has_alpha, "png probe palette trns");
	r = decode(c, &pp, NULL, &im, NULL, &err);
	CHECKF(r == 0 && near(px_at(&im, 0, 0), 10, 20, 30, 0) && near(px_at(&im, 1, 0), 255, 255, 255, 0) &&
	       near(px_at(&im, 2, 0), 0, 200, 0, 0), "png palette with transparency", "%s", err.msg);
	img_rgb_free(&im);
	buf pp2 = png_make(idx, w, h, SPNG_COLOR_TYPE_INDEXED, 8, 0, &plte, NULL);
	r = decode(c, &pp2, NULL, &im, &in, &err);
	CHECKF(r == 0 && !in.has_alpha && near(px_at(&im, 1, 0), 255, 0, 0, 0), "png palette opaque",
	       "%s", err.msg);
	img_rgb_free(&im);

	/* 8-bit gray and 16-bit RGB (the high byte survives) */
	uint8_t *gray = xmalloc((size_t)w * h);
	for (int i = 0; i < w * h; i++)
		gray[i] = g[i * 3 + 1];
	buf pg = png_make(gray, w, h, SPNG_COLOR_TYPE_GRAYSCALE, 8, 0, NULL, NULL);
	r = decode(c, &pg, NULL, &im, &in, &err);
	int ok = r == 0 && in.channels == 1;
	for (int i = 0; ok && i < w * h; i++)
		ok = im.px[i * 3] == gray[i] && im.px[i * 3 + 2] == gray[i];
	CHECKF(ok, "png gray", "%s", err.msg);
	img_rgb_free(&im);

	uint16_t *w16 = xmalloc((size_t)w * h * 6);
	for (int i = 0; i < w * h * 3; i++)      /* libspng takes host order */
		w16[i] = (uint16_t)(g[i] << 8 | (i * 7 & 0xff));
	buf p16 = png_make(w16, w, h, SPNG_COLOR_TYPE_TRUECOLOR, 16, 0, NULL, NULL);
	r = decode(c, &p16, NULL, &im, NULL, &err);
	/* 16 -> 8 bits: libspng rounds where Pillow truncates, one step apart */
	ok = r == 0;
	for (int i = 0; ok && i < w * h * 3; i++)
		ok = im.px[i] == g[i] || im.px[i] == g[i] + 1;
	CHECKF(ok, "png 16-bit", "%s", r ? err.msg : "pixels differ");
	img_rgb_free(&im);

	/* gray + alpha, interlaced */
	uint8_t *ga = xmalloc((size_t)w * h * 2);
	for (int i = 0; i < w * h; i++)
		ga[i * 2] = gray[i], ga[i * 2 + 1] = i == 0 ? 0 : 255;
	buf pga = png_make(ga, w, h, SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 8, 1, NULL, NULL);
	r = decode(c, &pga, NULL, &im, NULL, &err);
	CHECKF(r == 0 && near(px_at(&im, 0, 0), 255, 255, 255, 0) && px_at(&im, 3, 3)[1] == gray[3 * w + 3],
	       "png gray alpha interlaced", "%s", err.msg);
	img_rgb_free(&im);

	buf_free(&p); buf_free(&pi); buf_free(&pa); buf_free(&pp); buf_free(&pp2);
	buf_free(&pg); buf_free(&p16); buf_free(&pga);
	free(g); free(rgba); free(idx); free(gray); free(w16); free(ga);
}

static void test_webp(img_ctx *c)
{
	int w = 64, h = 48;
	uint8_t *g = gradient(w, h);
	img_info in;
	img_rgb im;
	mvl_err err;
	int r;
	uint8_t *out = NULL;

	buf lossy = webp_wrap(out, WebPEncodeRGB(g, w, h, w * 3, 90, &out));
	CHECK(img_probe(lossy.data, lossy.len, &in, &err) == 0 && in.format == IMG_WEBP &&
	      in.width == w && in.height == h && !in.has_alpha && !memcmp(lossy.data + 12, "VP8 ", 4),
	      "webp probe lossy");
	r = decode(c, &lossy, NULL, &im, NULL, &err);
	double e = r ? 999 : mean_abs_diff(im.px, g, (size_t)w * h * 3);
	CHECKF(r == 0 && e < 3, "webp lossy round trip", "%s %.2f", err.msg, e);
	img_rgb_free(&im);

	buf ll = webp_wrap(out, WebPEncodeLosslessRGB(g, w, h, w * 3, &out));
	CHECK(img_probe(ll.data, ll.len, &in, &err) == 0 && in.width == w && in.height == h &&
	      !memcmp(ll.data + 12, "VP8L", 4), "webp probe lossless");
	r = decode(c, &ll, NULL, &im, NULL, &err);
	CHECKF(r == 0 && !memcmp(im.px, g, (size_t)w * h * 3), "webp lossless exact", "%s", err.msg);
	img_rgb_free(&im);

	uint8_t *rgba = xmalloc((size_t)w * h * 4);
	for (int i = 0; i < w * h; i++) {
		memcpy(rgba + i * 4, g + i * 3, 3);
		rgba[i * 4 + 3] = (i % w) < 8 ? 0 : 255;  /* left strip transparent */
	}
	for (int y = 0; y < h; y++)
		for (int x = 0; x < 8; x++)
			memcpy(rgba + (y * w + x) * 4, "\xff\x00\x00", 3);
	buf la = webp_wrap(out, WebPEncodeLosslessRGBA(rgba, w, h, w * 4, &out));
	CHECK(img_probe(la.data, la.len, &in, &err) == 0 && in.has_alpha, "webp probe lossless alpha");
	r = decode(c, &la, NULL, &im, NULL, &err);
	CHECKF(r == 0 && near(px_at(&im, 2, 2), 255, 255, 255, 0) &&
	       !memcmp(px_at(&im, 20, 20), g + (20 * w + 20) * 3, 3), "webp lossless alpha on white",
	       "%s", err.msg);
	img_rgb_free(&im);

	buf ya = webp_wrap(out, WebPEncodeRGBA(rgba, w, h, w * 4, 90, &out));
	CHECK(img_probe(ya.data, ya.len, &in, &err) == 0 && in.has_alpha &&
	      !memcmp(ya.data + 12, "VP8X", 4), "webp probe lossy alpha (VP8X)");
	r = decode(c, &ya, NULL, &im, NULL, &err);
	CHECKF(r == 0 && near(px_at(&im, 2, 2), 255, 255, 255, 0) && near(px_at(&im, 40, 20),
	       g[(20 * w + 40) * 3], g[(20 * w + 40) * 3 + 1], g[(20 * w + 40) * 3 + 2], 12),
	       "webp lossy alpha on white", "%s", err.msg);
	img_rgb_free(&im);

	/* scaled decode from the hint */
	img_decode_opts o;
	img_decode_opts_default(&o);
	o.want_w = 16;
	o.want_h = 12;
	r = decode(c, &lossy, &o, &im, NULL, &err);
	CHECKF(r == 0 && im.w == 16 && im.h == 12, "webp scaled decode", "%s %dx%d", err.msg, im.w, im.h);
	img_rgb_free(&im);
	o.want_w = 20;
	o.want_h = 10;
	r = decode(c, &ya, &o, &im, NULL, &err);
	CHECKF(r == 0 && im.w == 20 && im.h == 15 && near(px_at(&im, 0, 5), 255, 255, 255, 30),
	       "webp scaled decode covers hint", "%s %dx%d", err.msg, im.w, im.h);
	img_rgb_free(&im);

	/* animated: a 6x4 opaque-green frame at (2,2) on a 10x8 canvas */
	uint8_t fr[6 * 4 * 4];
	for (int i = 0; i < 24; i++)
		memcpy(fr + i * 4, "\x00\xc8\x00\xff", 4);
	uint8_t *fo = NULL;
	buf f = webp_wrap(fo, WebPEncodeLosslessRGBA(fr, 6, 4, 24, &fo));
	buf an = webp_anim(&f, 6, 4, 10, 8, 1, 1);
	CHECK(img_probe(an.data, an.len, &in, &err) == 0 && in.animated && in.width == 10 &&
	      in.height == 8, "webp probe animated");
	r = decode(c, &an, NULL, &im, NULL, &err);
	CHECKF(r == 0 && im.w == 10 && im.h == 8 && near(px_at(&im, 0, 0), 255, 255, 255, 0) &&
	       near(px_at(&im, 3, 3), 0, 200, 0, 0) && near(px_at(&im, 9, 7), 255, 255, 255, 0),
	       "webp animated first frame", "%s", err.msg);
	img_rgb_free(&im);

	buf_free(&lossy); buf_free(&ll); buf_free(&la); buf_free(&ya); buf_free(&f); buf_free(&an);
	free(g); free(rgba);
}

/* The eight orientations, in three containers; a marked corner must land
 * where the EXIF specification puts it. */
static void test_orientation(img_ctx *c)
{
	int W = 5, H = 3;
	uint8_t *p = pattern(W, H);
	buf png = png_make(p, W, H, SPNG_COLOR_TYPE_TRUECOLOR, 8, 0, NULL, NULL);
	img_rgb im;
	img_info in;
	mvl_err err;
	char name[64];
	for (int o = 1; o <= 8; o++) {
		buf e = png_with_exif(&png, o, o & 1);
		int r = decode(c, &e, NULL, &im, &in, &err);
		int ok = r == 0 && in.orientation == o && in.width == W &&
			 im.w == (o >= 5 ? H : W) && im.h == (o >= 5 ? W : H);
		for (int y = 0; ok && y < im.h; y++)
			for (int x = 0; ok && x < im.w; x++) {
				int sx, sy;
				stored_coord(o, W, H, x, y, &sx, &sy);
				ok = !memcmp(px_at(&im, x, y), p + (sy * W + sx) * 3, 3);
			}
		snprintf(name, sizeof name, "png exif orientation %d", o);
		CHECKF(ok, name, "%s", r ? err.msg : "pixels differ");
		img_rgb_free(&im);
		buf_free(&e);
	}

	/* JPEG: red 16x16 block top-left of a 64x32 grey image */
	int w = 64, h = 32;
	uint8_t *g = xmalloc((size_t)w * h * 3);
	memset(g, 128, (size_t)w * h * 3);
	for (int y = 0; y < 16; y++)
		for (int x = 0; x < 16; x++)
			memcpy(g + (y * w + x) * 3, "\xff\x00\x00", 3);
	buf j = jpeg_rgb(g, w, h, 95);
	/* display corner (as x, y fractions) where the stored top-left goes */
	static const int corner[9][2] = { {0,0}, {0,0}, {1,0}, {1,1}, {0,1}, {0,0}, {1,0}, {1,1}, {0,1} };
	for (int o = 1; o <= 8; o++) {
		for (int le = 0; le <= 1; le++) {
			buf e = jpeg_with_exif(&j, o, le);
			int r = decode(c, &e, NULL, &im, &in, &err);
			int dw = o >= 5 ? h : w, dh = o >= 5 ? w : h;
			int cx = corner[o][0] ? dw - 4 : 3, cy = corner[o][1] ? dh - 4 : 3;
			int ox = corner[o][0] ? 3 : dw - 4, oy = corner[o][1] ? 3 : dh - 4;
			snprintf(name, sizeof name, "jpeg exif orientation %d %s", o, le ? "II" : "MM");
			CHECKF(r == 0 && in.orientation == o && im.w == dw && im.h == dh &&
			       near(px_at(&im, cx, cy), 255, 0, 0, 40) &&
			       near(px_at(&im, ox, oy), 128, 128, 128, 20), name,
			       "%s %dx%d", r ? err.msg : "", im.w, im.h);
			img_rgb_free(&im);
			buf_free(&e);
		}
	}
	/* apply_orientation = 0 keeps the stored layout */
	buf e6 = jpeg_with_exif(&j, 6, 0);
	img_decode_opts o;
	img_decode_opts_default(&o);
	o.apply_orientation = 0;
	int r = decode(c, &e6, &o, &im, &in, &err);
	CHECK(r == 0 && im.w == w && im.h == h && in.orientation == 6 &&
	      near(px_at(&im, 3, 3), 255, 0, 0, 40), "jpeg orientation not applied when off");
	img_rgb_free(&im);

	/* WebP: EXIF chunk in a VP8X container */
	uint8_t *out = NULL;
	buf ll = webp_wrap(out, WebPEncodeLosslessRGB(p, W, H, W * 3, &out));
	buf we = webp_with_exif(&ll, W, H, 8);
	r = decode(c, &we, NULL, &im, &in, &err);
	int ok = r == 0 && in.orientation == 8 && im.w == H && im.h == W;
	for (int y = 0; ok && y < im.h; y++)
		for (int x = 0; ok && x < im.w; x++) {
			int sx, sy;
			stored_coord(8, W, H, x, y, &sx, &sy);
			ok = !memcmp(px_at(&im, x, y), p + (sy * W + sx) * 3, 3);
		}
	CHECKF(ok, "webp exif orientation 8", "%s", r ? err.msg : "pixels differ");
	img_rgb_free(&im);

	/* broken EXIF blocks are ignored, never trusted */
	buf bad = jpeg_with_exif(&j, 6, 0);
	for (size_t i = 14; i < 14 + 38; i++) {   /* the TIFF block */
		buf m = { 0 };
		buf_append(&m, bad.data, bad.len);
		m.data[i] ^= 0xFF;
		if (img_probe(m.data, m.len, &in, &err) != 0 || in.orientation < 1 || in.orientation > 8)
			ok = 0;
		buf_free(&m);
	}
	CHECK(ok, "jpeg corrupt exif still probes");

	buf_free(&png); buf_free(&j); buf_free(&e6); buf_free(&ll); buf_free(&we); buf_free(&bad);
	free(p); free(g);
}

/* One-pixel-wide images through every decoder, hint and orientation. */
static void test_tiny(img_ctx *c)
{
	static const int dims[][2] = { { 1, 1 }, { 1, 3 }, { 5, 1 } };
	uint8_t px[15 * 3];
	for (int i = 0; i < 45; i++)
		px[i] = (uint8_t)(i * 17);
	int ok = 1;
	char why[1100] = "";
	for (size_t k = 0; k < 3; k++) {
		int w = dims[k][0], h = dims[k][1];
		uint8_t *out = NULL;
		buf f[4];
		f[0] = jpeg_rgb(px, w, h, 90);
		f[1] = jpeg_with_exif(&f[0], 6, 1);
		f[2] = png_make(px, w, h, SPNG_COLOR_TYPE_TRUECOLOR, 8, 1, NULL, NULL);
		f[3] = webp_wrap(out, WebPEncodeRGB(px, w, h, w * 3, 90, &out));
		for (int i = 0; i < 8; i++) {
			/* without a hint the full size, with a 1x1 hint anything
			 * from 1x1 up to it */
			img_decode_opts o;
			img_decode_opts_default(&o);
			o.want_w = o.want_h = i / 4;
			img_rgb im;
			mvl_err err;
			int r = decode(c, &f[i % 4], &o, &im, NULL, &err);
			int ew = i % 4 == 1 ? h : w, eh = i % 4 == 1 ? w : h;
			if (r || (i < 4 && (im.w != ew || im.h != eh)) ||
			    im.w < 1 || im.h < 1 || im.w > ew || im.h > eh) {
				if (ok)
					snprintf(why, sizeof why, "%dx%d file %d: %s %dx%d", w, h, i,
						 r ? err.msg : "", im.w, im.h);
				ok = 0;
			}
			img_rgb_free(&im);
		}
		for (int i = 0; i < 4; i++)
			buf_free(&f[i]);
	}
	CHECKF(ok, "tiny images decode", "%s", why);
}

/* Headers that claim far more pixels than they carry. */
static void test_bombs(img_ctx *c)
{
	img_rgb im;
	img_info in;
	mvl_err err;

	/* PNG IHDR 60000x60000 with a valid CRC, then junk */
	buf png = { 0 };
	buf_append(&png, "\x89PNG\r\n\x1a\n", 8);
	uint8_t ih[13] = { 0 };
	put_be32(ih, 60000);
	put_be32(ih + 4, 60000);
	ih[8] = 8; ih[9] = 2;
	png_chunk(&png, "IHDR", ih, 13);
	for (int i = 0; i < 150; i++)
		buf_append(&png, "\x55", 1);
	CHECK(img_probe(png.data, png.len, &in, &err) == 0 && in.width == 60000 && in.height == 60000,
	      "bomb png probes");
	int r = decode(c, &png, NULL, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "too_large: ") && !im.px, "bomb png refused", "%s", err.msg);

	/* within max_pixels but impossible in 200 bytes */
	put_be32(png.data + 16, 12000);
	put_be32(png.data + 20, 12000);
	put_be32(png.data + 29, (uint32_t)crc32(0, png.data + 12, 17));
	r = decode(c, &png, NULL, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "corrupt_image: "), "bomb png small file refused", "%s", err.msg);

	/* JPEG: SOF0 claiming 60000x60000 (and 65535x65535) in 200 bytes */
	uint8_t jb[200];
	memset(jb, 0, sizeof jb);
	memcpy(jb, "\xFF\xD8\xFF\xC0\x00\x11\x08", 7);
	put_be16(jb + 7, 60000);
	put_be16(jb + 9, 60000);
	jb[11] = 3;
	buf jpg = { 0 };
	buf_append(&jpg, jb, sizeof jb);
	CHECK(img_probe(jpg.data, jpg.len, &in, &err) == 0 && in.width == 60000, "bomb jpeg probes");
	r = decode(c, &jpg, NULL, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "too_large: "), "bomb jpeg refused", "%s", err.msg);
	put_be16(jpg.data + 7, 65535);
	put_be16(jpg.data + 9, 65535);
	img_decode_opts o;
	img_decode_opts_default(&o);
	o.max_pixels = 0;    /* no limit: the size check must still stop it */
	r = decode(c, &jpg, &o, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "corrupt_image: "), "bomb jpeg unlimited refused", "%s", err.msg);
	put_be16(jpg.data + 7, 12000);
	put_be16(jpg.data + 9, 12000);
	r = decode(c, &jpg, NULL, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "corrupt_image: "), "bomb jpeg small file refused", "%s", err.msg);

	/* WebP VP8X canvas 16384 x 16384 */
	uint8_t wb[40] = "RIFF\x20\0\0\0WEBPVP8X\x0a\0\0\0";
	put_le24(wb + 24, 16383);
	put_le24(wb + 27, 16383);
	buf wp = { 0 };
	buf_append(&wp, wb, sizeof wb);
	CHECK(img_probe(wp.data, wp.len, &in, &err) == 0 && in.width == 16384, "bomb webp probes");
	r = decode(c, &wp, NULL, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "too_large: "), "bomb webp refused", "%s", err.msg);

	/* a real image over a small max_pixels */
	uint8_t *g = gradient(40, 30);
	buf j = jpeg_rgb(g, 40, 30, 80);
	o.max_pixels = 40 * 30 - 1;
	r = decode(c, &j, &o, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "too_large: "), "max_pixels refuses", "%s", err.msg);
	o.max_pixels = 40 * 30;
	r = decode(c, &j, &o, &im, NULL, &err);
	CHECKF(r == 0, "max_pixels inclusive", "%s", err.msg);
	img_rgb_free(&im);

	/* zero sizes */
	buf z = { 0 };
	buf_append(&z, j.data, j.len);
	for (size_t i = 2; i + 9 < z.len; i++)
		if (z.data[i] == 0xFF && z.data[i + 1] == 0xC0) {
			put_be16(z.data + i + 5, 0);
			break;
		}
	r = decode(c, &z, NULL, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "corrupt_image: "), "jpeg zero height refused", "%s", err.msg);

	buf_free(&png); buf_free(&jpg); buf_free(&wp); buf_free(&j); buf_free(&z);
	free(g);
}

/* Every prefix of a valid file must be refused with a reason (or, for
 * PNG after the image data is complete, decode to the right pixels). */
static int truncations(img_ctx *c, const buf *b, size_t ok_from, const uint8_t *want,
		       size_t want_len, char *why, size_t why_len)
{
	img_rgb im;
	mvl_err err;
	img_decode_opts o;
	img_decode_opts_default(&o);
	for (size_t n = 0; n < b->len; n++) {
		int r = img_decode(c, b->data, n, &o, &im, NULL, &err);
		if (r == 0) {
			int good = n >= ok_from && want &&
				   (size_t)im.w * im.h * 3 == want_len && !memcmp(im.px, want, want_len);
			img_rgb_free(&im);
			if (!good) {
				snprintf(why, why_len, "prefix %zu of %zu decoded", n, b->len);
				return 0;
			}
		} else if (!starts(err.msg, "corrupt_image: ") && !starts(err.msg, "not_an_image: ")) {
			snprintf(why, why_len, "prefix %zu: %s", n, err.msg);
			return 0;
		} else if (im.px) {
			snprintf(why, why_len, "prefix %zu: pixels left on error", n);
			return 0;
		}
	}
	return 1;
}

/* The end of the last IDAT chunk's data: past it (even without the CRC)
 * nothing of the image is lost. */
static size_t png_idat_end(const buf *b)
{
	size_t p = 8, end = b->len;
	while (p + 8 <= b->len) {
		uint32_t len = (uint32_t)b->data[p] << 24 | b->data[p + 1] << 16 |
			       b->data[p + 2] << 8 | b->data[p + 3];
		if (!memcmp(b->data + p + 4, "IDAT", 4))
			end = p + 8 + len;
		p += 12 + (size_t)len;
	}
	return end;
}

static void test_truncation(img_ctx *c)
{
	int w = 48, h = 32;
	uint8_t *g = gradient(w, h);
	char why[1100] = "";
	uint8_t *out = NULL;

	buf j = jpeg_rgb(g, w, h, 90);
	CHECKF(truncations(c, &j, SIZE_MAX, NULL, 0, why, sizeof why), "truncated jpeg baseline", "%s", why);
	buf jp = jpeg_make(g, w, h, TJPF_RGB, TJSAMP_420, 90, TJFLAG_PROGRESSIVE);
	CHECKF(truncations(c, &jp, SIZE_MAX, NULL, 0, why, sizeof why), "truncated jpeg progressive", "%s", why);
	buf je = jpeg_with_exif(&j, 6, 1);
	CHECKF(truncations(c, &je, SIZE_MAX, NULL, 0, why, sizeof why), "truncated jpeg exif", "%s", why);

	buf p = png_make(g, w, h, SPNG_COLOR_TYPE_TRUECOLOR, 8, 0, NULL, NULL);
	CHECKF(truncations(c, &p, png_idat_end(&p), g, (size_t)w * h * 3, why, sizeof why),
	       "truncated png", "%s", why);
	buf pi = png_make(g, w, h, SPNG_COLOR_TYPE_TRUECOLOR, 8, 1, NULL, NULL);
	CHECKF(truncations(c, &pi, png_idat_end(&pi), g, (size_t)w * h * 3, why, sizeof why),
	       "truncated png interlaced", "%s", why);

	buf wl = webp_wrap(out, WebPEncodeRGB(g, w, h, w * 3, 80, &out));
	CHECKF(truncations(c, &wl, SIZE_MAX, NULL, 0, why, sizeof why), "truncated webp lossy", "%s", why);
	buf wll = webp_wrap(out, WebPEncodeLosslessRGB(g, w, h, w * 3, &out));
	CHECKF(truncations(c, &wll, SIZE_MAX, NULL, 0, why, sizeof why), "truncated webp lossless", "%s", why);
	uint8_t fr[8 * 8 * 4];
	for (int i = 0; i < 64; i++)
		memcpy(fr + i * 4, i & 1 ? "\x10\x20\x30\xff" : "\xf0\x00\x00\x80", 4);
	buf f = webp_wrap(out, WebPEncodeLosslessRGBA(fr, 8, 8, 32, &out));
	buf an = webp_anim(&f, 8, 8, 12, 12, 1, 1);
	CHECKF(truncations(c, &an, SIZE_MAX, NULL, 0, why, sizeof why), "truncated webp animated", "%s", why);

	buf_free(&j); buf_free(&jp); buf_free(&je); buf_free(&p); buf_free(&pi);
	buf_free(&wl); buf_free(&wll); buf_free(&f); buf_free(&an);
	free(g);
}

/* Random bytes, random bytes behind each signature, and bit flips of
 * valid files: any outcome but a crash, a leak or a reason-less error. */
static void test_garbage(img_ctx *c)
{
	img_rgb im;
	img_info in;
	mvl_err err;
	img_decode_opts o;
	img_decode_opts_default(&o);
	o.max_pixels = 1 << 22;   /* keeps flipped sizes cheap */
	int bad = 0;
	char why[1100] = "";

	int r = img_decode(c, NULL, 0, &o, &im, &in, &err);
	CHECKF(r < 0 && starts(err.msg, "not_an_image: ") && in.format == IMG_UNKNOWN,
	       "empty input", "%s", err.msg);
	r = img_decode(c, (const uint8_t *)"\xff", 1, &o, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "not_an_image: "), "one byte", "%s", err.msg);
	r = img_decode(c, (const uint8_t *)"<!DOCTYPE html><html>", 21, &o, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "not_an_image: "), "html page", "%s", err.msg);
	r = img_decode(c, (const uint8_t *)"GIF89a\x01\x00\x01\x00\x00\x00\x00", 13, &o, &im, NULL, &err);
	CHECKF(r < 0 && starts(err.msg, "unsupported_image: "), "gif unsupported", "%s", err.msg);
	CHECK(img_probe((const uint8_t *)"\x89PNG\r\n\x1a\n", 8, &in, &err) < 0, "png signature only");

	static const char *const sig[] = {
		"", "\xFF\xD8\xFF", "\xFF\xD8\xFF\xE0\x00\x10JFIF\0", "\x89PNG\r\n\x1a\n",
		"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", "RIFF\0\0\0\0WEBPVP8 ", "RIFF\0\0\0\0WEBPVP8L",
		"RIFF\0\0\0\0WEBPVP8X",
	};
	static const size_t siglen[] = { 0, 3, 11, 8, 16, 16, 16, 16 };
	uint8_t data[600];
	for (int t = 0; t < 4000; t++) {
		int s = t % 8;
		size_t n = siglen[s] + rnd() % (sizeof data - siglen[s]);
		memcpy(data, sig[s], siglen[s]);
		for (size_t i = siglen[s]; i < n; i++)
			data[i] = (uint8_t)rnd();
		r = img_decode(c, data, n, &o, &im, NULL, &err);
		if (r == 0)
			img_rgb_free(&im);
		else if (!has_reason(err.msg) && !bad++)
			snprintf(why, sizeof why, "sig %d: %s", s, err.msg);
		img_probe(data, n, &in, &err);
	}
	CHECKF(!bad, "random bytes", "%d bad, first %s", bad, why);

	/* bit flips and byte overwrites of valid files */
	int w = 40, h = 24;
	uint8_t *g = gradient(w, h), *out = NULL;
	uint8_t rgba[16 * 4];
	for (int i = 0; i < 16; i++)
		memcpy(rgba + i * 4, i & 1 ? "\x10\x20\x30\xff" : "\xf0\x00\x00\x80", 4);
	buf fr = webp_wrap(out, WebPEncodeLosslessRGBA(rgba, 4, 4, 16, &out));
	buf files[8];
	files[0] = jpeg_rgb(g, w, h, 85);
	files[1] = jpeg_make(g, w, h, TJPF_RGB, TJSAMP_420, 85, TJFLAG_PROGRESSIVE);
	files[2] = jpeg_with_exif(&files[0], 6, 0);
	files[3] = png_make(g, w, h, SPNG_COLOR_TYPE_TRUECOLOR, 8, 1, NULL, NULL);
	files[4] = webp_wrap(out, WebPEncodeRGB(g, w, h, w * 3, 80, &out));
	files[5] = webp_wrap(out, WebPEncodeLosslessRGB(g, w, h, w * 3, &out));
	files[6] = webp_anim(&fr, 4, 4, 6, 6, 0, 0);
	files[7] = webp_with_exif(&files[5], w, h, 3);
	static const char *const names[] = {
		"mutated jpeg", "mutated jpeg progressive", "mutated jpeg exif", "mutated png",
		"mutated webp lossy", "mutated webp lossless", "mutated webp animated",
		"mutated webp exif",
	};
	for (int k = 0; k < 8; k++) {
		buf m = { 0 };
		buf_append(&m, files[k].data, files[k].len);
		bad = 0;
		for (int t = 0; t < 1500; t++) {
			memcpy(m.data, files[k].data, m.len);
			int flips = 1 + rnd() % 4;
			for (int i = 0; i < flips; i++) {
				size_t at = rnd() % m.len;
				if (rnd() & 1)
					m.data[at] ^= (uint8_t)(1 << (rnd() % 8));
				else
					m.data[at] = (uint8_t)rnd();
			}
			size_t n = rnd() % 4 ? m.len : rnd() % m.len;
			r = img_decode(c, m.data, n, &o, &im, &in, &err);
			if (r == 0) {
				if (!im.px || im.w < 1 || im.h < 1)
					bad++;
				img_rgb_free(&im);
			} else if (!has_reason(err.msg) && !bad++) {
				snprintf(why, sizeof why, "%s", err.msg);
			}
		}
		CHECKF(!bad, names[k], "%d bad, first %s", bad, why);
		buf_free(&m);
	}
	for (int k = 0; k < 8; k++)
		buf_free(&files[k]);
	buf_free(&fr);
	free(g);
}

static void test_resize(void)
{
	mvl_err err;
	img_rgb in = { 23, 17, pattern(23, 17) }, out;

	/* Pillow 9.4: Image.fromarray(pattern(23, 17)).resize((9, 7), BICUBIC) */
	static const uint8_t down[9 * 7 * 3] = {
		18, 69, 124, 105, 151, 154, 147, 142, 121, 130, 131, 136, 132, 120, 120, 129,
		132, 132, 85, 112, 158, 121, 81, 126, 113, 118, 144, 57, 111, 167, 137, 149,
		142, 111, 120, 134, 123, 122, 130, 118, 119, 121, 89, 122, 138, 157, 124, 102,
		152, 148, 96, 139, 131, 124, 101, 154, 186, 144, 136, 113, 106, 123, 138, 137,
		131, 117, 122, 123, 141, 136, 124, 99, 113, 138, 143, 128, 135, 134, 127, 128,
		129, 140, 181, 170, 128, 118, 104, 134, 120, 141, 124, 130, 119, 134, 141, 125,
		103, 110, 135, 160, 106, 93, 133, 129, 120, 110, 142, 125, 162, 171, 110, 114,
		113, 125, 138, 150, 116, 132, 151, 123, 114, 113, 133, 149, 134, 98, 129, 148,
		110, 126, 142, 143, 102, 141, 105, 152, 132, 64, 112, 119, 122, 133, 132, 128,
		123, 135, 118, 133, 134, 113, 98, 104, 139, 110, 90, 119, 112, 131, 124, 154,
		119, 106, 148, 100, 94, 117, 112, 135, 139, 137, 122, 128, 144, 140, 91, 82,
		107, 158, 165, 121, 152, 155, 140, 146, 133, 113, 137, 94, 150,
	};
	int r = img_resize(&in, 9, 7, &out, &err);
	int maxd = 0;
	for (int i = 0; r == 0 && i < 9 * 7 * 3; i++)
		if (abs(out.px[i] - down[i]) > maxd)
			maxd = abs(out.px[i] - down[i]);
	CHECKF(r == 0 && out.w == 9 && out.h == 7 && maxd <= 1, "resize matches pillow downscale",
	       "max diff %d", maxd);
	img_rgb_free(&out);

	/* Other shapes: every 37th byte and the sum, also from Pillow. */
	static const struct {
		int w, h;
		long sum;
		int n;
		uint8_t every37[56];
	} ref[] = {
		{ 31, 22, 256931, 56, { 0, 122, 63, 153, 89, 228, 115, 111, 78, 26, 2, 145, 163,
			110, 139, 94, 153, 108, 191, 80, 142, 160, 158, 48, 30, 97, 162, 225, 62,
			117, 146, 166, 149, 43, 14, 70, 169, 210, 96, 25, 160, 151, 188, 77, 7,
			227, 144, 170, 45, 18, 115, 153, 179, 141, 49, 185 } },
		{ 23, 5, 43493, 10, { 17, 109, 184, 103, 61, 123, 187, 121, 82, 156 } },
		{ 7, 17, 44863, 10, { 14, 93, 136, 116, 150, 90, 132, 117, 101, 152 } },
		{ 5, 40, 75397, 17, { 45, 116, 170, 110, 118, 163, 121, 114, 84, 84, 160, 122,
			165, 110, 110, 132, 126 } },
	};
	for (size_t k = 0; k < sizeof ref / sizeof ref[0]; k++) {
		char name[64];
		snprintf(name, sizeof name, "resize matches pillow %dx%d", ref[k].w, ref[k].h);
		r = img_resize(&in, ref[k].w, ref[k].h, &out, &err);
		long sum = 0;
		size_t n = (size_t)ref[k].w * ref[k].h * 3;
		maxd = 0;
		for (size_t i = 0; r == 0 && i < n; i++)
			sum += out.px[i];
		for (int i = 0; r == 0 && i < ref[k].n; i++)
			if (abs(out.px[i * 37] - ref[k].every37[i]) > maxd)
				maxd = abs(out.px[i * 37] - ref[k].every37[i]);
		/* a differing rounding may move a byte by one */
		CHECKF(r == 0 && maxd <= 1 && labs(sum - ref[k].sum) <= (long)n / 20, name,
		       "max diff %d, sum %ld want %ld", maxd, sum, ref[k].sum);
		img_rgb_free(&out);
	}
	free(in.px);

	/* constant images stay constant, whatever the sizes */
	static const int sizes[][4] = {
		{ 100, 80, 7, 5 }, { 7, 5, 100, 80 }, { 1, 1, 13, 9 }, { 13, 9, 1, 1 },
		{ 640, 480, 224, 168 }, { 1, 300, 1, 7 }, { 300, 1, 2, 1 }, { 3, 3, 3, 3 },
		{ 999, 2, 1, 5 },
	};
	int ok = 1;
	for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		int w = sizes[k][0], h = sizes[k][1];
		img_rgb cst = { w, h, xmalloc((size_t)w * h * 3) };
		for (int i = 0; i < w * h; i++)
			memcpy(cst.px + i * 3, "\x00\x7f\xff", 3);
		r = img_resize(&cst, sizes[k][2], sizes[k][3], &out, &err);
		ok &= r == 0 && out.w == sizes[k][2] && out.h == sizes[k][3];
		for (int i = 0; r == 0 && i < out.w * out.h; i++)
			ok &= !memcmp(out.px + i * 3, "\x00\x7f\xff", 3);
		img_rgb_free(&out);
		free(cst.px);
	}
	CHECK(ok, "resize constant stays constant");

	/* a smooth gradient shrunk stays the same gradient */
	img_rgb gr = { 400, 300, gradient(400, 300) };
	r = img_resize(&gr, 100, 75, &out, &err);
	double e = 0;
	for (int y = 0; r == 0 && y < 75; y++)
		for (int x = 0; x < 100; x++)
			e += abs(px_at(&out, x, y)[0] - (int)((x * 4 + 1.5) * 255 / 399));
	CHECKF(r == 0 && e / 7500 < 1.0, "resize gradient", "mean error %.2f", e / 7500);
	img_rgb_free(&out);
	r = img_resize(&gr, 400, 300, &out, &err);
	CHECK(r == 0 && !memcmp(out.px, gr.px, 400 * 300 * 3), "resize same size copies");
	img_rgb_free(&out);
	free(gr.px);

	r = img_resize(&in, 0, 5, &out, &err);
	CHECK(r < 0 && !out.px, "resize to zero refused");
}

static void test_smart_resize(void)
{
	static const struct { int h, w, f; uint64_t mn, mx; int eh, ew; } v[] = {
		{ 1080, 1920, 28, 3136, 1003520, 728, 1316 },
		{ 480, 640, 28, 3136, 1003520, 476, 644 },
		{ 70, 42, 28, 3136, 1003520, 56, 56 },       /* 2.5 rounds to 2 */
		{ 98, 126, 28, 3136, 1003520, 112, 112 },    /* 3.5 -> 4, 4.5 -> 4 */
		{ 154, 98, 28, 3136, 1003520, 168, 112 },
		{ 3000, 4000, 28, 3136, 1003520, 840, 1148 },
		{ 4032, 3024, 28, 200704, 1003520, 1148, 840 },
		{ 10, 10, 28, 3136, 1003520, 56, 56 },
		{ 1, 200, 28, 3136, 1003520, 28, 196 },
		{ 224, 224, 28, 3136, 50176, 224, 224 },
		{ 100, 5000, 28, 3136, 1003520, 112, 5012 },
		{ 150, 150, 28, 3136, 1003520, 140, 140 },
		{ 1000, 1000, 14, 3136, 200000, 434, 434 },
	};
	mvl_err err;
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		int oh = 0, ow = 0;
		char name[80];
		snprintf(name, sizeof name, "smart_resize %dx%d", v[i].h, v[i].w);
		int r = smart_resize(v[i].h, v[i].w, v[i].f, v[i].mn, v[i].mx, &oh, &ow, &err);
		CHECKF(r == 0 && oh == v[i].eh && ow == v[i].ew, name, "got %dx%d want %dx%d",
		       oh, ow, v[i].eh, v[i].ew);
	}
	int oh, ow;
	CHECK(smart_resize(1, 201, 28, 3136, 1003520, &oh, &ow, &err) < 0, "smart_resize ratio above 200");
	CHECK(smart_resize(10, 2000, 28, 3136, 1003520, &oh, &ow, &err) == 0, "smart_resize ratio 200 ok");
	CHECK(smart_resize(0, 10, 28, 3136, 1003520, &oh, &ow, &err) < 0, "smart_resize zero side");
}

static void test_fit(void)
{
	int w, h;
	fit_max_side(1024, 768, 224, &w, &h);
	CHECK(w == 224 && h == 168, "fit landscape");
	fit_max_side(768, 1024, 224, &w, &h);
	CHECK(w == 168 && h == 224, "fit portrait");
	fit_max_side(100, 50, 224, &w, &h);
	CHECK(w == 100 && h == 50, "fit never upscales");
	fit_max_side(10000, 10, 224, &w, &h);
	CHECK(w == 224 && h == 1, "fit keeps a side of at least 1");
	fit_max_side(333, 333, 100, &w, &h);
	CHECK(w == 100 && h == 100, "fit square");
	fit_max_side(1000, 667, 300, &w, &h);
	CHECK(w == 300 && h == 200, "fit rounds");
}

static void test_encode(img_ctx *c)
{
	int w = 50, h = 30;
	img_rgb im = { w, h, gradient(w, h) }, back;
	buf out = { 0 };
	mvl_err err;
	img_info in;
	static const struct { img_format f; int q; double tol; const char *name; } v[] = {
		{ IMG_JPEG, 90, 2.5, "encode jpeg" },
		{ IMG_WEBP, 90, 3.0, "encode webp lossy" },
		{ IMG_WEBP, 101, 0, "encode webp lossless" },
		{ IMG_PNG, 0, 0, "encode png" },
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		/* twice into the same buffer: len is reset, the handle reused */
		int r = img_encode(c, &im, v[i].f, v[i].q, &out, &err);
		r |= img_encode(c, &im, v[i].f, v[i].q, &out, &err);
		r |= img_probe(out.data, out.len, &in, &err);
		r |= in.format != v[i].f || in.width != w || in.height != h;
		if (r == 0)
			r = img_decode(c, out.data, out.len, NULL, &back, NULL, &err);
		double e = r ? 999 : mean_abs_diff(back.px, im.px, (size_t)w * h * 3);
		CHECKF(r == 0 && e <= v[i].tol, v[i].name, "%s error %.2f", r ? err.msg : "", e);
		if (r == 0)
			img_rgb_free(&back);
	}
	/* JPEG 4:2:0: the SOF0 luma sampling factor is 0x22 */
	img_encode(c, &im, IMG_JPEG, 80, &out, &err);
	int samp = 0;
	for (size_t i = 2; i + 12 < out.len; i++)
		if (out.data[i] == 0xFF && out.data[i + 1] == 0xC0) {
			samp = out.data[i + 11];
			break;
		}
	CHECK(samp == 0x22, "encode jpeg 4:2:0");
	img_rgb empty = { 0, 0, NULL };
	CHECK(img_encode(c, &empty, IMG_JPEG, 80, &out, &err) < 0, "encode empty refused");
	CHECK(img_encode(c, &im, IMG_UNKNOWN, 80, &out, &err) < 0, "encode unknown refused");
	buf_free(&out);
	free(im.px);
}

int main(void)
{
	img_ctx *c = img_ctx_new();
	test_names();
	test_jpeg(c);
	test_jpeg_scaling(c);
	test_png(c);
	test_webp(c);
	test_orientation(c);
	test_tiny(c);
	test_bombs(c);
	test_truncation(c);
	test_garbage(c);
	test_resize();
	test_smart_resize();
	test_fit();
	test_encode(c);
	img_ctx_free(c);
	return check_done();
}
