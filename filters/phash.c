/* phash.c: pHash, dHash and the 4x4 RGB thumbnail of an image.
 *
 * Area averaging, exact.  Along each axis an input pixel is `out` units
 * long and an output cell `in` units (in, out: the two sizes), so every
 * pixel's coverage of a cell is a whole number of units and all sums are
 * integers: the averages do not depend on loop order, strip width or
 * vector width, and equal content gives equal sums (dHash ties on flat
 * graphics are real ties, a flat image gives a flat thumbnail).
 *
 * The image is reduced one of 32 output rows at a time: a weighted sum of
 * the input rows it covers (a row of integers, vectorised), turned into
 * luma per column, then summed across into the 32 cells.  The grids nest,
 * so the rest comes from the same row sums: 4 of the 32 rows make one of
 * dHash's 8 rows and 8 one of the thumbnail's 4.
 *
 * Luma is 0.299 R + 0.587 G + 0.114 B, held as the integer 299R + 587G +
 * 114B until the 32x32 thumbnail becomes float for the DCT; dHash compares
 * those integers.
 *
 * Bit order, both hashes: row-major over the 8x8 grid, bit 63 = (0, 0),
 * bit 0 = (7, 7).  For pHash the row is the vertical frequency, the column
 * the horizontal one (imagehash's hex string reads the same way).
 */
#include "phash.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The row loops are plain loops the compiler vectorises; on x86-64 an
 * AVX2 copy is also built and picked at load time (32-bit multiplies and
 * the RGB -> luma shuffle are native there): about 1.5x faster.  Integer
 * sums and unfused float operations in a fixed order: both copies give
 * the same bits. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef SIMD_CLONES
#define SIMD_CLONES
#endif

enum {
	SIDE = 32,   /* pHash thumbnail */
	LOW = 8,     /* frequencies kept per axis */
	DH_W = 9,    /* dHash grid: 9 x 8 */
	DH_H = 8,
	STRIP = 256, /* columns reduced at a time (the row buffers' width) */
	VEC = 16,    /* row loops go in blocks of this many values */
	/* Rows summed at a time.  Luma of a row sum, 1000 * 255 * (its
	 * weights, at most 32 per row), stays below 2^32 up to 512 rows;
	 * images up to TALL rows are summed whole (weights h <= 16384). */
	CHUNK = 512,
	TALL = CHUNK * SIDE,
};

/* ------------------------------------------------------------ area spans */

/* One output cell along one axis: input pixels lo..hi, the first covering
 * wlo units of the cell, the last whi, each one between `out` units (a
 * whole pixel).  When lo == hi the pixel covers the whole cell: wlo = in,
 * whi = 0.  A cell's weights sum to `in`; each is at most `out`. */
typedef struct span {
	int lo, hi;
	uint32_t wlo, whi;
} span;

static void spans_make(span *sp, int in, int out)
{
	for (int i = 0; i < out; i++) {
		uint64_t a = (uint64_t)i * in, b = (uint64_t)(i + 1) * in; /* cell [a, b) */
		int lo = (int)(a / out), hi = (int)((b - 1) / out);
		sp[i].lo = lo;
		sp[i].hi = hi;
		if (lo == hi) {
			sp[i].wlo = (uint32_t)in;
			sp[i].whi = 0;
		} else {
			sp[i].wlo = (uint32_t)((uint64_t)(lo + 1) * out - a);
			sp[i].whi = (uint32_t)(b - (uint64_t)hi * out);
		}
	}
}

static uint32_t span_weight(const span *c, int x, uint32_t full)
{
	if (c->lo == c->hi || x == c->lo)
		return c->wlo;
	return x == c->hi ? c->whi : full;
}

/* A cell cut to one strip of columns: columns a..b relative to the strip,
 * weighing wa and wb (wb = 0 when a == b), those between `full`. */
typedef struct cut {
	int a, b;
	uint32_t wa, wb;
} cut;

/* cuts_make() : the cells of sp[0..ncell) that meet columns [s, s + n),
 * from cell *first on.  @return how many. */
static int cuts_make(const span *sp, int ncell, int s, int n, uint32_t full, cut *c, int *first)
{
	int k = 0, e = s + n - 1;
	*first = 0;
	for (int i = 0; i < ncell; i++) {
		if (sp[i].hi < s) {
			*first = i + 1;
			continue;
		}
		if (sp[i].lo > e)
			break;
		int a = sp[i].lo > s ? sp[i].lo : s, b = sp[i].hi < e ? sp[i].hi : e;
		c[k].a = a - s;
		c[k].b = b - s;
		c[k].wa = span_weight(&sp[i], a, full);
		c[k].wb = b > a ? span_weight(&sp[i], b, full) : 0;
		k++;
	}
	return k;
}

/* ------------------------------------------------------------- row sums */

/* vsum() : acc[0..m) = the weighted sum over rows ya..yb (part of span
 * *sy) of m bytes from px in each row.  An end row's weight is at most
 * 32 and two ends add up below 2^16, so their products are 16-bit (SSE2
 * multiplies those natively). */
static inline void vsum(uint32_t *restrict acc, const uint8_t *px, size_t stride, const span *sy,
			int ya, int yb, int m)
{
	const uint8_t *a = px + (size_t)ya * stride, *b = px + (size_t)yb * stride;
	const uint16_t wa = (uint16_t)span_weight(sy, ya, SIDE);
	const uint16_t wb = yb > ya ? (uint16_t)span_weight(sy, yb, SIDE) : 0;
	if (yb <= ya + 1) {
		int k = 0;
		for (; k + VEC <= m; k += VEC)
			for (int t = 0; t < VEC; t++)
				acc[k + t] = (uint16_t)(wa * a[k + t] + wb * b[k + t]);
		for (; k < m; k++)
			acc[k] = (uint16_t)(wa * a[k] + wb * b[k]);
		return;
	}
	memset(acc, 0, (size_t)m * sizeof *acc);
	for (int y = ya + 1; y < yb; y++) {
		const uint8_t *r = px + (size_t)y * stride;
		int k = 0;
		for (; k + VEC <= m; k += VEC)
			for (int t = 0; t < VEC; t++)
				acc[k + t] += r[k + t];
		for (; k < m; k++)
			acc[k] += r[k];
	}
	int k = 0;
	for (; k + VEC <= m; k += VEC)
		for (int t = 0; t < VEC; t++)
			acc[k + t] = acc[k + t] * SIDE + (uint16_t)(wa * a[k + t] + wb * b[k + t]);
	for (; k < m; k++)
		acc[k] = acc[k] * SIDE + (uint16_t)(wa * a[k] + wb * b[k]);
}

/* lumas() : y[x] = 299 R + 587 G + 114 B of the RGB sums in acc. */
static inline void lumas(uint32_t *restrict y, const uint32_t *restrict acc, int n)
{
	int x = 0;
	for (; x + VEC <= n; x += VEC)
		for (int t = 0; t < VEC; t++) {
			const uint32_t *p = acc + 3 * (x + t);
			y[x + t] = 299 * p[0] + 587 * p[1] + 114 * p[2];
		}
	for (; x < n; x++) {
		const uint32_t *p = acc + 3 * x;
		y[x] = 299 * p[0] + 587 * p[1] + 114 * p[2];
	}
}

static inline void add_rows(uint32_t *restrict acc, const uint32_t *restrict r, int m)
{
	int k = 0;
	for (; k + VEC <= m; k += VEC)
		for (int t = 0; t < VEC; t++)
			acc[k + t] += r[k + t];
	for (; k < m; k++)
		acc[k] += r[k];
}

/* hsum_y() : out[i] += the cut cells' sums over one value per column. */
static inline void hsum_y(uint64_t *restrict out, const uint32_t *y, const cut *c, int nc,
			  uint32_t full)
{
	for (int i = 0; i < nc; i++) {
		uint64_t mid = 0;
		for (int x = c[i].a + 1; x < c[i].b; x++)
			mid += y[x];
		out[i] += mid * full + (uint64_t)c[i].wa * y[c[i].a] + (uint64_t)c[i].wb * y[c[i].b];
	}
}

/* hsum_rgb() : the same over RGB, out[3 i + channel]. */
static inline void hsum_rgb(uint64_t *restrict out, const uint32_t *acc, const cut *c, int nc,
			    uint32_t full)
{
	for (int i = 0; i < nc; i++) {
		for (int ch = 0; ch < 3; ch++) {
			uint64_t mid = 0;
			for (int x = c[i].a + 1; x < c[i].b; x++)
				mid += acc[3 * x + ch];
			out[3 * i + ch] += mid * full + (uint64_t)c[i].wa * acc[3 * c[i].a + ch] +
					   (uint64_t)c[i].wb * acc[3 * c[i].b + ch];
		}
	}
}

static inline uint64_t luma1000(const uint64_t *rgb)
{
	return 299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2];
}

/* ------------------------------------------------------------- signature */

/* Sums over the whole image, each grid's cells of equal total weight:
 * 32 x 32 luma (x 1000), 9 x 8 RGB for dHash, 4 x 4 RGB. */
typedef struct sums {
	uint64_t y[SIDE][SIDE];
	uint64_t d[DH_H][3 * DH_W];
	uint64_t t[THUMB_SIDE][3 * THUMB_SIDE];
} sums;

SIMD_CLONES
static void image_sums(const img_rgb *im, sums *S)
{
	const int w = im->w, h = im->h;
	const size_t stride = (size_t)w * 3;
	span sy[SIDE], sx[SIDE], sx9[DH_W], sx4[THUMB_SIDE];
	spans_make(sy, h, SIDE);
	spans_make(sx, w, SIDE);
	spans_make(sx9, w, DH_W);
	spans_make(sx4, w, THUMB_SIDE);
	/* Up to TALL rows, 4 row sums add up in 32 bits and dHash and the
	 * thumbnail take their rows from those groups of 4; a taller image
	 * is summed in chunks, each going to all three grids. */
	const int tall = h > TALL;
	const int chunk = tall ? CHUNK : h;

	uint32_t acc[3 * STRIP], acc4[3 * STRIP], y[STRIP];
	cut cx[SIDE], cx9[DH_W], cx4[THUMB_SIDE];
	memset(S, 0, sizeof *S);
	for (int s = 0; s < w; s += STRIP) {
		const int n = w - s < STRIP ? w - s : STRIP, m = 3 * n;
		const uint8_t *px = im->px + 3 * (size_t)s;
		int f, f9, f4;
		const int nc = cuts_make(sx, SIDE, s, n, SIDE, cx, &f);
		const int nc9 = cuts_make(sx9, DH_W, s, n, DH_W, cx9, &f9);
		const int nc4 = cuts_make(sx4, THUMB_SIDE, s, n, THUMB_SIDE, cx4, &f4);
		for (int j = 0; j < SIDE; j++) {
			for (int ya = sy[j].lo; ya <= sy[j].hi; ya += chunk) {
				int yb = sy[j].hi - ya >= chunk ? ya + chunk - 1 : sy[j].hi;
				vsum(acc, px, stride, &sy[j], ya, yb, m);
				lumas(y, acc, n);
				hsum_y(S->y[j] + f, y, cx, nc, SIDE);
				if (tall) {
					hsum_rgb(S->d[j / 4] + 3 * f9, acc, cx9, nc9, DH_W);
					hsum_rgb(S->t[j / 8] + 3 * f4, acc, cx4, nc4, THUMB_SIDE);
				}
			}
			if (tall)
				continue;
			if (j % 4 == 0)
				memcpy(acc4, acc, (size_t)m * sizeof *acc);
			else
				add_rows(acc4, acc, m);
			if (j % 4 == 3) {
				hsum_rgb(S->d[j / 4] + 3 * f9, acc4, cx9, nc9, DH_W);
				hsum_rgb(S->t[j / 8] + 3 * f4, acc4, cx4, nc4, THUMB_SIDE);
			}
		}
	}
}

int img_signature(const img_rgb *im, img_sig *out)
{
	const int w = im->w, h = im->h;
	if (w <= 0 || h <= 0 || !im->px)
		return -1;
	sums S;
	image_sums(im, &S);

	/* each 32-cell weighs w h in all */
	float luma[SIDE * SIDE];
	const double to_luma = 1.0 / (1000.0 * w * h);
	for (int j = 0; j < SIDE; j++)
		for (int i = 0; i < SIDE; i++)
			luma[j * SIDE + i] = (float)((double)(int64_t)S.y[j][i] * to_luma);
	out->phash = phash_from_luma32(luma);

	uint64_t d = 0;
	for (int r = 0; r < DH_H; r++)
		for (int c = 0; c < 8; c++)
			if (luma1000(S.d[r] + 3 * c) > luma1000(S.d[r] + 3 * (c + 1)))
				d |= 1ull << (63 - (r * 8 + c));
	out->dhash = d;

	/* a thumbnail cell weighs 8 h (8 rows of h) times w; rounded to
	 * nearest, halves up */
	const uint64_t den = 8ull * (uint64_t)w * (uint64_t)h;
	for (int r = 0; r < THUMB_SIDE; r++)
		for (int k = 0; k < 3 * THUMB_SIDE; k++)
			out->thumb[r * 3 * THUMB_SIDE + k] = (uint8_t)((2 * S.t[r][k] + den) / (2 * den));
	return 0;
}

/* ------------------------------------------------------------------- DCT */

/* cos_lo[k][n] = cos(pi (2n + 1) k / 64), n < 16: the other half of each
 * row is the mirror image, negated for odd k. */
static float cos_lo[LOW][SIDE / 2];
static pthread_once_t cos_once = PTHREAD_ONCE_INIT;

static void cos_init(void)
{
	for (int k = 0; k < LOW; k++)
		for (int n = 0; n < SIDE / 2; n++)
			cos_lo[k][n] = (float)cos(M_PI * (2 * n + 1) * k / (2.0 * SIDE));
}

/* dct_low() : x (32 x 32, row-major) -> the 8 x 8 lowest frequencies of
 * the unnormalised 2D DCT-II,
 *     X[u][v] = sum_r sum_n x[r][n] cos(pi (2r+1) u / 64) cos(pi (2n+1) v / 64).
 * Even frequencies come from sums of mirrored samples, odd ones from
 * differences: half the multiplications.  Columns first, so the inner
 * loops run along rows; blocks of 8 columns keep the 4 sums per parity
 * in registers. */
SIMD_CLONES
static void dct_low(const float *x, float X[LOW][LOW])
{
	float sd[2][SIDE / 2][SIDE]; /* [0]: x[r] + x[31-r], [1]: x[r] - x[31-r] */
	for (int r = 0; r < SIDE / 2; r++)
		for (int n = 0; n < SIDE; n++) {
			sd[0][r][n] = x[r * SIDE + n] + x[(SIDE - 1 - r) * SIDE + n];
			sd[1][r][n] = x[r * SIDE + n] - x[(SIDE - 1 - r) * SIDE + n];
		}
	float col[LOW][SIDE]; /* col[u][n]: frequency u down column n */
	for (int p = 0; p < 2; p++)
		for (int nb = 0; nb < SIDE; nb += 8) {
			float a[LOW / 2][8] = {{0}};
			for (int r = 0; r < SIDE / 2; r++)
				for (int q = 0; q < LOW / 2; q++)
					for (int t = 0; t < 8; t++)
						a[q][t] += cos_lo[2 * q + p][r] * sd[p][r][nb + t];
			for (int q = 0; q < LOW / 2; q++)
				memcpy(&col[2 * q + p][nb], a[q], sizeof a[q]);
		}
	/* the same along each row of col, 8 frequencies from 16 pairs */
	for (int u = 0; u < LOW; u++) {
		float s[SIDE / 2], d[SIDE / 2], a[LOW] = {0};
		for (int n = 0; n < SIDE / 2; n++) {
			s[n] = col[u][n] + col[u][SIDE - 1 - n];
			d[n] = col[u][n] - col[u][SIDE - 1 - n];
		}
		for (int n = 0; n < SIDE / 2; n++)
			for (int v = 0; v < LOW; v++)
				a[v] += (v & 1 ? d[n] : s[n]) * cos_lo[v][n];
		memcpy(X[u], a, sizeof a);
	}
}

/* select_k() : the k-th smallest of v[0..n) (0-based), v reordered so
 * that nothing before k is larger and nothing after smaller.  Branch-free
 * partitions around the middle element. */
static float select_k(float *v, int n, int k)
{
	int lo = 0, hi = n - 1;
	while (lo < hi) {
		const float pivot = v[lo + (hi - lo) / 2];
		int i = lo;
		for (int j = lo; j <= hi; j++) { /* v[lo..i) < pivot */
			float x = v[j], t = v[i];
			int c = x < pivot;
			v[j] = c ? t : x;
			v[i] = c ? x : t;
			i += c;
		}
		if (k < i) {
			hi = i - 1;
			continue;
		}
		int e = i;
		for (int j = i; j <= hi; j++) { /* v[i..e) == pivot */
			float x = v[j], t = v[e];
			int c = x == pivot;
			v[j] = c ? t : x;
			v[e] = c ? x : t;
			e += c;
		}
		if (k < e)
			return pivot;
		lo = e;
	}
	return v[k];
}

/* sum_pairwise() : the sum of 1024 floats by halving: for equal values
 * every partial sum is that value times a power of two, so exact. */
static float sum_pairwise(const float *x)
{
	float t[SIDE * SIDE / 2];
	for (int i = 0; i < SIDE * SIDE / 2; i++)
		t[i] = x[i] + x[i + SIDE * SIDE / 2];
	for (int len = SIDE * SIDE / 4; len >= 1; len /= 2)
		for (int i = 0; i < len; i++)
			t[i] += t[i + len];
	return t[0];
}

uint64_t phash_from_luma32(const float luma[32 * 32])
{
	pthread_once(&cos_once, cos_init);

	/* The mean goes out before the transform and comes back as the DC
	 * term: a flat image then gives AC terms of exactly 0, not rounding
	 * noise, and a defined hash (the DC bit alone, or 0 when black). */
	const float total = sum_pairwise(luma);
	const float mean = total / (SIDE * SIDE);
	float x[SIDE * SIDE], l1p[8] = {0};
	for (int i = 0; i < SIDE * SIDE; i += 8)
		for (int k = 0; k < 8; k++) {
			x[i + k] = luma[i + k] - mean;
			l1p[k] += fabsf(x[i + k]);
		}
	float l1 = 0;
	for (int k = 0; k < 8; k++)
		l1 += l1p[k];

	float X[LOW][LOW];
	dct_low(x, X);
	X[0][0] = total;

	/* An AC term is at most l1 in size and float rounding moves it by far
	 * less than 2^-16 l1: smaller terms are 0 in exact arithmetic (a
	 * symmetry), and snapping them to 0 gives them the same bit on every
	 * machine. */
	const float noise = l1 * (1.0f / 65536);
	float *v = &X[0][0], tmp[LOW * LOW];
	for (int i = 1; i < LOW * LOW; i++)
		if (fabsf(v[i]) < noise)
			v[i] = 0;

	/* the median of the 64 (mean of the 32nd and 33rd smallest, as numpy
	 * has it): bits above it */
	memcpy(tmp, v, sizeof tmp);
	const float lo = select_k(tmp, LOW * LOW, LOW * LOW / 2 - 1);
	float hi = tmp[LOW * LOW / 2];
	for (int i = LOW * LOW / 2 + 1; i < LOW * LOW; i++)
		hi = tmp[i] < hi ? tmp[i] : hi;
	const double median = ((double)lo + hi) / 2;
	uint64_t hash = 0;
	for (int i = 0; i < LOW * LOW; i++)
		if (v[i] > median)
			hash |= 1ull << (63 - i);
	return hash;
}

/* ------------------------------------------------------------- distance */

double thumb_distance(const uint8_t a[THUMB_BYTES], const uint8_t b[THUMB_BYTES])
{
	int total = 0;
	for (int i = 0; i < THUMB_SIDE * THUMB_SIDE; i++) {
		int m = 0;
		for (int c = 0; c < 3; c++) {
			int d = abs(a[3 * i + c] - b[3 * i + c]);
			m = d > m ? d : m;
		}
		total += m;
	}
	return total / (double)(THUMB_SIDE * THUMB_SIDE);
}
