/* ingest.h: normalizing one sample (the work behind `mvl ingest`).
 *
 * ingest_sample() validates a sample's image and caption and rewrites it
 * into the normalized form: one image member named by its real format
 * (optionally decoded, EXIF-oriented, resized and re-encoded), KEY.txt as
 * valid UTF-8, and KEY.json extended with
 *   width, height            the image as written
 *   original_width/_height   the image as first received (kept if present)
 *   format                   jpeg | png | webp
 *   source_xxh128            xxh3-128 of the image bytes as received (hex)
 *   source                   the input it came from (kept if present)
 *   orientation              the EXIF orientation applied, when not 1
 * Other members pass through untouched.
 */
#ifndef MVL_INGEST_H
#define MVL_INGEST_H

#include <stdint.h>

#include "image.h"
#include "rejects.h"
#include "sample.h"

typedef struct ingest_opts {
	const char *resize;          /* none | smart | max-side */
	int max_side;
	uint64_t min_pixels;         /* smart_resize bounds */
	uint64_t resize_max_pixels;
	uint64_t max_pixels;         /* decompression-bomb limit */
	const char *encode;          /* auto | jpeg | webp | png */
	int quality;
	const char *background;      /* RRGGBB */
	const char *validate;        /* decode | header */
	const char *utf8;            /* reject | repair */
	uint64_t max_caption;        /* bytes */
	int allow_no_image, allow_no_caption;
	/* derived by ingest_opts_check() */
	uint8_t bg[3];
	img_format out_format;       /* IMG_UNKNOWN for auto */
} ingest_opts;

/* ingest_opts_check() : validates values, fills derived fields.
 * @return 0 or -1 with *err. */
int ingest_opts_check(ingest_opts *o, mvl_err *err);

/* ingest_sample() : @return 0 when s is kept (and rewritten), 1 when it
 * is rejected (*rj says why; s is then left in an unspecified state). */
int ingest_sample(img_ctx *c, const ingest_opts *o, sample *s, reject_info *rj);

#endif
