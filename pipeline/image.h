/* image.h: probe, decode, resize and encode images (JPEG, PNG, WebP).
 *
 * Everything works on memory buffers and 8-bit RGB pixels.  Decoding never
 * trusts a header: img_probe() reads the size without decoding, and
 * img_decode() refuses anything above max_pixels before it allocates.
 * Whatever the input (grayscale, palette, CMYK, 16-bit, alpha), the result
 * is 8-bit RGB: alpha is composited onto a background (white by default, as
 * a web page shows it), and EXIF orientation is applied.
 *
 * An img_ctx holds per-thread decoder/encoder handles; one per thread, never
 * shared.  All functions are otherwise reentrant.
 */
#ifndef MVL_IMAGE_H
#define MVL_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef enum img_format {
	IMG_UNKNOWN = 0,
	IMG_JPEG,
	IMG_PNG,
	IMG_WEBP,
} img_format;

/* "jpeg", "png", "webp" or "unknown" */
const char *img_format_name(img_format f);
/* The member extension for a format: "jpg", "png", "webp". */
const char *img_format_ext(img_format f);
/* img_format_from_ext() : "jpg"/"jpeg" -> IMG_JPEG, "png", "webp";
 * anything else IMG_UNKNOWN.  Case-sensitive on lower-case input. */
img_format img_format_from_ext(const char *ext);

typedef struct img_info {
	img_format format;
	int width, height;  /* as stored, before EXIF orientation */
	int orientation;    /* EXIF orientation 1..8 (1 when absent) */
	int has_alpha;      /* PNG/WebP with an alpha channel */
	int animated;       /* animated WebP / APNG */
	int channels;       /* colour components as stored (1,2,3,4) */
} img_info;

/* img_probe() : identifies the format from the content (never the name)
 * and reads width and height from the header, without decoding pixels.
 * @return 0, or -1 with *err saying why ("not an image", "truncated header"). */
int img_probe(const uint8_t *data, size_t n, img_info *info, mvl_err *err);

/* An 8-bit RGB image, rows packed (stride = 3 * w). */
typedef struct img_rgb {
	int w, h;
	uint8_t *px;
} img_rgb;
void img_rgb_free(img_rgb *im);

typedef struct img_ctx img_ctx;
img_ctx *img_ctx_new(void);
void img_ctx_free(img_ctx *c);

typedef struct img_decode_opts {
	uint64_t max_pixels;   /* refuse when stored w*h exceeds this (0: none) */
	/* Size hint: the caller will downscale so the result fits inside
	 * want_w x want_h (after orientation).  The decoder may then decode at a
	 * reduced scale (JPEG DCT scaling, WebP scaled decode) as long as the
	 * decoded image is still at least want_w x want_h or the full size,
	 * whichever is smaller.  0 x 0: full size. */
	int want_w, want_h;
	uint8_t bg[3];         /* background for alpha compositing */
	int apply_orientation; /* apply EXIF orientation (normally 1) */
} img_decode_opts;
/* Defaults: max_pixels 178956970, no hint, white, orientation applied. */
void img_decode_opts_default(img_decode_opts *o);

/* img_decode() : decodes any supported image into *out (8-bit RGB, EXIF
 * orientation applied when asked).  Truncated or corrupt data is an error,
 * not a grey image.  *info, when not NULL, receives the probe of the input.
 * @return 0, or -1 with *err filled; err->msg then begins with a reason
 * word the caller can count: "too_large: ...", "corrupt_image: ...",
 * "unsupported_image: ...", "not_an_image: ...". */
int img_decode(img_ctx *c, const uint8_t *data, size_t n,
	       const img_decode_opts *o, img_rgb *out, img_info *info,
	       mvl_err *err);

/* img_resize() : resamples in to exactly w x h with an antialiasing filter
 * (bicubic, a = -0.5, support widened by the scale factor when shrinking,
 * as Pillow's BICUBIC does).  out->px is allocated. @return 0 or -1. */
int img_resize(const img_rgb *in, int w, int h, img_rgb *out, mvl_err *err);

/* smart_resize() : Qwen2.5-VL's rule.  Picks (*oh, *ow), multiples of
 * factor (28), close to (h, w) with aspect ratio kept as well as possible,
 * and min_pixels <= oh*ow <= max_pixels.  Rounding follows the reference
 * (Python's round: half to even).  @return 0, or -1 when the aspect ratio
 * exceeds 200 or a side is 0 (the reference raises). */
int smart_resize(int h, int w, int factor, uint64_t min_pixels,
		 uint64_t max_pixels, int *oh, int *ow, mvl_err *err);

/* fit_max_side() : the size that fits (w, h) inside max_side x max_side,
 * keeping aspect ratio, never upscaling, sides at least 1. */
void fit_max_side(int w, int h, int max_side, int *ow, int *oh);

/* img_encode() : encodes RGB pixels as JPEG (quality 1..100, 4:2:0) or
 * WebP (lossy at quality, lossless when quality > 100) or PNG into *out
 * (out->len reset).  @return 0 or -1. */
int img_encode(img_ctx *c, const img_rgb *im, img_format fmt, int quality,
	       buf *out, mvl_err *err);

#endif
