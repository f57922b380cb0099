/* test_phash.c: image signatures (filters/phash.h) against references
 * written here in the plainest way: area averages by brute-force interval
 * overlap of every pixel with every cell, in integers; the DCT as the
 * O(n^4) double sum.  The signatures must equal the references exactly
 * (thumbnails, dHash, and pHash computed from the reference 32x32 luma),
 * on sizes from 1x1 to 20000 rows and odd shapes.  Then the properties
 * of the hashes and distances, and the behaviour dedup relies on, on
 * images coded by mvl's own encoders and resampler: copies stay within the
 * default thresholds, recoloured flat graphics are told apart.
 */
#include "image.h"
#include "phash.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* dedup's defaults, as scripts/eval_phash.py recommends them */
enum { DEF_HAMMING = 7 };
#define DEF_THUMB 16.0

/* --------------------------------------------------------------- helpers */

static uint32_t rng_state = 2463534242u;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static img_rgb image_new(int w, int h)
{
	img_rgb im = {w, h, xcalloc((size_t)w * h * 3 + 1, 1)};
	return im;
}

static void fill_random(img_rgb *im)
{
	for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++)
		im->px[i] = (uint8_t)(rnd() >> 24);
}

/* smooth content with some structure: gradients, a disc, a bar */
static void fill_scene(img_rgb *im, int seed)
{
	int w = im->w, h = im->h;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			uint8_t *p = im->px + ((size_t)y * w + x) * 3;
			double u = (double)x / w, v = (double)y / h;
			double dx = u - 0.35 - 0.05 * seed, dy = v - 0.55;
			int disc = dx * dx + dy * dy < 0.04;
			int bar = u > 0.62 && u < 0.8 && v > 0.1 && v < 0.7;
			p[0] = (uint8_t)(disc ? 220 : bar ? 30 : 40 + 150 * u);
			p[1] = (uint8_t)(disc ? 60 : bar ? 90 : 60 + 120 * v);
			p[2] = (uint8_t)(disc ? 50 : bar ? 200 : 200 - 100 * u * v);
		}
}

/* a flat disc of one colour on white, as icons are */
static void fill_disc(img_rgb *im, const uint8_t rgb[3], double cx)
{
	int w = im->w, h = im->h;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			double dx = (x + 0.5) / w - cx, dy = (y + 0.5) / h - 0.5;
			uint8_t *p = im->px + ((size_t)y * w + x) * 3;
			int in = dx * dx + dy * dy < 0.09;
			for (int c = 0; c < 3; c++)
				p[c] = in ? rgb[c] : 255;
		}
}

/* ----------------------------------------------------------- references */

/* overlap of pixel x (units [x g, (x+1) g)) with cell i ([i n, (i+1) n)),
 * n pixels split into g cells */
static uint64_t overlap(int x, int i, int n, int g)
{
	int64_t a = (int64_t)x * g, b = a + g, c = (int64_t)i * n, d = c + n;
	int64_t lo = a > c ? a : c, hi = b < d ? b : d;
	return hi > lo ? (uint64_t)(hi - lo) : 0;
}

/* sums[(j gw + i) 3 + c] = sum over pixels of overlap_x overlap_y px: each
 * cell weighs w h in all */
static void ref_grid(const img_rgb *im, int gw, int gh, uint64_t *sums)
{
	memset(sums, 0, sizeof *sums * gw * gh * 3);
	for (int y = 0; y < im->h; y++) {
		int j0 = (int)((int64_t)y * gh / im->h), j1 = (int)((((int64_t)y + 1) * gh - 1) / im->h);
		for (int x = 0; x < im->w; x++) {
			int i0 = (int)((int64_t)x * gw / im->w), i1 = (int)((((int64_t)x + 1) * gw - 1) / im->w);
			const uint8_t *p = im->px + ((size_t)y * im->w + x) * 3;
			for (int j = j0; j <= j1 && j < gh; j++)
				for (int i = i0; i <= i1 && i < gw; i++) {
					uint64_t o = overlap(x, i, im->w, gw) * overlap(y, j, im->h, gh);
					for (int c = 0; c < 3; c++)
						sums[((size_t)j * gw + i) * 3 + c] += o * p[c];
				}
		}
	}
}

static uint64_t luma1000(const uint64_t *rgb)
{
	return 299 * rgb[0] + 587 * rgb[1] + 114 * rgb[2];
}

/* the signature by the references, pHash through phash_from_luma32 */
static void ref_signature(const img_rgb *im, img_sig *s, float luma[1024])
{
	const uint64_t wh = (uint64_t)im->w * im->h;
	uint64_t *g = xmalloc(sizeof *g * 32 * 32 * 3);
	ref_grid(im, 32, 32, g);
	for (int k = 0; k < 1024; k++)
		luma[k] = (float)((double)luma1000(g + 3 * k) * (1.0 / (1000.0 * im->w * im->h)));
	s->phash = phash_from_luma32(luma);
	ref_grid(im, 9, 8, g);
	s->dhash = 0;
	for (int r = 0; r < 8; r++)
		for (int c = 0; c < 8; c++)
			if (luma1000(g + 3 * (r * 9 + c)) > luma1000(g + 3 * (r * 9 + c + 1)) + 1000 * wh)
				s->dhash |= 1ull << (63 - (r * 8 + c));
	ref_grid(im, 4, 4, g);
	for (int k = 0; k < THUMB_BYTES; k++)
		s->thumb[k] = (uint8_t)((2 * g[k] + wh) / (2 * wh));
	free(g);
}

/* the 8 x 8 low frequencies of the unnormalised DCT-II, in double: AC
 * terms of luma - mean, DC the sum */
static void ref_dct(const float luma[1024], double X[64], double *l1)
{
	double mean = 0;
	for (int k = 0; k < 1024; k++)
		mean += luma[k];
	mean /= 1024;
	*l1 = 0;
	for (int k = 0; k < 1024; k++)
		*l1 += fabs(luma[k] - mean);
	for (int u = 0; u < 8; u++)
		for (int v = 0; v < 8; v++) {
			double a = 0;
			for (int r = 0; r < 32; r++)
				for (int n = 0; n < 32; n++)
					a += (luma[r * 32 + n] - mean) * cos(M_PI * (2 * r + 1) * u / 64) *
					     cos(M_PI * (2 * n + 1) * v / 64);
			X[u * 8 + v] = a;
		}
	X[0] = mean * 1024;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

/* The pHash bits of the reference DCT (dead zone 128, median of 64).
 * *unsure gets the bits whose term lies within tol of the dead zone's
 * edge or of the median, where float rounding may decide. */
static uint64_t ref_phash(const float luma[1024], uint64_t *unsure)
{
	double X[64], s[64], l1;
	ref_dct(luma, X, &l1);
	const double tol = 1e-5 * l1 + 1e-3;
	*unsure = 0;
	for (int i = 1; i < 64; i++) {
		if (fabs(fabs(X[i]) - 128) < tol)
			*unsure |= 1ull << (63 - i);
		if (fabs(X[i]) < 128)
			X[i] = 0;
	}
	memcpy(s, X, sizeof s);
	qsort(s, 64, sizeof *s, cmp_double);
	double med = (s[31] + s[32]) / 2;
	uint64_t h = 0;
	for (int i = 0; i < 64; i++) {
		if (X[i] > med)
			h |= 1ull << (63 - i);
		if (fabs(X[i] - med) < tol && (X[i] != 0 || med != 0)) /* zeros stay zeros */
			*unsure |= 1ull << (63 - i);
	}
	return h;
}

static int sig_equal(const img_sig *a, const img_sig *b)
{
	return a->phash == b->phash && a->dhash == b->dhash && !memcmp(a->thumb, b->thumb, THUMB_BYTES);
}

/* ------------------------------------------------------------ references */

static void check_against_ref(const img_rgb *im, const char *what)
{
	img_sig s, r;
	float luma[1024];
	char name[160];
	int rc = img_signature(im, &s);
	ref_signature(im, &r, luma);
	snprintf(name, sizeof name, "signature_%s_%dx%d", what, im->w, im->h);
	CHECKF(rc == 0 && sig_equal(&s, &r), name,
	       "rc %d phash %016llx/%016llx dhash %016llx/%016llx thumb %s", rc,
	       (unsigned long long)s.phash, (unsigned long long)r.phash, (unsigned long long)s.dhash,
	       (unsigned long long)r.dhash, memcmp(s.thumb, r.thumb, THUMB_BYTES) ? "differs" : "same");
}

static void test_exact(void)
{
	/* odd sizes, sizes around the strip width (64) and the grids, up-
	 * and downsampling on either axis */
	static const int sizes[][2] = {
		{1, 1}, {2, 3}, {7, 5}, {9, 8}, {31, 33}, {32, 32}, {33, 31}, {48, 48},
		{63, 61}, {64, 64}, {65, 64}, {100, 75}, {127, 129}, {128, 96}, {193, 40},
		{257, 33}, {300, 7}, {5, 300}, {640, 480}, {1001, 3},
	};
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		img_rgb im = image_new(sizes[k][0], sizes[k][1]);
		fill_random(&im);
		check_against_ref(&im, "random");
		fill_scene(&im, (int)k % 3);
		check_against_ref(&im, "scene");
		img_rgb_free(&im);
	}
	/* huge aspect ratios, and taller than 8192 rows (summed in chunks) */
	static const int huge[][2] = {{5000, 1}, {1, 5000}, {3, 20000}, {2, 8193}, {70, 9000}};
	for (size_t k = 0; k < sizeof huge / sizeof *huge; k++) {
		img_rgb im = image_new(huge[k][0], huge[k][1]);
		fill_random(&im);
		check_against_ref(&im, "huge_aspect");
		img_rgb_free(&im);
	}
}

static void test_dct(void)
{
	/* random luma and smooth luma against the O(n^4) DCT */
	int bad = 0, unsure_bits = 0;
	for (int t = 0; t < 40; t++) {
		float luma[1024];
		for (int k = 0; k < 1024; k++) {
			int r = k / 32, n = k % 32;
			luma[k] = t < 20 ? (float)(rnd() % 25600) / 100
					 : (float)(128 + 60 * sin(0.1 * (t + 1) * r + 0.07 * n * (t % 5)) +
						   (rnd() % 100) / 50.0);
		}
		uint64_t unsure, ref = ref_phash(luma, &unsure), got = phash_from_luma32(luma);
		bad += ((ref ^ got) & ~unsure) != 0;
		unsure_bits += __builtin_popcountll(unsure);
	}
	CHECKF(bad == 0, "dct_matches_naive_reference", "%d of 40 hashes differ", bad);
	CHECKF(unsure_bits <= 8, "dct_reference_few_ties", "%d bits within rounding of a tie", unsure_bits);

	/* one cosine: its own bit (row = vertical frequency u, column =
	 * horizontal v, bit 63 - (8u + v)) and the DC bit; negated, the DC
	 * bit alone; above the 8 x 8 block, the DC bit alone */
	int wrong = 0;
	for (int u = 0; u < 10; u++)
		for (int v = 0; v < 10; v++) {
			if (!u && !v)
				continue;
			for (int sign = -1; sign <= 1; sign += 2) {
				float luma[1024];
				for (int r = 0; r < 32; r++)
					for (int n = 0; n < 32; n++)
						luma[r * 32 + n] = (float)(128 + sign * 50 * cos(M_PI * (2 * r + 1) * u / 64) *
										 cos(M_PI * (2 * n + 1) * v / 64));
				uint64_t want = 1ull << 63;
				if (sign > 0 && u < 8 && v < 8)
					want |= 1ull << (63 - (u * 8 + v));
				wrong += phash_from_luma32(luma) != want;
			}
		}
	CHECKF(wrong == 0, "dct_basis_bit_order", "%d of 198 cosines give other bits", wrong);

	/* below the dead zone (a cosine of 0.2 of a level; the edge is 0.25
	 * on the first column) a term is no detail; at 2 levels it is */
	float luma[1024];
	for (int k = 0; k < 1024; k++)
		luma[k] = (float)(100 + 0.2 * cos(M_PI * (2 * (k / 32) + 1) * 3 / 64));
	CHECK(phash_from_luma32(luma) == 1ull << 63, "phash_dead_zone_small_term");
	for (int k = 0; k < 1024; k++)
		luma[k] = (float)(100 + 2 * cos(M_PI * (2 * (k / 32) + 1) * 3 / 64));
	CHECK(phash_from_luma32(luma) == ((1ull << 63) | (1ull << (63 - 24))), "phash_dead_zone_real_term");
}

/* ------------------------------------------------------------ properties */

static void test_flat(void)
{
	img_rgb im = image_new(37, 23);
	for (size_t i = 0; i < 37 * 23; i++) {
		im.px[3 * i] = 200;
		im.px[3 * i + 1] = 100;
		im.px[3 * i + 2] = 50;
	}
	img_sig s;
	int ok = img_signature(&im, &s) == 0;
	CHECKF(ok && s.phash == 1ull << 63, "flat_phash_dc_only", "%016llx", (unsigned long long)s.phash);
	CHECKF(ok && s.dhash == 0, "flat_dhash_zero", "%016llx", (unsigned long long)s.dhash);
	int same = 1;
	for (int k = 0; k < 16; k++)
		same &= s.thumb[3 * k] == 200 && s.thumb[3 * k + 1] == 100 && s.thumb[3 * k + 2] == 50;
	CHECK(same, "flat_thumb_is_the_colour");
	memset(im.px, 0, 37 * 23 * 3);
	CHECK(img_signature(&im, &s) == 0 && s.phash == 0 && s.dhash == 0, "black_hashes_zero");
	img_rgb_free(&im);

	img_rgb one = image_new(1, 1);
	one.px[0] = 10, one.px[1] = 20, one.px[2] = 30;
	same = img_signature(&one, &s) == 0 && s.phash == 1ull << 63 && s.dhash == 0;
	for (int k = 0; k < 16; k++)
		same &= s.thumb[3 * k] == 10 && s.thumb[3 * k + 1] == 20 && s.thumb[3 * k + 2] == 30;
	CHECK(same, "one_pixel");
	img_rgb_free(&one);

	img_rgb empty = {0, 5, (uint8_t *)"x"};
	CHECK(img_signature(&empty, &s) == -1, "zero_width_refused");
	empty.w = 5, empty.h = 0;
	CHECK(img_signature(&empty, &s) == -1, "zero_height_refused");
}

static void test_thumb_known(void)
{
	/* 4 x 4: the pixels themselves */
	img_rgb im = image_new(4, 4);
	fill_random(&im);
	img_sig s;
	CHECK(img_signature(&im, &s) == 0 && !memcmp(s.thumb, im.px, THUMB_BYTES), "thumb_4x4_is_the_image");
	img_rgb_free(&im);

	/* 8 x 8 of 2 x 2 blocks (a, a, a, b): mean rounded, halves up */
	im = image_new(8, 8);
	for (int y = 0; y < 8; y++)
		for (int x = 0; x < 8; x++)
			for (int c = 0; c < 3; c++)
				im.px[(y * 8 + x) * 3 + c] = (uint8_t)((x & 1) && (y & 1) ? 11 + c : 10);
	/* (10 + 10 + 10 + 11) / 4 = 10.25 -> 10; + 12: 10.5 -> 11; + 13: 10.75 -> 11 */
	int ok = img_signature(&im, &s) == 0;
	for (int k = 0; k < 16; k++)
		ok &= s.thumb[3 * k] == 10 && s.thumb[3 * k + 1] == 11 && s.thumb[3 * k + 2] == 11;
	CHECK(ok, "thumb_rounds_half_up");
	img_rgb_free(&im);

	/* 3 x 1 -> 4 cells: the middle pixel is split 1/3 : 2/3 */
	im = image_new(3, 1);
	static const uint8_t px[9] = {0, 0, 0, 90, 90, 90, 240, 240, 240};
	memcpy(im.px, px, 9);
	/* cells over [0, .75) [.75, 1.5) [1.5, 2.25) [2.25, 3): 0, 60, 140, 240 */
	ok = img_signature(&im, &s) == 0;
	static const uint8_t want[4] = {0, 60, 140, 240};
	for (int r = 0; r < 4; r++)
		for (int k = 0; k < 4; k++)
			ok &= s.thumb[(r * 4 + k) * 3] == want[k];
	CHECK(ok, "thumb_fractional_coverage");
	img_rgb_free(&im);
}

static void test_distances(void)
{
	CHECK(hamming64(0, 0) == 0 && hamming64(~0ull, 0) == 64 && hamming64(0xf0, 0x0f) == 8 &&
		      hamming64(1ull << 63, 1) == 2,
	      "hamming64");
	uint8_t a[THUMB_BYTES], b[THUMB_BYTES], c[THUMB_BYTES];
	memset(a, 0, sizeof a);
	memset(b, 255, sizeof b);
	CHECK(thumb_distance(a, a) == 0 && thumb_distance(a, b) == 255, "thumb_distance_extremes");
	memset(b, 0, sizeof b);
	for (int k = 0; k < 16; k++)
		b[3 * k + 1] = 16; /* green +16 in every cell */
	CHECK(thumb_distance(a, b) == 16, "thumb_distance_one_channel");
	memset(b, 0, sizeof b);
	b[3 * 5] = 80, b[3 * 5 + 2] = 40; /* one cell: the larger channel counts */
	CHECK(thumb_distance(a, b) == 5, "thumb_distance_one_cell");
	int sym = 1, tri = 1;
	for (int t = 0; t < 1000; t++) {
		for (int k = 0; k < THUMB_BYTES; k++)
			a[k] = (uint8_t)rnd(), b[k] = (uint8_t)rnd(), c[k] = (uint8_t)rnd();
		sym &= thumb_distance(a, b) == thumb_distance(b, a);
		tri &= thumb_distance(a, c) <= thumb_distance(a, b) + thumb_distance(b, c) + 1e-9;
	}
	CHECK(sym, "thumb_distance_symmetric");
	CHECK(tri, "thumb_distance_triangle");
}

static void test_determinism(void)
{
	img_rgb im = image_new(150, 101);
	fill_random(&im);
	img_sig s1, s2, s3;
	img_signature(&im, &s1);
	img_signature(&im, &s2);
	/* the same pixels at another alignment */
	uint8_t *mem = xmalloc((size_t)150 * 101 * 3 + 7);
	memcpy(mem + 7, im.px, (size_t)150 * 101 * 3);
	img_rgb moved = {150, 101, mem + 7};
	img_signature(&moved, &s3);
	CHECK(sig_equal(&s1, &s2) && sig_equal(&s1, &s3), "deterministic");
	free(mem);

	/* a transposed image: the transposed hash, up to rounding */
	img_rgb tr = image_new(101, 150);
	for (int y = 0; y < 101; y++)
		for (int x = 0; x < 150; x++)
			memcpy(tr.px + ((size_t)x * 101 + y) * 3, im.px + ((size_t)y * 150 + x) * 3, 3);
	img_signature(&tr, &s2);
	uint64_t t = 0;
	for (int u = 0; u < 8; u++)
		for (int v = 0; v < 8; v++)
			if (s2.phash >> (63 - (v * 8 + u)) & 1)
				t |= 1ull << (63 - (u * 8 + v));
	CHECKF(hamming64(t, s1.phash) <= 2, "transpose_transposes_phash", "%d bits",
	       hamming64(t, s1.phash));
	img_rgb_free(&tr);
	img_rgb_free(&im);
}

/* ------------------------------------------------------ dedup behaviour */

static int recode(img_ctx *c, const img_rgb *im, img_format f, int q, img_sig *s)
{
	buf b = {0};
	mvl_err err;
	img_rgb d = {0};
	img_decode_opts o;
	img_decode_opts_default(&o);
	o.want_w = o.want_h = 32; /* as dedup decodes */
	int r = img_encode(c, im, f, q, &b, &err) || img_decode(c, b.data, b.len, &o, &d, NULL, &err) ||
		img_signature(&d, s);
	img_rgb_free(&d);
	buf_free(&b);
	return r ? -1 : 0;
}

static int resized(const img_rgb *im, int w, int h, img_sig *s)
{
	img_rgb d = {0};
	mvl_err err;
	int r = img_resize(im, w, h, &d, &err) || img_signature(&d, s);
	img_rgb_free(&d);
	return r ? -1 : 0;
}

static void test_copies(img_ctx *c)
{
	static const uint8_t red[3] = {220, 38, 38}, blue[3] = {37, 99, 235};
	for (int k = 0; k < 3; k++) {
		/* a scene, and a flat mirror-symmetric icon (where pHash without
		 * its dead zone moves 10-20 bits on re-encoding) */
		img_rgb im = image_new(k == 2 ? 96 : 320, k == 2 ? 96 : 240);
		if (k < 2)
			fill_scene(&im, k);
		else
			fill_disc(&im, red, 0.5);
		img_sig o, s;
		img_signature(&im, &o);
		struct { const char *name; int ok; } v[6];
		int n = 0;
		v[n].name = "jpeg_q75";
		v[n++].ok = recode(c, &im, IMG_JPEG, 75, &s) == 0 && hamming64(o.phash, s.phash) <= DEF_HAMMING &&
			    thumb_distance(o.thumb, s.thumb) <= DEF_THUMB;
		v[n].name = "jpeg_q50";
		v[n++].ok = recode(c, &im, IMG_JPEG, 50, &s) == 0 && hamming64(o.phash, s.phash) <= DEF_HAMMING &&
			    thumb_distance(o.thumb, s.thumb) <= DEF_THUMB;
		v[n].name = "webp_q80";
		v[n++].ok = recode(c, &im, IMG_WEBP, 80, &s) == 0 && hamming64(o.phash, s.phash) <= DEF_HAMMING &&
			    thumb_distance(o.thumb, s.thumb) <= DEF_THUMB;
		v[n].name = "png";
		v[n++].ok = recode(c, &im, IMG_PNG, 0, &s) == 0 && hamming64(o.phash, s.phash) <= DEF_HAMMING &&
			    thumb_distance(o.thumb, s.thumb) <= DEF_THUMB;
		v[n].name = "resize_half";
		v[n++].ok = resized(&im, im.w / 2, im.h / 2, &s) == 0 && hamming64(o.phash, s.phash) <= DEF_HAMMING &&
			    thumb_distance(o.thumb, s.thumb) <= DEF_THUMB;
		v[n].name = "resize_double";
		v[n++].ok = resized(&im, im.w * 2, im.h * 2, &s) == 0 && hamming64(o.phash, s.phash) <= DEF_HAMMING &&
			    thumb_distance(o.thumb, s.thumb) <= DEF_THUMB;
		for (int i = 0; i < n; i++) {
			char name[96];
			snprintf(name, sizeof name, "copy_within_defaults_%s_%s", k == 2 ? "icon" : "scene", v[i].name);
			if (k == 1)
				strcat(name, "_2");
			CHECK(v[i].ok, name);
		}
		img_rgb_free(&im);
	}

	/* the same flat disc in another colour: alike for a luma hash, apart
	 * for the thumbnail; at another place: apart for the hash */
	img_rgb a = image_new(128, 128), b = image_new(128, 128), m = image_new(128, 128);
	fill_disc(&a, red, 0.5);
	fill_disc(&b, blue, 0.5);
	fill_disc(&m, red, 0.3);
	img_sig sa, sb, sm;
	img_signature(&a, &sa);
	img_signature(&b, &sb);
	img_signature(&m, &sm);
	CHECKF(thumb_distance(sa.thumb, sb.thumb) > DEF_THUMB, "recoloured_disc_beyond_thumb_threshold",
	       "thumb distance %.1f", thumb_distance(sa.thumb, sb.thumb));
	CHECKF(hamming64(sa.phash, sb.phash) <= DEF_HAMMING, "recoloured_disc_alike_in_phash",
	       "hamming %d", hamming64(sa.phash, sb.phash));
	CHECKF(hamming64(sa.phash, sm.phash) > DEF_HAMMING, "moved_disc_beyond_hamming_threshold",
	       "hamming %d", hamming64(sa.phash, sm.phash));
	img_rgb_free(&a);
	img_rgb_free(&b);
	img_rgb_free(&m);
}

int main(void)
{
	img_ctx *c = img_ctx_new();
	test_exact();
	test_dct();
	test_flat();
	test_thumb_known();
	test_distances();
	test_determinism();
	test_copies(c);
	img_ctx_free(c);
	return check_done();
}
