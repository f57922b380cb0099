/* phash.c: pHash, dHash and the 4x4 RGB thumbnail of an image.
 *
 * Area averaging, exact.  Along each axis an input pixel is `out` units
 * long and an output cell `in` units (in, out: the two sizes), so every
 * pixel's coverage of a cell is a whole number of units and all sums are
 * integers: the averages do not depend on loop order, strip width or
 * vector width, and equal content gives equal sums (dHash ties on flat
 * graphics are real ties, a flat image gives a flat thumbnail).
 *
 * The image is reduced to 32 rows, one at a time: the weighted sum of the
 * input rows each covers (integers, vectorised along the row), turned into
 * luma per column.  Eight such rows at a time are transposed into columns
 * of 32 (doubles holding whole numbers), so that the sums across into
 * cells are vectors over the rows.  The grids nest: dHash's 9 x 8 cells
 * come from the same columns (4 of the 32 rows make one of its 8), and the
 * thumbnail's rows from the RGB sums of 8 rows.
 *
 * Luma is 0.299 R + 0.587 G + 0.114 B, held as the integer 299R + 587G +
 * 114B until the 32x32 thumbnail becomes float for the DCT; dHash compares
 * those integers.  Both hashes have a dead zone (PH_DEAD, DH_DEAD): a
 * difference below a luma level is no detail, so the coding noise of a
 * re-encoded flat graphic does not flip bits.
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
 * AVX2 copy is also built and picked at load time (32-bit multiplies, the
 * RGB -> luma shuffle and 4 doubles a vector are native there): 3.4x
 * faster, 230k against 67k signatures/s of a 64x64 image on one EPYC
 * core.  Whole numbers, and unfused float operations in a fixed order:
 * both copies give the same bits. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef SIMD_CLONES
#define SIMD_CLONES
#endif
/* helpers of a cloned function: inlined, so built for each target */
#define INLINE static inline __attribute__((always_inline))

enum {
	SIDE = 32,   /* pHash thumbnail */
	LOW = 8,     /* frequencies kept per axis */
	DH_W = 9,    /* dHash grid: 9 x 8 */
	DH_H = 8,
	STRIP = 64,  /* columns reduced at a time (the row buffers' width) */
	VEC = 32,    /* row loops go in blocks of this many values */
	/* Rows summed at a time.  Luma of a row sum, 1000 * 255 * (its
	 * weights, at most 32 per row), stays below 2^31 up to 256 rows;
	 * images up to TALL rows are summed whole (weights h <= 8192). */
	CHUNK = 256,
	TALL = CHUNK * SIDE,
};
/* Dead zones, in luma levels (see phash_from_luma32 and img_signature):
 * a DCT term of a cosine below half a level, or a dHash step below one
 * level, is no detail. */
#define PH_DEAD 0.5
#define DH_DEAD 1.0

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

INLINE uint32_t span_weight(const span *c, int x, uint32_t full)
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
INLINE int cuts_make(const span *sp, int ncell, int s, int n, uint32_t full, cut *c, int *first)
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
INLINE void vsum(uint32_t *restrict acc, const uint8_t *px, size_t stride, const span *sy,
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
	/* rows strictly between: whole pixels, summed, then scaled */
	const uint8_t *r = a + stride;
	int k = 0;
	for (; k + VEC <= m; k += VEC)
		for (int t = 0; t < VEC; t++)
			acc[k + t] = r[k + t];
	for (; k < m; k++)
		acc[k] = r[k];
	for (r += stride; r < b; r += stride) {
		k = 0;
		for (; k + VEC <= m; k += VEC)
			for (int t = 0; t < VEC; t++)
				acc[k + t] += r[k + t];
		for (; k < m; k++)
			acc[k] += r[k];
	}
	k = 0;
	for (; k + VEC <= m; k += VEC)
		for (int t = 0; t < VEC; t++)
			acc[k + t] = acc[k + t] * SIDE + (uint16_t)(wa * a[k + t] + wb * b[k + t]);
	for (; k < m; k++)
		acc[k] = acc[k] * SIDE + (uint16_t)(wa * a[k] + wb * b[k]);
}

/* lumas() : y[x] = 299 R + 587 G + 114 B of the RGB sums in acc. */
INLINE void lumas(uint32_t *restrict y, const uint32_t *restrict acc, int n)
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

INLINE void add_rows(uint32_t *restrict acc, const uint32_t *restrict r, int m)
{
	int k = 0;
	for (; k + VEC <= m; k += VEC)
		for (int t = 0; t < VEC; t++)
			acc[k + t] += r[k + t];
	for (; k < m; k++)
		acc[k] += r[k];
}

/* hsum_cols() : out[i][j] += the sums of the cut cells c[0..nc) over
 * columns of yt, which holds the 32 output rows of each column side by
 * side: every step is a vector across the rows.  The values are whole
 * numbers below 2^53, so the double sums are exact. */
INLINE void hsum_cols(double (*restrict out)[SIDE], const double (*yt)[SIDE], const cut *c,
		      int nc, double full)
{
	for (int i = 0; i < nc; i++) {
		const double wa = c[i].wa, wb = c[i].wb;
		const double *ya = yt[c[i].a], *yb = yt[c[i].b];
		double v[SIDE];
		for (int j = 0; j < SIDE; j++)
			v[j] = wa * ya[j] + wb * yb[j];
		if (c[i].b - c[i].a > 1) {
			double mid[SIDE];
			memcpy(mid, yt[c[i].a + 1], sizeof mid);
			for (int x = c[i].a + 2; x < c[i].b; x++)
				for (int j = 0; j < SIDE; j++)
					mid[j] += yt[x][j];
			for (int j = 0; j < SIDE; j++)
				v[j] += full * mid[j];
		}
		for (int j = 0; j < SIDE; j++)
			out[i][j] += v[j];
	}
}

/* hsum_rgb() : out[3 i + channel] += the cut cells' sums over RGB. */
INLINE void hsum_rgb(uint64_t *restrict out, const uint32_t *acc, const cut *c, int nc,
		     uint32_t full)
{
	for (int i = 0; i < nc; i++) {
		uint64_t r = 0, g = 0, b = 0;
		for (const uint32_t *p = acc + 3 * (c[i].a + 1), *e = acc + 3 * c[i].b; p < e; p += 3) {
			r += p[0];
			g += p[1];
			b += p[2];
		}
		const uint32_t *pa = acc + 3 * c[i].a, *pb = acc + 3 * c[i].b;
		const uint64_t wa = c[i].wa, wb = c[i].wb;
		out[3 * i] += r * full + wa * pa[0] + wb * pb[0];
		out[3 * i + 1] += g * full + wa * pa[1] + wb * pb[1];
		out[3 * i + 2] += b * full + wa * pa[2] + wb * pb[2];
	}
}

typedef int32_t v4si __attribute__((vector_size(16)));
typedef double v4df __attribute__((vector_size(32)));

INLINE void load4(v4df *v, const uint32_t *p)
{
	v4si i;
	memcpy(&i, p, sizeof i);
	*v = __builtin_convertvector(i, v4df);
}

INLINE void store4(double *o, const v4df *v, int add)
{
	v4df r = *v;
	if (add) {
		v4df old;
		memcpy(&old, o, sizeof old);
		r += old;
	}
	memcpy(o, &r, sizeof r);
}

/* transpose8() : yt[x][j8 + t] = y[t][x] (t < 8, x < n), as doubles; added
 * when `add`.  In 4 x 4 blocks of vectors (the lumas are below 2^31).
 * __builtin_shufflevector, not GCC's __builtin_shuffle: clang (make fuzz)
 * has only the former, GCC 12 both, with the same code. */
INLINE void transpose8(double (*restrict yt)[SIDE], const uint32_t (*y)[STRIP], int j8, int n,
		       int add)
{
	int x = 0;
	for (; x + 4 <= n; x += 4)
		for (int t = 0; t < 8; t += 4) {
			v4df r0, r1, r2, r3;
			load4(&r0, &y[t][x]);
			load4(&r1, &y[t + 1][x]);
			load4(&r2, &y[t + 2][x]);
			load4(&r3, &y[t + 3][x]);
			const v4df a0 = __builtin_shufflevector(r0, r1, 0, 4, 2, 6);
			const v4df a1 = __builtin_shufflevector(r0, r1, 1, 5, 3, 7);
			const v4df a2 = __builtin_shufflevector(r2, r3, 0, 4, 2, 6);
			const v4df a3 = __builtin_shufflevector(r2, r3, 1, 5, 3, 7);
			const v4df c0 = __builtin_shufflevector(a0, a2, 0, 1, 4, 5);
			const v4df c1 = __builtin_shufflevector(a1, a3, 0, 1, 4, 5);
			const v4df c2 = __builtin_shufflevector(a0, a2, 2, 3, 6, 7);
			const v4df c3 = __builtin_shufflevector(a1, a3, 2, 3, 6, 7);
			store4(&yt[x][j8 + t], &c0, add);
			store4(&yt[x + 1][j8 + t], &c1, add);
			store4(&yt[x + 2][j8 + t], &c2, add);
			store4(&yt[x + 3][j8 + t], &c3, add);
		}
	for (; x < n; x++)
		for (int t = 0; t < 8; t++)
			yt[x][j8 + t] = (add ? yt[x][j8 + t] : 0) + y[t][x];
}

/* ------------------------------------------------------------- signature */

/* Sums over the whole image, all cells of a grid of equal total weight:
 * luma (x 1000) of the 32 x 32 cells and of dHash's 9 columns, both
 * column-major over the 32 rows; 4 x 4 RGB. */
typedef struct sums {
	double y[SIDE][SIDE];
	double d[DH_W][SIDE];
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
	/* Up to TALL rows a row's sums fit as they are, and 8 of them add up
	 * for the thumbnail's rows; a taller image is summed CHUNK rows at a
	 * time, each chunk going to the thumbnail on its own. */
	const int tall = h > TALL;
	const int chunk = tall ? CHUNK : h;

	uint32_t acc[3 * STRIP], acc8[3 * STRIP], y[8][STRIP];
	double yt[STRIP][SIDE], part[STRIP];
	cut cx[SIDE], cx9[DH_W], cx4[THUMB_SIDE];
	memset(S, 0, sizeof *S);
	for (int s = 0; s < w; s += STRIP) {
		const int n = w - s < STRIP ? w - s : STRIP, m = 3 * n;
		const uint8_t *px = im->px + 3 * (size_t)s;
		int f, f9, f4;
		const int nc = cuts_make(sx, SIDE, s, n, SIDE, cx, &f);
		const int nc9 = cuts_make(sx9, DH_W, s, n, DH_W, cx9, &f9);
		const int nc4 = cuts_make(sx4, THUMB_SIDE, s, n, THUMB_SIDE, cx4, &f4);
		/* 8 output rows at a time: their lumas go into yt together, and
		 * their RGB sums make one thumbnail row */
		for (int j8 = 0; j8 < SIDE; j8 += 8) {
			for (int j = j8; j < j8 + 8; j++) {
				const int yb = sy[j].hi - sy[j].lo >= chunk ? sy[j].lo + chunk - 1 : sy[j].hi;
				vsum(acc, px, stride, &sy[j], sy[j].lo, yb, m);
				lumas(y[j - j8], acc, n);
				if (!tall) {
					if (j == j8)
						memcpy(acc8, acc, (size_t)m * sizeof *acc);
					else
						add_rows(acc8, acc, m);
					continue;
				}
				/* tall: the other chunks, summed in double */
				hsum_rgb(S->t[j / 8] + 3 * f4, acc, cx4, nc4, THUMB_SIDE);
				for (int x = 0; x < n; x++)
					part[x] = 0;
				for (int ya = yb + 1; ya <= sy[j].hi; ya += chunk) {
					const int yc = sy[j].hi - ya >= chunk ? ya + chunk - 1 : sy[j].hi;
					vsum(acc, px, stride, &sy[j], ya, yc, m);
					hsum_rgb(S->t[j / 8] + 3 * f4, acc, cx4, nc4, THUMB_SIDE);
					for (int x = 0; x < n; x++)
						part[x] += 299 * acc[3 * x] + 587 * acc[3 * x + 1] + 114 * acc[3 * x + 2];
				}
				for (int x = 0; x < n; x++)
					yt[x][j] = part[x];
			}
			if (!tall)
				hsum_rgb(S->t[j8 / 8] + 3 * f4, acc8, cx4, nc4, THUMB_SIDE);
			transpose8(yt, (const uint32_t (*)[STRIP])y, j8, n, tall);
		}
		hsum_cols(S->y + f, (const double (*)[SIDE])yt, cx, nc, SIDE);
		hsum_cols(S->d + f9, (const double (*)[SIDE])yt, cx9, nc9, DH_W);
	}
}

int img_signature(const img_rgb *im, img_sig *out)
{
	const int w = im->w, h = im->h;
	if (w <= 0 || h <= 0 || !im->px)
		return -1;
	sums S;
	image_sums(im, &S);

	/* a 32-cell weighs w h in all */
	float luma[SIDE * SIDE];
	const double to_luma = 1.0 / (1000.0 * w * h);
	for (int j = 0; j < SIDE; j++)
		for (int i = 0; i < SIDE; i++)
			luma[j * SIDE + i] = (float)(S.y[i][j] * to_luma);
	out->phash = phash_from_luma32(luma);

	/* dHash row r: rows 4r..4r+3; a cell weighs 4 h times w, so a step
	 * of DH_DEAD levels is DH_DEAD 1000 4 w h (whole numbers, exact) */
	double dl[DH_H][DH_W];
	for (int r = 0; r < DH_H; r++)
		for (int c = 0; c < DH_W; c++)
			dl[r][c] = S.d[c][4 * r] + S.d[c][4 * r + 1] + S.d[c][4 * r + 2] +
				   S.d[c][4 * r + 3];
	uint64_t d = 0;
	const double dz = DH_DEAD * 1000.0 * 4 * w * h;
	for (int r = 0; r < DH_H; r++)
		for (int c = 0; c < 8; c++)
			if (dl[r][c] > dl[r][c + 1] + dz)
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
 * row is the mirror image, negated for odd k.  cos_t holds the same by
 * parity, transposed: cos_t[n][p][q] = cos_lo[2q + p][n]. */
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
	/* the same along each row of col, 8 frequencies from 16 pairs:
	 * a[0][q] is frequency 2q, a[1][q] frequency 2q + 1 */
	for (int u = 0; u < LOW; u++) {
		float a[2][LOW / 2] = {{0}};
		for (int n = 0; n < SIDE / 2; n++) {
			const float s = col[u][n] + col[u][SIDE - 1 - n];
			const float d = col[u][n] - col[u][SIDE - 1 - n];
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

/* select_k() : the k-th smallest of v[0..n) (0-based), v reordered so
 * that nothing before k is larger and nothing after smaller.  Partitions
 * around the middle element, branch-free: the smaller values first, then
 * those equal to it (the dead zone makes many zeros). */
static float select_k(float *v, int n, int k)
{
	int lo = 0, hi = n - 1;
	while (lo < hi) {
		const float pivot = v[lo + (hi - lo) / 2];
		int i = lo;
		for (int j = lo; j <= hi; j++) { /* v[lo..i) < pivot */
			const float x = v[j], t = v[i];
			const int c = x < pivot;
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
			const float x = v[j], t = v[e];
			const int c = x == pivot;
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

/* halve() : t[i] += t[i + len], i < len (len a constant once inlined) */
INLINE void halve(float *t, int len)
{
	for (int i = 0; i < len; i++)
		t[i] += t[i + len];
}

/* sum_pairwise() : the sum of 1024 floats by halving: for equal values
 * every partial sum is that value times a power of two, so exact. */
static float sum_pairwise(const float *x)
{
	float t[SIDE * SIDE / 2];
	for (int i = 0; i < SIDE * SIDE / 2; i++)
		t[i] = x[i] + x[i + SIDE * SIDE / 2];
	halve(t, 256);
	halve(t, 128);
	halve(t, 64);
	halve(t, 32);
	halve(t, 16);
	halve(t, 8);
	halve(t, 4);
	halve(t, 2);
	halve(t, 1);
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
	float x[SIDE * SIDE];
	for (int i = 0; i < SIDE * SIDE; i++)
		x[i] = luma[i] - mean;

	float X[LOW][LOW];
	dct_low(x, X);
	X[0][0] = total;

	/* Dead zone.  A term that is 0 in exact arithmetic (a symmetry:
	 * emoji, icons and logos are often mirror images of themselves, and
	 * then half the terms are 0) comes out as rounding noise here and as
	 * coding noise in a re-encoded copy; either way its bit would be a
	 * coin flip around a median near 0, 10 to 20 of the 64 bits of a flat
	 * graphic.  A term below 256 PH_DEAD (what a cosine of amplitude
	 * PH_DEAD gives for u, v >= 1; half that amplitude on the first row
	 * and column) counts as 0, and stays 0 in every copy: re-encoded and
	 * resized copies then move 5 bits at most instead of 22, while
	 * photos keep their bits (scripts/eval_phash.py measures both). */
	const float dead = (float)(PH_DEAD * 256);
	float *v = &X[0][0], tmp[LOW * LOW];
	for (int i = 1; i < LOW * LOW; i++)
		if (fabsf(v[i]) < dead)
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
