/* phash.c: pHash, dHash and the 4x4 RGB thumbnail of an image.
 *
 * One pass of exact area averaging feeds all three.  Along each axis an
 * input pixel is `out` units long and an output cell `in` units, so every
 * pixel's coverage of a cell is an integer and the sums are exact: the
 * averages do not depend on the order of the loops, the strip width or
 * the machine.  The image is reduced to 32 rows one output row at a time
 * (a vertical weighted sum into a row of integers, then horizontal sums
 * into the 32 cells and the 9 dHash cells).  The grids nest: 4 of the 32
 * rows make one of dHash's 8, 8x8 of the 32x32 cells one thumbnail cell,
 * so those come from the same sums, exactly.
 *
 * Luma is 0.299 R + 0.587 G + 0.114 B, kept as the integer 299R + 587G +
 * 114B over the cell until it becomes a float for the DCT; dHash compares
 * these integers, so its ties are exact.
 *
 * Bit order, both hashes: row-major over the 8x8 grid, bit 63 = (0, 0),
 * bit 0 = (7, 7).  For pHash, row = vertical frequency, column =
 * horizontal frequency (as imagehash's hex string reads).
 */
#include "phash.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum {
	SIDE = 32,      /* pHash thumbnail */
	LOW = 8,        /* frequencies kept per axis */
	DH_W = 9,       /* dHash grid: 9 x 8 */
	DH_H = 8,
	STRIP = 256,    /* columns reduced at a time (the row buffer's width) */
	CHUNK = 1 << 22 /* rows summed in 32 bits before widening: 255 * CHUNK < 2^32 */
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

/* The row loops run in blocks of VEC values plus a tail: -O2's cost
 * model vectorises only loops whose trip count it knows. */
enum { VEC = 16 };

/* acc = wa * a + wb * b (wb = 0 with b = a for one row) */
static void row_weigh(uint32_t *restrict acc, const uint8_t *a, uint32_t wa, const uint8_t *b,
		      uint32_t wb, int m)
{
	int k = 0;
	for (; k + VEC <= m; k += VEC)
		for (int t = 0; t < VEC; t++)
			acc[k + t] = wa * a[k + t] + wb * b[k + t];
	for (; k < m; k++)
		acc[k] = wa * a[k] + wb * b[k];
}

/* acc = acc * full + wa * a + wb * b */
static void row_finish(uint32_t *restrict acc, uint32_t full, const uint8_t *a, uint32_t wa,
		       const uint8_t *b, uint32_t wb, int m)
{
	int k = 0;
	for (; k + VEC <= m; k += VEC)
		for (int t = 0; t < VEC; t++)
			acc[k + t] = acc[k + t] * full + wa * a[k + t] + wb * b[k + t];
	for (; k < m; k++)
		acc[k] = acc[k] * full + wa * a[k] + wb * b[k];
}

static void row_add8(uint32_t *restrict acc, const uint8_t *r, int m)
{
	int k = 0;
	for (; k + VEC <= m; k += VEC)
		for (int t = 0; t < VEC; t++)
			acc[k + t] += r[k + t];
	for (; k < m; k++)
		acc[k] += r[k];
}

static void row_add32(uint32_t *restrict acc, const uint32_t *r, int m)
{
	int k = 0;
	for (; k + VEC <= m; k += VEC)
		for (int t = 0; t < VEC; t++)
			acc[k + t] += r[k + t];
	for (; k < m; k++)
		acc[k] += r[k];
}

/* vsum() : acc[0..m) = the sum over rows ya..yb (a part of span *sy) of
 * m bytes from px in each row, weighted as the span says.  The caller
 * keeps 255 * (weights summed) below 2^32. */
static void vsum(uint32_t *restrict acc, const uint8_t *px, size_t stride, const span *sy,
		 int ya, int yb, uint32_t full, int m)
{
	const uint8_t *a = px + (size_t)ya * stride, *b = px + (size_t)yb * stride;
	const uint32_t wa = ya == sy->lo ? sy->wlo : full;
	const uint32_t wb = yb == sy->hi ? sy->whi : full;
	if (ya == yb) {
		row_weigh(acc, a, wa, a, 0, m);
		return;
	}
	if (yb == ya + 1) {
		row_weigh(acc, a, wa, b, wb, m);
		return;
	}
	memset(acc, 0, (size_t)m * sizeof *acc);
	for (int y = ya + 1; y < yb; y++)
		row_add8(acc, px + (size_t)y * stride, m);
	row_finish(acc, full, a, wa, b, wb, m);
}

/* cell_rgb() : the weighted sums over cell *c of the columns it has in
 * the strip [s, e], acc holding 3 values per column from s. */
static inline void cell_rgb(const uint32_t *acc, int s, int e, const span *c, uint32_t full,
			    uint64_t rgb[3])
{
	int a = c->lo + 1 > s ? c->lo + 1 : s, b = c->hi - 1 < e ? c->hi - 1 : e;
	uint64_t r = 0, g = 0, bl = 0;
	for (const uint32_t *p = acc + 3 * (a - s); a <= b; a++, p += 3) {
		r += p[0];
		g += p[1];
		bl += p[2];
	}
	r *= full;
	g *= full;
	bl *= full;
	if (c->lo >= s) {
		const uint32_t *p = acc + 3 * (c->lo - s);
		r += (uint64_t)c->wlo * p[0];
		g += (uint64_t)c->wlo * p[1];
		bl += (uint64_t)c->wlo * p[2];
	}
	if (c->hi <= e && c->whi) {
		const uint32_t *p = acc + 3 * (c->hi - s);
		r += (uint64_t)c->whi * p[0];
		g += (uint64_t)c->whi * p[1];
		bl += (uint64_t)c->whi * p[2];
	}
	rgb[0] = r;
	rgb[1] = g;
	rgb[2] = bl;
}

static inline uint64_t luma1000(const uint64_t *rgb)
{
	return 299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2];
}

/* hsum_rgb() : adds to out[3 i + c] the sums of the cells sx[0..ncell)
 * over the strip of columns [s, s + n) held in acc. */
static void hsum_rgb(uint64_t *restrict out, const uint32_t *acc, int s, int n,
		     const span *sx, int ncell, uint32_t full)
{
	const int e = s + n - 1;
	for (int i = 0; i < ncell; i++) {
		if (sx[i].hi < s)
			continue;
		if (sx[i].lo > e)
			break;
		uint64_t rgb[3];
		cell_rgb(acc, s, e, &sx[i], full, rgb);
		out[3 * i] += rgb[0];
		out[3 * i + 1] += rgb[1];
		out[3 * i + 2] += rgb[2];
	}
}

/* hsum_luma() : the same for the 32 cells, adding their luma (x 1000). */
static void hsum_luma(uint64_t *restrict out, const uint32_t *acc, int s, int n, const span *sx)
{
	const int e = s + n - 1;
	for (int i = 0; i < SIDE; i++) {
		if (sx[i].hi < s)
			continue;
		if (sx[i].lo > e)
			break;
		uint64_t rgb[3];
		cell_rgb(acc, s, e, &sx[i], SIDE, rgb);
		out[i] += luma1000(rgb);
	}
}

/* ------------------------------------------------------------- signature */

int img_signature(const img_rgb *im, img_sig *out)
{
	const int w = im->w, h = im->h;
	if (w <= 0 || h <= 0 || !im->px)
		return -1;
	const size_t stride = (size_t)w * 3;
	span sy[SIDE], sx[SIDE], sx9[DH_W], sx4[THUMB_SIDE];
	spans_make(sy, h, SIDE);
	spans_make(sx, w, SIDE);
	spans_make(sx9, w, DH_W);
	spans_make(sx4, w, THUMB_SIDE);
	/* A row's vertical sum is at most 255 h.  Below 2^30 four rows add up
	 * in 32 bits, and dHash (8 rows) and the thumbnail (4) take their
	 * sums from those groups of 4.  Above (images over 4 million rows
	 * tall) each row is summed in chunks that fit, and every chunk goes
	 * to all three grids on its own. */
	const int tall = (uint64_t)h * 255 >= (1u << 30);
	const int chunk = tall ? (1 << 17) : h; /* 255 * 32 * 2^17 < 2^30 */

	uint32_t acc[3 * STRIP], acc4[3 * STRIP];
	uint64_t ycell[SIDE][SIDE], dcell[DH_H][3 * DH_W], tcell[THUMB_SIDE][3 * THUMB_SIDE];
	memset(ycell, 0, sizeof ycell);
	memset(dcell, 0, sizeof dcell);
	memset(tcell, 0, sizeof tcell);
	for (int s = 0; s < w; s += STRIP) {
		const int n = w - s < STRIP ? w - s : STRIP, m = 3 * n;
		const uint8_t *px = im->px + 3 * (size_t)s;
		for (int j = 0; j < SIDE; j++) {
			for (int ya = sy[j].lo; ya <= sy[j].hi; ya += chunk) {
				int yb = sy[j].hi - ya >= chunk ? ya + chunk - 1 : sy[j].hi;
				vsum(acc, px, stride, &sy[j], ya, yb, SIDE, m);
				hsum_luma(ycell[j], acc, s, n, sx);
				if (tall) {
					hsum_rgb(dcell[j / 4], acc, s, n, sx9, DH_W, DH_W);
					hsum_rgb(tcell[j / 8], acc, s, n, sx4, THUMB_SIDE, THUMB_SIDE);
				}
			}
			if (tall)
				continue;
			if (j % 4 == 0)
				memcpy(acc4, acc, (size_t)m * sizeof *acc);
			else
				row_add32(acc4, acc, m);
			if (j % 4 == 3) {
				hsum_rgb(dcell[j / 4], acc4, s, n, sx9, DH_W, DH_W);
				hsum_rgb(tcell[j / 8], acc4, s, n, sx4, THUMB_SIDE, THUMB_SIDE);
			}
		}
	}

	/* each 32-cell's weights sum to w h; luma in units of 1/1000 */
	float luma[SIDE * SIDE];
	const double to_luma = 1.0 / (1000.0 * w * h);
	for (int j = 0; j < SIDE; j++)
		for (int i = 0; i < SIDE; i++)
			luma[j * SIDE + i] = (float)((double)(int64_t)ycell[j][i] * to_luma);
	out->phash = phash_from_luma32(luma);

	uint64_t d = 0;
	for (int r = 0; r < DH_H; r++)
		for (int c = 0; c < 8; c++)
			if (luma1000(dcell[r] + 3 * c) > luma1000(dcell[r] + 3 * (c + 1)))
				d |= 1ull << (63 - (r * 8 + c));
	out->dhash = d;

	/* cells of weight 8 w h (8 rows of h, w across); rounded to nearest,
	 * halves up */
	const uint64_t den = 8ull * (uint64_t)w * (uint64_t)h;
	for (int r = 0; r < THUMB_SIDE; r++)
		for (int k = 0; k < 3 * THUMB_SIDE; k++)
			out->thumb[r * 3 * THUMB_SIDE + k] =
				(uint8_t)((2 * tcell[r][k] + den) / (2 * den));
	return 0;
}

/* ------------------------------------------------------------------- DCT */

/* cos_lo[k][n] = cos(pi (2n + 1) k / 64), n < 16: the other half of each
 * row is the mirror image, negated for odd k.  cos_t is the same by
 * frequency parity, transposed: cos_t[n][p][q] = cos_lo[2q + p][n]. */
static float cos_lo[LOW][SIDE / 2];
static float cos_t[SIDE / 2][2][LOW / 2];
static pthread_once_t cos_once = PTHREAD_ONCE_INIT;

static void cos_init(void)
{
	for (int k = 0; k < LOW; k++)
		for (int n = 0; n < SIDE / 2; n++) {
			cos_lo[k][n] = (float)cos(M_PI * (2 * n + 1) * k / (2.0 * SIDE));
			cos_t[n][k & 1][k / 2] = cos_lo[k][n];
		}
}

/* dct_low() : x (32 x 32, row-major) -> the 8 x 8 lowest frequencies of
 * the unnormalised 2D DCT-II, X[u][v] = sum_r sum_n x[r][n]
 * cos(pi(2r+1)u/64) cos(pi(2n+1)v/64).  Even frequencies come from the
 * sums of mirrored samples, odd ones from the differences: half the
 * multiplications.  Columns first, so every inner loop runs along a row
 * (vectorised over n, then over v). */
static void dct_low(const float *x, float X[LOW][LOW])
{
	float sum[SIDE / 2][SIDE], dif[SIDE / 2][SIDE];
	for (int r = 0; r < SIDE / 2; r++)
		for (int n = 0; n < SIDE; n++) {
			sum[r][n] = x[r * SIDE + n] + x[(SIDE - 1 - r) * SIDE + n];
			dif[r][n] = x[r * SIDE + n] - x[(SIDE - 1 - r) * SIDE + n];
		}
	float col[LOW][SIDE]; /* col[u][n]: frequency u down column n */
	for (int u = 0; u < LOW; u++) {
		float (*in)[SIDE] = u & 1 ? dif : sum;
		float a[SIDE] = {0};
		for (int r = 0; r < SIDE / 2; r++)
			for (int n = 0; n < SIDE; n++)
				a[n] += cos_lo[u][r] * in[r][n];
		memcpy(col[u], a, sizeof a);
	}
	for (int u = 0; u < LOW; u++) {
		float a[2][LOW / 2] = {{0}};
		for (int n = 0; n < SIDE / 2; n++) {
			float s = col[u][n] + col[u][SIDE - 1 - n];
			float d = col[u][n] - col[u][SIDE - 1 - n];
			for (int q = 0; q < LOW / 2; q++) {
				a[0][q] += s * cos_t[n][0][q];
				a[1][q] += d * cos_t[n][1][q];
			}
		}
		for (int q = 0; q < LOW / 2; q++) {
			X[u][2 * q] = a[0][q];
			X[u][2 * q + 1] = a[1][q];
		}
	}
}

uint64_t phash_from_luma32(const float luma[32 * 32])
{
	pthread_once(&cos_once, cos_init);

	/* The mean goes out before the transform and comes back as the DC
	 * term, so that a flat image gives AC terms of exactly 0 (not
	 * rounding noise): its hash is defined (DC bit only).  Partial sums
	 * in double: exact for a flat image, and vectorisable. */
	double part[8] = {0};
	for (int i = 0; i < SIDE * SIDE; i += 8)
		for (int k = 0; k < 8; k++)
			part[k] += luma[i + k];
	double total = 0;
	for (int k = 0; k < 8; k++)
		total += part[k];
	const float mean = (float)(total / (SIDE * SIDE));
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
	X[0][0] = (float)total;

	/* Every AC term is at most l1 in size and float rounding moves it by
	 * well under 2^-16 l1: terms below that are 0 in exact arithmetic
	 * (symmetries), and snapping them to 0 keeps their bits the same on
	 * every machine. */
	const float noise = l1 * (1.0f / 65536);
	float *v = &X[0][0];
	for (int i = 1; i < LOW * LOW; i++)
		if (fabsf(v[i]) < noise)
			v[i] = 0;

	/* median of the 64 = mean of the 32nd and 33rd smallest (as numpy);
	 * each value's place in sorted order is [less, less + equal) */
	float lo = 0, hi = 0;
	for (int i = 0; i < LOW * LOW; i++) {
		int less = 0, equal = 0;
		for (int j = 0; j < LOW * LOW; j++) {
			less += v[j] < v[i];
			equal += v[j] == v[i];
		}
		if (less <= 31 && 31 < less + equal)
			lo = v[i];
		if (less <= 32 && 32 < less + equal)
			hi = v[i];
	}
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
			if (d > m)
				m = d;
		}
		total += m;
	}
	return total / (double)(THUMB_SIDE * THUMB_SIDE);
}
