/* image.c: format sniffing, header probing, decoding (with EXIF
 * orientation and alpha compositing) and encoding of JPEG, PNG and WebP.
 * Resampling lives in resize.c.
 *
 * Web data is dirty: every length read from a file is checked against the
 * bytes actually present, the pixel count is checked against max_pixels
 * before anything is allocated, and a file too small to hold the pixels
 * it claims is refused before a decoder spends time on it.
 */
#include "image.h"

#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <spng.h>
#include <turbojpeg.h>
#include <webp/decode.h>
#include <webp/demux.h>
#include <webp/encode.h>

struct img_ctx {
	tjhandle tjd, tjc;  /* created on first use: many threads only encode */
	uint8_t *scratch;   /* RGBA / CMYK staging, reused across images */
	size_t scratch_cap;
};

/* ---------------------------------------------------------------- names */

const char *img_format_name(img_format f)
{
	switch (f) {
	case IMG_JPEG: return "jpeg";
	case IMG_PNG: return "png";
	case IMG_WEBP: return "webp";
	default: return "unknown";
	}
}

const char *img_format_ext(img_format f)
{
	switch (f) {
	case IMG_JPEG: return "jpg";
	case IMG_PNG: return "png";
	case IMG_WEBP: return "webp";
	default: return "bin";
	}
}

img_format img_format_from_ext(const char *ext)
{
	if (!ext)
		return IMG_UNKNOWN;
	if (!strcmp(ext, "jpg") || !strcmp(ext, "jpeg"))
		return IMG_JPEG;
	if (!strcmp(ext, "png"))
		return IMG_PNG;
	if (!strcmp(ext, "webp"))
		return IMG_WEBP;
	return IMG_UNKNOWN;
}

/* ----------------------------------------------------------- byte reads */

static unsigned rd_be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }
static unsigned rd_le16(const uint8_t *p) { return (unsigned)p[1] << 8 | p[0]; }
static uint32_t rd_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t rd_le32(const uint8_t *p)
{
	return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}
static uint32_t rd_le24(const uint8_t *p)
{
	return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* Formats, with a reason word in front, the way callers count failures. */
static int fail(mvl_err *err, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(mvl_err *err, const char *reason, const char *fmt, ...)
{
	char detail[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(detail, sizeof detail, fmt, ap);
	va_end(ap);
	return mvl_errf(err, "%s: %s", reason, detail);
}

/* ----------------------------------------------------------------- EXIF */

/* exif_orientation() : tag 0x0112 of IFD0 in a TIFF block t[0..n), or 1.
 * Only IFD0 is read: that is where every writer puts the orientation. */
static int exif_orientation(const uint8_t *t, size_t n)
{
	if (n >= 6 && !memcmp(t, "Exif\0\0", 6)) {
		/* some PNG/WebP writers keep the JPEG APP1 prefix */
		t += 6;
		n -= 6;
	}
	if (n < 8)
		return 1;
	int le;
	if (t[0] == 'I' && t[1] == 'I')
		le = 1;
	else if (t[0] == 'M' && t[1] == 'M')
		le = 0;
	else
		return 1;
	unsigned (*r16)(const uint8_t *) = le ? rd_le16 : rd_be16;
	uint32_t (*r32)(const uint8_t *) = le ? rd_le32 : rd_be32;
	if (r16(t + 2) != 42)
		return 1;
	uint32_t ifd = r32(t + 4);
	if (ifd > n - 2)
		return 1;
	unsigned count = r16(t + ifd);
	size_t e = (size_t)ifd + 2;
	for (unsigned i = 0; i < count && e + 12 <= n; i++, e += 12) {
		if (r16(t + e) != 0x0112)
			continue;
		unsigned type = r16(t + e + 2);
		uint32_t v = type == 3 ? r16(t + e + 8) :
			     type == 4 ? r32(t + e + 8) : 0;
		return v >= 1 && v <= 8 ? (int)v : 1;
	}
	return 1;
}

/* ---------------------------------------------------------------- probe */

/* What decoding needs beyond img_info, found on the same walk. */
typedef struct probe_extra {
	size_t sos;              /* JPEG: offset of the first SOS marker, 0: none */
	int sof;                 /* JPEG: the SOFn marker byte */
	int adobe;               /* JPEG: an Adobe APP14 segment (inverted CMYK) */
	int depth;               /* PNG: bit depth */
	int samples;             /* PNG: samples per pixel (palette: 1) */
	const char *unsupported; /* a known format we do not decode ("gif") */
} probe_extra;

static int is_sof(unsigned m)
{
	return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

/* Walks the JPEG markers up to the first scan.  Between segments, stray
 * bytes are skipped to the next 0xFF as libjpeg does (with a warning). */
static int probe_jpeg(const uint8_t *d, size_t n, img_info *in,
		      probe_extra *x, mvl_err *err)
{
	int have_sof = 0, have_exif = 0;
	size_t p = 2;
	while (p + 2 <= n) {
		if (d[p] != 0xFF) {
			const uint8_t *f = memchr(d + p, 0xFF, n - p);
			if (!f)
				break;
			p = (size_t)(f - d);
			continue;
		}
		unsigned m = d[p + 1];
		if (m == 0xFF) {        /* fill byte */
			p++;
			continue;
		}
		p += 2;
		if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD8))
			continue;       /* no length field */
		if (m == 0xD9)
			break;          /* EOI before any scan */
		if (m == 0xDA) {
			x->sos = p - 2;
			break;
		}
		if (p + 2 > n)
			break;
		size_t len = rd_be16(d + p);
		if (len < 2)
			return mvl_errf(err, "bad length in JPEG marker 0x%02x", m);
		const uint8_t *s = d + p + 2;
		size_t avail = n - (p + 2) < len - 2 ? n - (p + 2) : len - 2;
		if (is_sof(m) && !have_sof) {
			if (avail < 6)
				return mvl_errf(err, "truncated header");
			in->height = (int)rd_be16(s + 1);
			in->width = (int)rd_be16(s + 3);
			in->channels = s[5];
			x->sof = (int)m;
			have_sof = 1;
		} else if (m == 0xE1 && !have_exif && avail >= 6 &&
			   !memcmp(s, "Exif\0\0", 6)) {
			in->orientation = exif_orientation(s, avail);
			have_exif = 1;
		} else if (m == 0xEE && avail >= 12 && !memcmp(s, "Adobe", 5)) {
			x->adobe = 1;   /* libjpeg also wants all 12 bytes */
		}
		p += len;
	}
	if (!have_sof)
		return mvl_errf(err, "truncated header (no JPEG frame header)");
	return 0;
}

static int probe_png(const uint8_t *d, size_t n, img_info *in,
		     probe_extra *x, mvl_err *err)
{
	if (n < 8 + 8 + 13)
		return mvl_errf(err, "truncated header");
	if (rd_be32(d + 8) != 13 || memcmp(d + 12, "IHDR", 4))
		return mvl_errf(err, "PNG does not start with IHDR");
	uint32_t w = rd_be32(d + 16), h = rd_be32(d + 20);
	if (w > INT_MAX || h > INT_MAX)
		return mvl_errf(err, "bad PNG size %ux%u", w, h);
	in->width = (int)w;
	in->height = (int)h;
	x->depth = d[24];
	switch (d[25]) {
	case 0: in->channels = x->samples = 1; break;
	case 2: in->channels = x->samples = 3; break;
	case 3: in->channels = 3; x->samples = 1; break;
	case 4: in->channels = x->samples = 2; in->has_alpha = 1; break;
	case 6: in->channels = x->samples = 4; in->has_alpha = 1; break;
	default: return mvl_errf(err, "bad PNG colour type %d", d[25]);
	}
	/* The chunks before the image data: transparency, animation, EXIF. */
	size_t p = 8 + 8 + 13 + 4;
	while (p + 8 <= n) {
		uint32_t len = rd_be32(d + p);
		const uint8_t *type = d + p + 4;
		if (len > 0x7fffffffu || !memcmp(type, "IDAT", 4) ||
		    !memcmp(type, "IEND", 4))
			break;
		if (!memcmp(type, "tRNS", 4))
			in->has_alpha = 1;
		else if (!memcmp(type, "acTL", 4))
			in->animated = 1;
		else if (!memcmp(type, "eXIf", 4)) {
			size_t avail = n - (p + 8) < len ? n - (p + 8) : len;
			in->orientation = exif_orientation(d + p + 8, avail);
		}
		p += (size_t)len + 12;
	}
	return 0;
}

static int probe_webp(const uint8_t *d, size_t n, img_info *in, mvl_err *err)
{
	if (n < 20)
		return mvl_errf(err, "truncated header");
	const uint8_t *fourcc = d + 12, *s = d + 20;
	if (!memcmp(fourcc, "VP8 ", 4)) {
		/* frame tag (3 bytes), start code 9d 01 2a, 14-bit sizes */
		if (n < 30)
			return mvl_errf(err, "truncated header");
		if (s[3] != 0x9d || s[4] != 0x01 || s[5] != 0x2a)
			return mvl_errf(err, "bad VP8 start code");
		in->width = (int)(rd_le16(s + 6) & 0x3fff);
		in->height = (int)(rd_le16(s + 8) & 0x3fff);
		in->channels = 3;
		return 0;
	}
	if (!memcmp(fourcc, "VP8L", 4)) {
		/* signature 0x2f, then 14 bits width-1, 14 bits height-1, alpha */
		if (n < 25)
			return mvl_errf(err, "truncated header");
		if (s[0] != 0x2f)
			return mvl_errf(err, "bad VP8L signature");
		uint32_t b = rd_le32(s + 1);
		in->width = (int)(b & 0x3fff) + 1;
		in->height = (int)(b >> 14 & 0x3fff) + 1;
		in->has_alpha = (int)(b >> 28 & 1);
		in->channels = in->has_alpha ? 4 : 3;
		return 0;
	}
	if (!memcmp(fourcc, "VP8X", 4)) {
		/* flags, 3 reserved bytes, 24-bit canvas width-1 and height-1 */
		if (n < 30)
			return mvl_errf(err, "truncated header");
		in->animated = !!(s[0] & 0x02);
		in->has_alpha = !!(s[0] & 0x10);
		in->width = (int)rd_le24(s + 4) + 1;
		in->height = (int)rd_le24(s + 7) + 1;
		in->channels = in->has_alpha ? 4 : 3;
		if (!(s[0] & 0x08))
			return 0;
		size_t p = 12 + 8 + (size_t)rd_le32(d + 16) + (rd_le32(d + 16) & 1);
		while (p + 8 <= n) {
			size_t len = rd_le32(d + p + 4);
			if (!memcmp(d + p, "EXIF", 4)) {
				size_t avail = n - (p + 8) < len ? n - (p + 8) : len;
				in->orientation = exif_orientation(d + p + 8, avail);
				break;
			}
			p += 8 + len + (len & 1);
		}
		return 0;
	}
	return mvl_errf(err, "unknown WebP chunk '%.4s'", (const char *)fourcc);
}

/* Formats seen on the web that we recognise but do not decode, so that
 * rejects are counted as unsupported_image rather than not_an_image. */
static const char *sniff_other(const uint8_t *d, size_t n)
{
	if (n >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6)))
		return "gif";
	if (n >= 14 && d[0] == 'B' && d[1] == 'M' && rd_le32(d + 6) == 0)
		return "bmp";
	if (n >= 4 && (!memcmp(d, "II*\0", 4) || !memcmp(d, "MM\0*", 4)))
		return "tiff";
	if (n >= 12 && !memcmp(d + 4, "ftyp", 4)) {
		if (!memcmp(d + 8, "avif", 4) || !memcmp(d + 8, "avis", 4))
			return "avif";
		if (!memcmp(d + 8, "hei", 3) || !memcmp(d + 8, "mif1", 4) ||
		    !memcmp(d + 8, "hev", 3))
			return "heif";
	}
	if ((n >= 2 && d[0] == 0xFF && d[1] == 0x0A) ||
	    (n >= 12 && !memcmp(d, "\0\0\0\x0cJXL \r\n\x87\n", 12)))
		return "jxl";
	if (n >= 4 && !memcmp(d, "\0\0\1\0", 4))
		return "ico";
	return NULL;
}

static int probe(const uint8_t *d, size_t n, img_info *in, probe_extra *x,
		 mvl_err *err)
{
	memset(in, 0, sizeof *in);
	memset(x, 0, sizeof *x);
	in->orientation = 1;
	if (!d)
		n = 0;
	if (n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) {
		in->format = IMG_JPEG;
		return probe_jpeg(d, n, in, x, err);
	}
	if (n >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) {
		in->format = IMG_PNG;
		return probe_png(d, n, in, x, err);
	}
	if (n >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) {
		in->format = IMG_WEBP;
		return probe_webp(d, n, in, err);
	}
	x->unsupported = sniff_other(d, n);
	if (x->unsupported)
		return mvl_errf(err, "unsupported format '%s'", x->unsupported);
	if (n == 0)
		return mvl_errf(err, "not an image (empty)");
	char hex[9] = "";
	for (size_t i = 0; i < n && i < 4; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	return mvl_errf(err, "not an image (starts %s)", hex);
}

int img_probe(const uint8_t *data, size_t n, img_info *info, mvl_err *err)
{
	probe_extra x;
	return probe(data, n, info, &x, err);
}

/* -------------------------------------------------------------- context */

img_ctx *img_ctx_new(void)
{
	return xcalloc(1, sizeof(img_ctx));
}

void img_ctx_free(img_ctx *c)
{
	if (!c)
		return;
	if (c->tjd)
		tjDestroy(c->tjd);
	if (c->tjc)
		tjDestroy(c->tjc);
	free(c->scratch);
	free(c);
}

/* Scratch grows and is kept: the next image of the stream likely fits. */
static uint8_t *scratch(img_ctx *c, size_t n)
{
	if (n > c->scratch_cap) {
		free(c->scratch);
		c->scratch = malloc(n);
		c->scratch_cap = c->scratch ? n : 0;
	}
	return c->scratch;
}

void img_rgb_free(img_rgb *im)
{
	if (!im)
		return;
	free(im->px);
	im->px = NULL;
	im->w = im->h = 0;
}

void img_decode_opts_default(img_decode_opts *o)
{
	memset(o, 0, sizeof *o);
	o->max_pixels = 178956970;  /* Pillow's decompression-bomb error limit */
	o->bg[0] = o->bg[1] = o->bg[2] = 255;
	o->apply_orientation = 1;
}

/* The pixel buffer is the one big allocation per image; a failure here is
 * a refusal of this image, not the death of the stream. */
static int alloc_rgb(img_rgb *out, int w, int h, mvl_err *err)
{
	out->px = malloc((size_t)w * (size_t)h * 3);
	if (!out->px)
		return fail(err, "too_large", "cannot allocate %dx%d pixels", w, h);
	out->w = w;
	out->h = h;
	return 0;
}

/* out = (a*fg + (255-a)*bg + 127) / 255, per channel. */
static void composite(const uint8_t *rgba, uint8_t *rgb, size_t npx,
		      const uint8_t bg[3])
{
	for (size_t i = 0; i < npx; i++, rgba += 4, rgb += 3) {
		unsigned a = rgba[3];
		if (a == 255) {
			rgb[0] = rgba[0], rgb[1] = rgba[1], rgb[2] = rgba[2];
		} else if (a == 0) {
			rgb[0] = bg[0], rgb[1] = bg[1], rgb[2] = bg[2];
		} else {
			for (int k = 0; k < 3; k++)
				rgb[k] = (uint8_t)((a * rgba[k] + (255 - a) * bg[k] + 127) / 255);
		}
	}
}

/* The decoded size that still covers want (w x h, already in stored
 * orientation) with the aspect ratio kept: one side equals its want, the
 * other is rounded up.  Never larger than the stored size. */
static void cover_size(int W, int H, int ww, int wh, int *sw, int *sh)
{
	*sw = W;
	*sh = H;
	if (ww <= 0 || wh <= 0 || (ww >= W && wh >= H))
		return;
	if ((int64_t)ww * H >= (int64_t)wh * W) {     /* width binds */
		if (ww >= W)
			return;
		*sw = ww;
		*sh = (int)(((int64_t)H * ww + W - 1) / W);
	} else {
		if (wh >= H)
			return;
		*sh = wh;
		*sw = (int)(((int64_t)W * wh + H - 1) / H);
	}
	if (*sw < 1) *sw = 1;
	if (*sh < 1) *sh = 1;
}

/* ----------------------------------------------------------------- JPEG */

/* Huffman-coded JPEGs spend at least one bit on every luma block (the DC
 * code), so a file smaller than blocks/8 bytes cannot be whole.  This
 * refuses small files claiming huge sizes before the decoder allocates
 * and IDCTs hundreds of megapixels of nothing.  Arithmetic coding (SOF9
 * and up) can go below a bit per block, so it is not checked. */
static int jpeg_too_small(size_t n, const img_info *in, int sof)
{
	if (sof >= 0xC8)
		return 0;
	uint64_t blocks = (uint64_t)((in->width + 7) / 8) * (uint64_t)((in->height + 7) / 8);
	return (uint64_t)n * 8 < blocks;
}

/* An entropy-coded segment never contains FF D9, so a file with no EOI
 * after its first scan was cut short.  Usually the last two bytes. */
static int jpeg_has_eoi(const uint8_t *d, size_t n, size_t from)
{
	for (size_t i = n; i >= from + 2; i--)
		if (d[i - 1] == 0xD9 && d[i - 2] == 0xFF)
			return 1;
	return 0;
}

/* turbojpeg reports libjpeg warnings as failures with TJERR_WARNING and the
 * first warning's text.  Those that mean lost data make the image corrupt;
 * the rest (stray bytes between markers, odd JFIF versions, bad ICC
 * markers) are common on the web and harmless. */
static int jpeg_warning_is_fatal(const char *m)
{
	static const char *const bad[] = {
		"remature end", "bad Huffman code", "bad arithmetic code",
		"Inconsistent progression", "instead of RST",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (strstr(m, bad[i]))
			return 1;
	return 0;
}

/* After a hard error libjpeg may be left mid-header (turbojpeg 2.1 does
 * not abort the object when reading a header fails), and the next image
 * would inherit that state: the handle is dropped and made anew. */
static int jpeg_fail(img_ctx *c, mvl_err *err)
{
	const char *m = tjGetErrorStr2(c->tjd);
	int unsupported = strstr(m, "Unsupported JPEG process") ||
			  strstr(m, "Unsupported JPEG data precision") ||
			  strstr(m, "Unsupported color conversion");
	fail(err, unsupported ? "unsupported_image" : "corrupt_image", "%s", m);
	if (tjGetErrorCode(c->tjd) == TJERR_FATAL) {
		tjDestroy(c->tjd);
		c->tjd = NULL;
	}
	return -1;
}

/* The smallest DCT scale (<= 1) whose output still covers ww x wh. */
static tjscalingfactor jpeg_pick_scale(int W, int H, int ww, int wh)
{
	tjscalingfactor best = { 1, 1 };
	if (ww <= 0 || wh <= 0)
		return best;
	if (ww > W) ww = W;
	if (wh > H) wh = H;
	int nsf = 0;
	tjscalingfactor *sf = tjGetScalingFactors(&nsf);
	for (int i = 0; sf && i < nsf; i++) {
		if (sf[i].num > sf[i].denom)
			continue;
		if (TJSCALED(W, sf[i]) < ww || TJSCALED(H, sf[i]) < wh)
			continue;
		if ((int64_t)sf[i].num * best.denom < (int64_t)best.num * sf[i].denom)
			best = sf[i];
	}
	return best;
}

/* Stored values are ink amounts, or their complement in Adobe files
 * (Photoshop writes inverted CMYK and flags it with APP14). */
static void cmyk_to_rgb(const uint8_t *s, uint8_t *d, size_t npx, int adobe)
{
	unsigned flip = adobe ? 0 : 255;
	for (size_t i = 0; i < npx; i++, s += 4, d += 3) {
		unsigned k = s[3] ^ flip;  /* 255 - ink */
		d[0] = (uint8_t)(((s[0] ^ flip) * k + 127) / 255);
		d[1] = (uint8_t)(((s[1] ^ flip) * k + 127) / 255);
		d[2] = (uint8_t)(((s[2] ^ flip) * k + 127) / 255);
	}
}

static int decode_jpeg(img_ctx *c, const uint8_t *d, size_t n,
		       const img_info *in, const probe_extra *x,
		       const img_decode_opts *o, img_rgb *out, mvl_err *err)
{
	if (in->channels != 1 && in->channels != 3 && in->channels != 4)
		return fail(err, "unsupported_image", "JPEG with %d components",
			    in->channels);
	if (jpeg_too_small(n, in, x->sof))
		return fail(err, "corrupt_image", "truncated: %zu bytes cannot hold %dx%d",
			    n, in->width, in->height);
	if (!x->sos)
		return fail(err, "corrupt_image", "no scan data");
	if (!jpeg_has_eoi(d, n, x->sos))
		return fail(err, "corrupt_image", "Premature end of JPEG file");
	if (!c->tjd && !(c->tjd = tjInitDecompress()))
		return fail(err, "corrupt_image", "cannot create JPEG decoder: %s",
			    tjGetErrorStr2(NULL));
	if (n > ULONG_MAX)
		return fail(err, "too_large", "JPEG of %zu bytes", n);

	/* The header is parsed again by libjpeg: our buffer is sized from
	 * our probe, so both must agree before we decode into it.  An odd
	 * chroma sampling only makes turbojpeg unable to name it. */
	int W, H, subsamp, cs;
	W = H = 0;
	if (tjDecompressHeader3(c->tjd, d, (unsigned long)n, &W, &H, &subsamp, &cs) < 0) {
		const char *m = tjGetErrorStr2(c->tjd);
		if (tjGetErrorCode(c->tjd) == TJERR_WARNING) {
			if (jpeg_warning_is_fatal(m))
				return jpeg_fail(c, err);
		} else if (strstr(m, "Could not determine subsampling")) {
			W = in->width;
			H = in->height;
		} else {
			return jpeg_fail(c, err);
		}
	}
	if (W != in->width || H != in->height)
		return fail(err, "corrupt_image", "inconsistent JPEG frame headers");

	int ww = o->want_w, wh = o->want_h;
	if (in->orientation >= 5 && o->apply_orientation) {
		int t = ww; ww = wh; wh = t;
	}
	tjscalingfactor sf = jpeg_pick_scale(W, H, ww, wh);
	int sw = TJSCALED(W, sf), sh = TJSCALED(H, sf);

	/* The fast IDCT and chroma upsampling lose detail that the resize
	 * after us throws away anyway; only then are they worth it. */
	int flags = TJFLAG_LIMITSCANS;
	if (ww > 0 && wh > 0 && (sw > ww || sh > wh))
		flags |= TJFLAG_FASTDCT;
	if (ww > 0 && wh > 0 && sw >= 2 * ww && sh >= 2 * wh)
		flags |= TJFLAG_FASTUPSAMPLE;

	int r;
	if (in->channels == 4) {
		uint8_t *cmyk = scratch(c, (size_t)sw * sh * 4);
		if (!cmyk)
			return fail(err, "too_large", "cannot allocate %dx%d pixels", sw, sh);
		r = tjDecompress2(c->tjd, d, (unsigned long)n, cmyk, sw, sw * 4, sh,
				  TJPF_CMYK, flags);
		if (r == 0 || tjGetErrorCode(c->tjd) == TJERR_WARNING) {
			if (alloc_rgb(out, sw, sh, err) < 0)
				return -1;
			cmyk_to_rgb(cmyk, out->px, (size_t)sw * sh, x->adobe);
		}
	} else {
		if (alloc_rgb(out, sw, sh, err) < 0)
			return -1;
		r = tjDecompress2(c->tjd, d, (unsigned long)n, out->px, sw, sw * 3, sh,
				  TJPF_RGB, flags);
	}
	if (r < 0 && (tjGetErrorCode(c->tjd) != TJERR_WARNING ||
		      jpeg_warning_is_fatal(tjGetErrorStr2(c->tjd)))) {
		img_rgb_free(out);
		return jpeg_fail(c, err);
	}
	return 0;
}

/* ------------------------------------------------------------------ PNG */

static int decode_png(img_ctx *c, const uint8_t *d, size_t n,
		      const img_info *in, const probe_extra *x,
		      const img_decode_opts *o, img_rgb *out, mvl_err *err)
{
	/* Deflate cannot do better than about 1032:1, so the filtered rows
	 * bound the file size from below. */
	uint64_t row = ((uint64_t)in->width * x->samples * (x->depth ? x->depth : 1) + 7) / 8;
	if ((uint64_t)n * 1032 < (uint64_t)in->height * (row + 1))
		return fail(err, "corrupt_image", "truncated: %zu bytes cannot hold %dx%d",
			    n, in->width, in->height);

	spng_ctx *s = spng_ctx_new(0);
	if (!s)
		return fail(err, "too_large", "cannot create PNG decoder");
	int r, alpha;
	size_t need = 0;
	struct spng_ihdr ih;
	struct spng_trns trns;
	uint8_t *dst;
	/* max_pixels bounds the area; the chunk limits bound the bytes libspng
	 * keeps of ancillary chunks (text, ICC).  Its count of kept chunks
	 * stays at the built-in 1000, which can only be lowered: a PNG with
	 * more text chunks than that is refused. */
	spng_set_image_limits(s, 1u << 24, 1u << 24);
	spng_set_chunk_limits(s, 1u << 26, 1u << 26);
	if ((r = spng_set_png_buffer(s, d, n)) || (r = spng_get_ihdr(s, &ih)))
		goto bad;
	if (ih.width != (uint32_t)in->width || ih.height != (uint32_t)in->height) {
		r = SPNG_EWIDTH;
		goto bad;
	}
	/* tRNS is only known once the chunks before IDAT are read. */
	alpha = ih.color_type == SPNG_COLOR_TYPE_GRAYSCALE_ALPHA ||
		ih.color_type == SPNG_COLOR_TYPE_TRUECOLOR_ALPHA ||
		spng_get_trns(s, &trns) == 0;
	int fmt = alpha ? SPNG_FMT_RGBA8 : SPNG_FMT_RGB8;
	if ((r = spng_decoded_image_size(s, fmt, &need)))
		goto bad;
	if (need != (size_t)in->width * in->height * (alpha ? 4 : 3)) {
		r = SPNG_EOVERFLOW;
		goto bad;
	}
	if (alpha)
		dst = scratch(c, need);
	else
		dst = alloc_rgb(out, in->width, in->height, err) < 0 ? NULL : out->px;
	if (!dst) {
		spng_ctx_free(s);
		return fail(err, "too_large", "cannot allocate %dx%d pixels",
			    in->width, in->height);
	}
	if ((r = spng_decode_image(s, dst, need, fmt, SPNG_DECODE_TRNS)))
		goto bad;
	spng_ctx_free(s);
	if (alpha) {
		if (alloc_rgb(out, in->width, in->height, err) < 0)
			return -1;
		composite(dst, out->px, (size_t)in->width * in->height, o->bg);
	}
	return 0;
bad:
	spng_ctx_free(s);
	img_rgb_free(out);
	if (r == SPNG_EMEM || r == SPNG_ECHUNK_LIMITS || r == SPNG_EUSER_WIDTH ||
	    r == SPNG_EUSER_HEIGHT)
		return fail(err, "too_large", "%s", spng_strerror(r));
	return fail(err, "corrupt_image", "%s", spng_strerror(r));
}

/* ----------------------------------------------------------------- WebP */

static const char *webp_status(VP8StatusCode st)
{
	switch (st) {
	case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
	case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
	case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
	case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
	case VP8_STATUS_SUSPENDED: return "suspended";
	case VP8_STATUS_USER_ABORT: return "aborted";
	case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated data";
	default: return "error";
	}
}

static int webp_fail(VP8StatusCode st, mvl_err *err)
{
	if (st == VP8_STATUS_UNSUPPORTED_FEATURE)
		return fail(err, "unsupported_image", "WebP %s", webp_status(st));
	if (st == VP8_STATUS_OUT_OF_MEMORY)
		return fail(err, "too_large", "WebP %s", webp_status(st));
	return fail(err, "corrupt_image", "WebP %s", webp_status(st));
}

/* Animated: the first frame, composed on its canvas, then on bg. */
static int decode_webp_anim(const uint8_t *d, size_t n, const img_info *in,
			    const img_decode_opts *o, img_rgb *out, mvl_err *err)
{
	WebPAnimDecoderOptions ao;
	if (!WebPAnimDecoderOptionsInit(&ao))
		return fail(err, "unsupported_image", "libwebpdemux version mismatch");
	ao.color_mode = MODE_RGBA;
	ao.use_threads = 0;
	WebPData wd = { d, n };
	WebPAnimDecoder *ad = WebPAnimDecoderNew(&wd, &ao);
	if (!ad)
		return fail(err, "corrupt_image", "cannot parse animated WebP");
	WebPAnimInfo ai;
	uint8_t *rgba;
	int ts;
	if (!WebPAnimDecoderGetInfo(ad, &ai) ||
	    ai.canvas_width != (uint32_t)in->width ||
	    ai.canvas_height != (uint32_t)in->height) {
		WebPAnimDecoderDelete(ad);
		return fail(err, "corrupt_image", "inconsistent animated WebP canvas");
	}
	if (!WebPAnimDecoderGetNext(ad, &rgba, &ts)) {
		WebPAnimDecoderDelete(ad);
		return fail(err, "corrupt_image", "cannot decode first WebP frame");
	}
	if (alloc_rgb(out, in->width, in->height, err) < 0) {
		WebPAnimDecoderDelete(ad);
		return -1;
	}
	composite(rgba, out->px, (size_t)in->width * in->height, o->bg);
	WebPAnimDecoderDelete(ad);
	return 0;
}

static int decode_webp(img_ctx *c, const uint8_t *d, size_t n,
		       const img_info *in, const img_decode_opts *o,
		       img_rgb *out, mvl_err *err)
{
	WebPDecoderConfig cfg;
	if (!WebPInitDecoderConfig(&cfg))
		return fail(err, "unsupported_image", "libwebp version mismatch");
	VP8StatusCode st = WebPGetFeatures(d, n, &cfg.input);
	if (st != VP8_STATUS_OK)
		return webp_fail(st, err);
	if (cfg.input.width != in->width || cfg.input.height != in->height)
		return fail(err, "corrupt_image", "inconsistent WebP headers");
	if (cfg.input.has_animation)
		return decode_webp_anim(d, n, in, o, out, err);

	int ww = o->want_w, wh = o->want_h, sw, sh;
	if (in->orientation >= 5 && o->apply_orientation) {
		int t = ww; ww = wh; wh = t;
	}
	cover_size(in->width, in->height, ww, wh, &sw, &sh);
	if (sw != in->width || sh != in->height) {
		cfg.options.use_scaling = 1;
		cfg.options.scaled_width = sw;
		cfg.options.scaled_height = sh;
	}
	int alpha = cfg.input.has_alpha;
	size_t stride = (size_t)sw * (alpha ? 4 : 3);
	uint8_t *dst;
	if (alpha)
		dst = scratch(c, stride * sh);
	else
		dst = alloc_rgb(out, sw, sh, err) < 0 ? NULL : out->px;
	if (!dst)
		return fail(err, "too_large", "cannot allocate %dx%d pixels", sw, sh);
	cfg.output.colorspace = alpha ? MODE_RGBA : MODE_RGB;
	cfg.output.is_external_memory = 1;
	cfg.output.u.RGBA.rgba = dst;
	cfg.output.u.RGBA.stride = (int)stride;
	cfg.output.u.RGBA.size = stride * sh;
	st = WebPDecode(d, n, &cfg);
	WebPFreeDecBuffer(&cfg.output);
	if (st != VP8_STATUS_OK) {
		img_rgb_free(out);
		return webp_fail(st, err);
	}
	if (alpha) {
		if (alloc_rgb(out, sw, sh, err) < 0)
			return -1;
		composite(dst, out->px, (size_t)sw * sh, o->bg);
	}
	return 0;
}

/* ---------------------------------------------------------- orientation */

/* Displays im as EXIF orientation o says: output pixel (x, y) comes from
 * source pixel base + x*dx + y*dy, for all eight cases.  Walks in tiles so
 * that the transposing cases stay in cache on large images. */
static int orient(img_rgb *im, int o, mvl_err *err)
{
	if (o <= 1 || o > 8)
		return 0;
	ptrdiff_t W = im->w, H = im->h, base, dx, dy;
	switch (o) {
	case 2: base = W - 1;               dx = -1; dy = W;  break; /* mirror */
	case 3: base = (H - 1) * W + W - 1; dx = -1; dy = -W; break; /* 180 */
	case 4: base = (H - 1) * W;         dx = 1;  dy = -W; break; /* flip */
	case 5: base = 0;                   dx = W;  dy = 1;  break; /* transpose */
	case 6: base = (H - 1) * W;         dx = -W; dy = 1;  break; /* 90 cw */
	case 7: base = (H - 1) * W + W - 1; dx = -W; dy = -1; break; /* transverse */
	default: base = W - 1;              dx = W;  dy = -1; break; /* 90 ccw */
	}
	int ow = o >= 5 ? im->h : im->w, oh = o >= 5 ? im->w : im->h;
	img_rgb t = { 0 };
	if (alloc_rgb(&t, ow, oh, err) < 0)
		return -1;
	enum { TILE = 64 };
	for (int y0 = 0; y0 < oh; y0 += TILE) {
		int y1 = y0 + TILE < oh ? y0 + TILE : oh;
		for (int x0 = 0; x0 < ow; x0 += TILE) {
			int x1 = x0 + TILE < ow ? x0 + TILE : ow;
			for (int y = y0; y < y1; y++) {
				uint8_t *q = t.px + ((size_t)y * ow + x0) * 3;
				const uint8_t *p = im->px + (base + x0 * dx + y * dy) * 3;
				for (int x = x0; x < x1; x++, q += 3, p += dx * 3)
					q[0] = p[0], q[1] = p[1], q[2] = p[2];
			}
		}
	}
	img_rgb_free(im);
	*im = t;
	return 0;
}

/* --------------------------------------------------------------- decode */

int img_decode(img_ctx *c, const uint8_t *data, size_t n,
	       const img_decode_opts *o, img_rgb *out, img_info *info,
	       mvl_err *err)
{
	img_decode_opts def;
	if (!o) {
		img_decode_opts_default(&def);
		o = &def;
	}
	out->w = out->h = 0;
	out->px = NULL;

	img_info in;
	probe_extra x;
	mvl_err perr;
	int r = probe(data, n, &in, &x, &perr);
	if (info)
		*info = in;
	if (r < 0) {
		if (x.unsupported)
			return fail(err, "unsupported_image", "%s", x.unsupported);
		if (in.format == IMG_UNKNOWN)
			return fail(err, "not_an_image", "%s", perr.msg);
		return fail(err, "corrupt_image", "%s", perr.msg);
	}
	if (in.width <= 0 || in.height <= 0)
		return fail(err, "corrupt_image", "%s of size %dx%d",
			    img_format_name(in.format), in.width, in.height);
	uint64_t npx = (uint64_t)in.width * (uint64_t)in.height;
	if (o->max_pixels && npx > o->max_pixels)
		return fail(err, "too_large", "%dx%d is more than %llu pixels",
			    in.width, in.height, (unsigned long long)o->max_pixels);

	switch (in.format) {
	case IMG_JPEG: r = decode_jpeg(c, data, n, &in, &x, o, out, err); break;
	case IMG_PNG: r = decode_png(c, data, n, &in, &x, o, out, err); break;
	default: r = decode_webp(c, data, n, &in, o, out, err); break;
	}
	if (r == 0 && o->apply_orientation && orient(out, in.orientation, err) < 0) {
		img_rgb_free(out);
		return -1;
	}
	return r;
}

/* --------------------------------------------------------------- encode */

static int encode_jpeg(img_ctx *c, const img_rgb *im, int q, buf *out,
		       mvl_err *err)
{
	if (im->w > 65535 || im->h > 65535)
		return mvl_errf(err, "%dx%d is too large for JPEG", im->w, im->h);
	if (!c->tjc && !(c->tjc = tjInitCompress()))
		return mvl_errf(err, "cannot create JPEG encoder: %s", tjGetErrorStr2(NULL));
	if (q < 1) q = 1;
	if (q > 100) q = 100;
	/* Compress straight into the caller's buffer, sized for the worst
	 * case, so there is neither a copy nor a turbojpeg allocation. */
	unsigned long cap = tjBufSize(im->w, im->h, TJSAMP_420);
	if (cap == (unsigned long)-1)
		return mvl_errf(err, "cannot size JPEG buffer: %s", tjGetErrorStr2(NULL));
	buf_reserve(out, cap);
	unsigned char *dst = out->data;
	unsigned long len = cap;
	if (tjCompress2(c->tjc, im->px, im->w, im->w * 3, im->h, TJPF_RGB, &dst,
			&len, TJSAMP_420, q, TJFLAG_NOREALLOC) < 0)
		return mvl_errf(err, "cannot encode JPEG: %s", tjGetErrorStr2(c->tjc));
	out->len = len;
	return 0;
}

static int encode_webp(const img_rgb *im, int q, buf *out, mvl_err *err)
{
	if (im->w > WEBP_MAX_DIMENSION || im->h > WEBP_MAX_DIMENSION)
		return mvl_errf(err, "%dx%d is too large for WebP", im->w, im->h);
	uint8_t *p = NULL;
	size_t len;
	if (q > 100)
		len = WebPEncodeLosslessRGB(im->px, im->w, im->h, im->w * 3, &p);
	else
		len = WebPEncodeRGB(im->px, im->w, im->h, im->w * 3,
				    (float)(q < 0 ? 0 : q), &p);
	if (!len) {
		WebPFree(p);
		return mvl_errf(err, "cannot encode WebP");
	}
	buf_append(out, p, len);
	WebPFree(p);
	return 0;
}

static int encode_png(const img_rgb *im, buf *out, mvl_err *err)
{
	spng_ctx *s = spng_ctx_new(SPNG_CTX_ENCODER);
	if (!s)
		return mvl_errf(err, "cannot create PNG encoder");
	struct spng_ihdr ih = {
		.width = (uint32_t)im->w, .height = (uint32_t)im->h,
		.bit_depth = 8, .color_type = SPNG_COLOR_TYPE_TRUECOLOR,
	};
	size_t len = 0;
	void *p = NULL;
	int r;
	if ((r = spng_set_option(s, SPNG_ENCODE_TO_BUFFER, 1)) ||
	    (r = spng_set_ihdr(s, &ih)) ||
	    (r = spng_encode_image(s, im->px, (size_t)im->w * im->h * 3,
				   SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE)))
		goto bad;
	if (!(p = spng_get_png_buffer(s, &len, &r)))
		goto bad;
	buf_append(out, p, len);
	free(p);
	spng_ctx_free(s);
	return 0;
bad:
	spng_ctx_free(s);
	return mvl_errf(err, "cannot encode PNG: %s", spng_strerror(r));
}

int img_encode(img_ctx *c, const img_rgb *im, img_format fmt, int quality,
	       buf *out, mvl_err *err)
{
	out->len = 0;
	if (!im->px || im->w < 1 || im->h < 1)
		return mvl_errf(err, "cannot encode an empty %dx%d image", im->w, im->h);
	switch (fmt) {
	case IMG_JPEG: return encode_jpeg(c, im, quality, out, err);
	case IMG_WEBP: return encode_webp(im, quality, out, err);
	case IMG_PNG: return encode_png(im, out, err);
	default: return mvl_errf(err, "cannot encode format '%s'", img_format_name(fmt));
	}
}
