/* imgfilter.c: the `imgfilter` filter: size, aspect ratio, pixels,
 * format, file size from the header alone; blank images (luma standard
 * deviation) from a small DCT-scaled decode only when asked. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "image.h"
#include "sample_text.h"

typedef struct img_conf {
	int min_side;
	double max_aspect;
	uint64_t min_pixels, max_pixels, min_bytes, max_bytes;
	const char *formats;
	double min_std;
} img_conf;

#define O(f) offsetof(img_conf, f)
static const fopt img_opts[] = {
	{"min_side", OPT_INT, O(min_side), "200", "N", "shorter side below: drop (DataComp basic: 200)"},
	{"max_aspect", OPT_DOUBLE, O(max_aspect), "3", "X",
	 "long side / short side above: drop (DataComp basic: 3; 0: off)"},
	{"min_pixels", OPT_U64, O(min_pixels), "0", "N", "width*height below: drop (0: off)"},
	{"max_pixels", OPT_U64, O(max_pixels), "0", "N", "width*height above: drop (0: off)"},
	{"formats", OPT_STR, O(formats), "jpeg,png,webp", "LIST", "allowed formats"},
	{"min_bytes", OPT_SIZE, O(min_bytes), "0", "SIZE", "smaller image files: drop (0: off)"},
	{"max_bytes", OPT_SIZE, O(max_bytes), "0", "SIZE", "larger image files: drop (0: off)"},
	{"min_std", OPT_DOUBLE, O(min_std), "0", "X",
	 "luma standard deviation (0..255) below: drop as blank (0: off; decodes)"},
	{0},
};
#undef O

typedef struct img_state {
	img_conf c;
	int allow[4]; /* by img_format */
} img_state;

static int img_open(const void *conf, void **state, mvl_err *err)
{
	img_state *s = xcalloc(1, sizeof *s);
	s->c = *(const img_conf *)conf;
	*state = s;
	if (s->c.min_side < 0 || s->c.max_aspect < 0 || s->c.min_std < 0)
		return mvl_errf(err, "min_side, max_aspect and min_std must be >= 0");
	if (s->c.max_aspect > 0 && s->c.max_aspect < 1)
		return mvl_errf(err, "max_aspect %g is below 1 (no image could pass)", s->c.max_aspect);
	const char *p = s->c.formats;
	while (*p) {
		size_t len = strcspn(p, ",");
		char name[16];
		snprintf(name, sizeof name, "%.*s", (int)(len < 15 ? len : 15), p);
		img_format f = img_format_from_ext(!strcmp(name, "jpeg") ? "jpg" : name);
		if (f == IMG_UNKNOWN)
			return mvl_errf(err, "formats: '%s' is not jpeg, png or webp", name);
		s->allow[f] = 1;
		p += len;
		if (*p)
			p++;
	}
	return 0;
}

static void img_close(void *state)
{
	free(state);
}

static void *img_tls_new(const void *state)
{
	(void)state;
	return img_ctx_new();
}

static void img_tls_free(void *tls)
{
	img_ctx_free(tls);
}

/* Standard deviation of luma (BT.601) over the pixels. */
static double luma_std(const img_rgb *im)
{
	double sum = 0, sq = 0;
	size_t n = (size_t)im->w * (size_t)im->h;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *p = im->px + 3 * i;
		double y = 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
		sum += y;
		sq += y * y;
	}
	double mean = sum / (double)n, var = sq / (double)n - mean * mean;
	return var > 0 ? sqrt(var) : 0;
}

static int img_apply(const void *state, void *tls, sample *smp, reject_info *rj)
{
	const img_state *s = state;
	const img_conf *c = &s->c;
	int count;
	member *m = sample_image(smp, &count);
	if (!m)
		return reject_set(rj, "no_image", "no image member (jpg, png, webp)");
	img_info info;
	mvl_err err;
	if (img_probe(m->data, m->size, &info, &err) != 0)
		return reject_set(rj, "bad_header", "%s", err.msg);
	if (!s->allow[info.format])
		return reject_set(rj, "format", "%s is not allowed", img_format_name(info.format));
	if (c->min_bytes && m->size < c->min_bytes)
		return reject_set(rj, "file_too_small", "%zu bytes < %llu", m->size,
				  (unsigned long long)c->min_bytes);
	if (c->max_bytes && m->size > c->max_bytes)
		return reject_set(rj, "file_too_large", "%zu bytes > %llu", m->size,
				  (unsigned long long)c->max_bytes);
	int swap = info.orientation >= 5 && info.orientation <= 8;
	int w = swap ? info.height : info.width, h = swap ? info.width : info.height;
	int lo = w < h ? w : h, hi = w < h ? h : w;
	if (lo < c->min_side)
		return reject_set(rj, "too_small", "%dx%d: shorter side %d < %d", w, h, lo, c->min_side);
	if (c->max_aspect > 0 && lo > 0 && (double)hi / lo > c->max_aspect)
		return reject_set(rj, "aspect_ratio", "%dx%d: aspect %.2f > %g", w, h, (double)hi / lo,
				  c->max_aspect);
	uint64_t px = (uint64_t)w * (uint64_t)h;
	if (c->min_pixels && px < c->min_pixels)
		return reject_set(rj, "too_few_pixels", "%dx%d < %llu pixels", w, h,
				  (unsigned long long)c->min_pixels);
	if (c->max_pixels && px > c->max_pixels)
		return reject_set(rj, "too_many_pixels", "%dx%d > %llu pixels", w, h,
				  (unsigned long long)c->max_pixels);
	if (c->min_std > 0) {
		img_decode_opts d;
		img_decode_opts_default(&d);
		d.want_w = d.want_h = 64; /* a DCT-scaled thumbnail is enough */
		img_rgb im = {0};
		if (img_decode(tls, m->data, m->size, &d, &im, NULL, &err) != 0)
			return reject_set(rj, "corrupt", "%s", err.msg);
		double std = luma_std(&im);
		img_rgb_free(&im);
		if (std < c->min_std)
			return reject_set(rj, "blank", "luma std %.2f < %g", std, c->min_std);
		sample_json_set(smp, "pixel_std", json_real(round(std * 100) / 100));
	}
	return 0;
}

const filter_def filter_imgfilter = {
	"imgfilter",
	"Drop images by size, aspect ratio, pixel count, format, file size and\n"
	"blankness; header-only unless min_std asks for pixels.",
	"Rules (drop reason imgfilter.NAME): no_image, bad_header, format,\n"
	"file_too_small, file_too_large, too_small (min_side, default 200), aspect_ratio\n"
	"(max_aspect, default 3: DataComp's basic filter), too_few_pixels,\n"
	"too_many_pixels, blank (min_std; KEY.json gets pixel_std), corrupt (the\n"
	"decode min_std needs failed).  Sizes are as displayed (EXIF orientation).\n",
	img_opts,
	sizeof(img_conf),
	img_open,
	img_tls_new,
	img_tls_free,
	img_apply,
	img_close,
	NULL,
	NULL,
	NULL,
	NULL, /* runs on any rank as it is: no dist_start */
	NULL,
};
