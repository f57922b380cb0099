/* resize.c: antialiased resampling and the sizing rules that pick a
 * target size (Qwen2.5-VL's smart_resize, fit inside a square).
 *
 * img_resize() follows the resampling Pillow's Image.resize(BICUBIC) does,
 * so that data prepared here matches data prepared by Python tools: a
 * separable Keys cubic (a = -0.5) whose support grows with the shrink
 * factor, weights normalised per output pixel and held in fixed point,
 * and an 8-bit intermediate between the two passes.
 */
#include "image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The two passes are plain loops the compiler vectorises; on x86-64 an
 * AVX2 copy is also built and picked at load time (32-bit multiplies are
 * native there, emulated in baseline SSE2): a third less time. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef SIMD_CLONES
#define SIMD_CLONES
#endif

/* Fraction bits of the weights: 255 * 2^22 * sum|w| (about 1.2 at worst
 * for this kernel) still fits an int32 accumulator. */
#define PREC 22

static double bicubic(double x)
{
	const double a = -0.5;
	if (x < 0)
		x = -x;
	if (x < 1)
		return ((a + 2) * x - (a + 3)) * x * x + 1;
	if (x < 2)
		return (((x - 5) * x + 8) * x - 4) * a;
	return 0;
}

/* One axis: for output i, inputs lo[i] .. lo[i]+len[i]-1 with weights
 * w[i*k ..].  One allocation holds all three arrays. */
typedef struct taps {
	void *mem;
	int k;
	int *lo, *len;
	int32_t *w;
} taps;

static int taps_make(taps *t, int in, int out)
{
	double scale = (double)in / out;
	double fs = scale > 1 ? scale : 1;  /* widen the kernel when shrinking */
	double support = 2.0 * fs, inv = 1.0 / fs;
	int k = (int)ceil(support) * 2 + 1;
	if (k > in)
		k = in;
	char *mem = malloc((size_t)out * (2 * sizeof(int) + (size_t)k * sizeof(int32_t)) +
			   (size_t)k * sizeof(double));
	if (!mem)
		return -1;
	t->mem = mem;
	double *f = (double *)mem;          /* doubles first: alignment */
	t->k = k;
	t->w = (int32_t *)(f + k);
	t->lo = (int *)(t->w + (size_t)out * k);
	t->len = t->lo + out;
	for (int i = 0; i < out; i++) {
		double center = (i + 0.5) * scale;
		int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
		if (lo < 0)
			lo = 0;
		if (hi > in)
			hi = in;
		if (hi - lo > k)        /* cannot happen; keeps the table safe */
			hi = lo + k;
		double sum = 0;
		for (int j = 0; j < hi - lo; j++)
			sum += f[j] = bicubic((j + lo - center + 0.5) * inv);
		int32_t *w = t->w + (size_t)i * k;
		for (int j = 0; j < hi - lo; j++) {
			double v = (sum != 0 ? f[j] / sum : 0) * (1 << PREC);
			w[j] = (int32_t)(v < 0 ? v - 0.5 : v + 0.5);
		}
		t->lo[i] = lo;
		t->len[i] = hi - lo;
	}
	return 0;
}

static inline uint8_t clip8(int32_t v)
{
	v >>= PREC;
	return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* (rows, sw) RGB -> (rows, dw) RGB along x.  Each source row is first
 * widened to one int32 lane per channel (R, G, B, 0), so that a tap is one
 * vector multiply-add instead of three scalar ones. */
typedef int32_t v4si __attribute__((vector_size(16)));

SIMD_CLONES
static void pass_h(const uint8_t *src, int sw, int rows, uint8_t *dst, int dw,
		   const taps *t, v4si *row)
{
	for (int y = 0; y < rows; y++) {
		const uint8_t *s = src + (size_t)y * sw * 3;
		uint8_t *d = dst + (size_t)y * dw * 3;
		for (int x = 0; x < sw; x++, s += 3)
			row[x] = (v4si){ s[0], s[1], s[2], 0 };
		for (int x = 0; x < dw; x++, d += 3) {
			const int32_t *w = t->w + (size_t)x * t->k;
			const v4si *p = row + t->lo[x];
			v4si acc = { 1 << (PREC - 1), 1 << (PREC - 1), 1 << (PREC - 1), 0 };
			for (int j = 0, n = t->len[x]; j < n; j++)
				acc += p[j] * w[j];
			d[0] = clip8(acc[0]);
			d[1] = clip8(acc[1]);
			d[2] = clip8(acc[2]);
		}
	}
}

/* (sh, w) RGB -> (dh, w) RGB along y.  Bytes of a row are independent, so
 * they go in blocks of 16 with the sums in registers: a loop of constant
 * count is one the compiler vectorises even at -O2. */
SIMD_CLONES
static void pass_v(const uint8_t *restrict src, int w, uint8_t *restrict dst,
		   int dh, const taps *t)
{
	enum { B = 16 };
	size_t n = (size_t)w * 3;
	for (int y = 0; y < dh; y++) {
		const int32_t *wt = t->w + (size_t)y * t->k;
		const uint8_t *s = src + (size_t)t->lo[y] * n;
		uint8_t *d = dst + (size_t)y * n;
		int len = t->len[y];
		size_t i = 0;
		for (; i + B <= n; i += B) {
			int32_t acc[B];
			for (int k = 0; k < B; k++)
				acc[k] = 1 << (PREC - 1);
			for (int j = 0; j < len; j++) {
				const uint8_t *r = s + (size_t)j * n + i;
				int32_t c = wt[j];
				for (int k = 0; k < B; k++)
					acc[k] += r[k] * c;
			}
			for (int k = 0; k < B; k++)
				d[i + k] = clip8(acc[k]);
		}
		for (; i < n; i++) {
			int32_t acc = 1 << (PREC - 1);
			for (int j = 0; j < len; j++)
				acc += s[(size_t)j * n + i] * wt[j];
			d[i] = clip8(acc);
		}
	}
}

int img_resize(const img_rgb *in, int w, int h, img_rgb *out, mvl_err *err)
{
	out->w = out->h = 0;
	out->px = NULL;
	if (w < 1 || h < 1 || !in->px || in->w < 1 || in->h < 1)
		return mvl_errf(err, "cannot resize %dx%d to %dx%d", in->w, in->h, w, h);
	out->px = malloc((size_t)w * h * 3);
	if (!out->px)
		return mvl_errf(err, "cannot allocate %dx%d pixels", w, h);
	out->w = w;
	out->h = h;
	if (w == in->w && h == in->h) {
		memcpy(out->px, in->px, (size_t)w * h * 3);
		return 0;
	}

	taps tx = { 0 }, ty = { 0 };
	uint8_t *tmp = NULL;
	v4si *row = NULL;
	if ((w != in->w && taps_make(&tx, in->w, w) < 0) ||
	    (h != in->h && taps_make(&ty, in->h, h) < 0) ||
	    (w != in->w && !(row = malloc((size_t)in->w * sizeof *row))))
		goto oom;

	if (h == in->h) {
		pass_h(in->px, in->w, h, out->px, w, &tx, row);
	} else if (w == in->w) {
		pass_v(in->px, w, out->px, h, &ty);
	} else {
		/* Both axes: horizontal first, as Pillow does (the 8-bit
		 * intermediate makes the order visible in the last bit), unless
		 * the other order saves a quarter of the work. */
		double hv = (double)w * in->h * tx.k + (double)w * h * ty.k;
		double vh = (double)in->w * h * ty.k + (double)w * h * tx.k;
		if (vh >= 0.75 * hv) {
			if (!(tmp = malloc((size_t)w * in->h * 3)))
				goto oom;
			pass_h(in->px, in->w, in->h, tmp, w, &tx, row);
			pass_v(tmp, w, out->px, h, &ty);
		} else {
			if (!(tmp = malloc((size_t)in->w * h * 3)))
				goto oom;
			pass_v(in->px, in->w, tmp, h, &ty);
			pass_h(tmp, in->w, h, out->px, w, &tx, row);
		}
	}
	free(tmp);
	free(row);
	free(tx.mem);
	free(ty.mem);
	return 0;
oom:
	free(tmp);
	free(row);
	free(tx.mem);
	free(ty.mem);
	img_rgb_free(out);
	return mvl_errf(err, "cannot allocate buffers to resize %dx%d to %dx%d",
			in->w, in->h, w, h);
}

/* ---------------------------------------------------------------- sizes */

/* Written the way qwen_vl_utils writes it, in doubles, so that the
 * floating-point steps (and Python's half-to-even round) agree exactly. */
int smart_resize(int h, int w, int factor, uint64_t min_pixels,
		 uint64_t max_pixels, int *oh, int *ow, mvl_err *err)
{
	if (h <= 0 || w <= 0 || factor <= 0)
		return mvl_errf(err, "cannot size a %dx%d image with factor %d", w, h, factor);
	double big = h > w ? h : w, small = h > w ? w : h;
	if (big / small > 200)
		return mvl_errf(err, "aspect ratio %.1f of %dx%d is above 200",
				big / small, w, h);
	double f = factor, area = (double)h * (double)w;
	double hb = fmax(f, nearbyint(h / f) * f);
	double wb = fmax(f, nearbyint(w / f) * f);
	if (max_pixels && hb * wb > (double)max_pixels) {
		double beta = sqrt(area / (double)max_pixels);
		hb = fmax(f, floor(h / beta / f) * f);
		wb = fmax(f, floor(w / beta / f) * f);
	} else if (hb * wb < (double)min_pixels) {
		double beta = sqrt((double)min_pixels / area);
		hb = ceil(h * beta / f) * f;
		wb = ceil(w * beta / f) * f;
	}
	if (hb > 1 << 30 || wb > 1 << 30)
		return mvl_errf(err, "size %gx%g from %dx%d is too large", wb, hb, w, h);
	*oh = (int)hb;
	*ow = (int)wb;
	return 0;
}

void fit_max_side(int w, int h, int max_side, int *ow, int *oh)
{
	if (w < 1)
		w = 1;
	if (h < 1)
		h = 1;
	*ow = w;
	*oh = h;
	if (max_side < 1 || (w <= max_side && h <= max_side))
		return;
	/* The long side becomes max_side, the short one is rounded. */
	if (w >= h) {
		*ow = max_side;
		*oh = (int)(((int64_t)h * max_side * 2 + w) / (2 * (int64_t)w));
	} else {
		*oh = max_side;
		*ow = (int)(((int64_t)w * max_side * 2 + h) / (2 * (int64_t)h));
	}
	if (*ow < 1)
		*ow = 1;
	if (*oh < 1)
		*oh = 1;
}
