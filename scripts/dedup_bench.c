/* dedup_bench.c: the C side of scripts/bench_dedup.sh (issue 4, Benchmark).
 * Built against build/libmvl.a.  Every command prints "name value" lines.
 *
 *   dedup_bench phash SECONDS THREADS PHOTO.jpg...
 *       pHash signatures/s on one thread and on THREADS (OpenMP, each thread
 *       its own img_ctx), each figure the best of 3 timed runs, all of them
 *       together taking about SECONDS:
 *       thumb32, thumb64  img_signature() on 2048 already-decoded RGB
 *                         buffers (32x32, 64x64: crops of the photos)
 *       photo             img_decode(want 32x32: JPEG DCT-domain downscale)
 *                         + img_signature() on the photo files' bytes
 *       photo_full        the same without the size hint (full decode; one
 *                         thread, as j256_full)
 *       j256              decode(want 32x32) + signature of 1024 256x256
 *                         JPEGs (q90 crops of the photos, made here)
 *   dedup_bench index N BANDS MAX_HAMMING MAX_THUMB THREADS DEADLINE SEED
 *       one streaming pass of near-image dedup over N synthetic images:
 *       each item is queried against the index (img_index_query) and added
 *       when it matched nothing, as `mvl dedup` does.  Items (all a
 *       function of SEED and the item number, nothing stored):
 *         original   random 64-bit hash, random 48-byte thumbnail
 *         near plant 1% of items (from item 1000 on): a copy of an earlier
 *                    original with 0..3 distinct bits flipped and every
 *                    thumbnail byte moved by -5..+5 (thumb_distance <= 5)
 *         far plant  0.5%: the same with 4..10 bits flipped
 *       THREADS 1: the plain sequential loop.  THREADS > 1: batches of
 *       BATCH items are queried in parallel against the (read-only) index of
 *       everything kept before the batch, then, in order on one thread, the
 *       items that matched nothing there are checked against a small index
 *       of the batch's own kept items and added to both; the kept set is
 *       exactly the sequential loop's.
 *       Checks: every near plant must match (pigeonhole: distance <=
 *       BANDS-1), far plants found per distance, originals that matched
 *       (false matches).  DEADLINE (s): the pass stops there, reports how far
 *       it got and extrapolates (time fitted as a n + b n^2 over checkpoints,
 *       the query cost growing with the index).
 *   dedup_bench build N BANDS MAX_THUMB THREADS SEED QUERIES
 *       the index at full size without the streaming queries: adds the N
 *       items (add time, img_index_bytes() and RSS growth per item), then
 *       times QUERIES queries against it on one thread and on THREADS, at
 *       max_hamming 3, 8 and 10: half copies of indexed originals with
 *       0..10 bits flipped (found per distance), half fresh random images
 *       (false matches); a streaming pass's time is estimated from these
 *       (the chains grow linearly, so a pass costs about N queries at half
 *       the size).  Then an hset128 of N 128-bit hashes (1% repeats):
 *       time, hset128_bytes() and RSS growth per item.
 *   dedup_bench minhash IN.tar PERM NGRAM JACCARD REPS THREADS
 *       loads every KEY.txt caption of the tar into memory; sketch rate on
 *       one thread and on THREADS (best of REPS); then one streaming pass:
 *       sketch, cap_index_query() (threshold JACCARD; bands x rows from
 *       lsh_params(JACCARD - 0.1), as `mvl dedup` tunes them), add when not
 *       matched; wall time, index time, peak RSS and bytes per caption.
 */
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "dedup_index.h"
#include "image.h"
#include "minhash.h"
#include "phash.h"
#include "text.h"
#include "util.h"

static long peak_rss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* resident set now, bytes */
static double rss_now(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, res = 0;
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &res) != 2)
			res = 0;
		fclose(f);
	}
	return (double)res * (double)sysconf(_SC_PAGESIZE);
}

static inline uint64_t mix64(uint64_t x)
{
	x += 0x9E3779B97F4A7C15ull;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
	return x ^ (x >> 31);
}

/* ====================================================================== */
/* phash */

typedef struct jfile {
	uint8_t *data;
	size_t n;
} jfile;

static void sig_or_die(const img_rgb *im, img_sig *s)
{
	if (img_signature(im, s) != 0)
		die("img_signature failed");
}

/* decode (with a hint or not) + signature of every file; @return a checksum */
static uint64_t decode_sigs(img_ctx *c, const jfile *f, int nf, int want)
{
	img_decode_opts o;
	img_decode_opts_default(&o);
	o.want_w = o.want_h = want;
	uint64_t check = 0;
	for (int i = 0; i < nf; i++) {
		img_rgb im = {0};
		mvl_err err;
		if (img_decode(c, f[i].data, f[i].n, &o, &im, NULL, &err) != 0)
			die("decode: %s", err.msg);
		img_sig s;
		sig_or_die(&im, &s);
		check += s.phash;
		img_rgb_free(&im);
	}
	return check;
}

typedef struct rate {
	double r1, r2; /* items/s on one thread, on `threads` */
	uint64_t check;
	int w, h;      /* decoded size of the first item (decode kinds) */
} rate;

/* Times fn over the set: runs of about `slice` seconds, best of 3, on one
 * thread, then on `threads` (each thread its own img_ctx, the items split). */
enum { K_THUMB, K_DECODE };

static double run_once(int kind, int threads, const img_rgb *th, int nth, const jfile *f, int nf,
		       int want, int loops, uint64_t *check)
{
	double t0 = now_sec();
	uint64_t ck = 0;
#pragma omp parallel num_threads(threads) reduction(+ : ck)
	{
		img_ctx *c = kind == K_DECODE ? img_ctx_new() : NULL;
		int nitems = kind == K_THUMB ? nth : nf;
		for (int l = 0; l < loops; l++) {
#pragma omp for schedule(dynamic, 1) nowait
			for (int i = 0; i < nitems; i++) {
				if (kind == K_THUMB) {
					img_sig s;
					sig_or_die(&th[i], &s);
					ck += s.phash;
				} else {
					ck += decode_sigs(c, &f[i], 1, want);
				}
			}
		}
		if (c)
			img_ctx_free(c);
	}
	*check = ck;
	return now_sec() - t0;
}

static rate time_set(int kind, int threads, double slice, const img_rgb *th, int nth, const jfile *f,
		     int nf, int want)
{
	rate r = {0};
	int nitems = kind == K_THUMB ? nth : nf;
	uint64_t ck;
	/* calibrate: one loop */
	double t1 = run_once(kind, 1, th, nth, f, nf, want, 1, &ck);
	int loops = (int)(slice / (t1 > 1e-6 ? t1 : 1e-6));
	if (loops < 1)
		loops = 1;
	double best1 = 1e30, best2 = 1e30;
	for (int rep = 0; rep < 3; rep++) {
		double d = run_once(kind, 1, th, nth, f, nf, want, loops, &ck);
		best1 = d < best1 ? d : best1;
	}
	r.check = ck / (uint64_t)loops;
	if (threads > 1)
		for (int rep = 0; rep < 3; rep++) {
			double d = run_once(kind, threads, th, nth, f, nf, want, loops, &ck);
			best2 = d < best2 ? d : best2;
		}
	r.r1 = (double)nitems * loops / best1;
	r.r2 = threads > 1 ? (double)nitems * loops / best2 : r.r1;
	if (kind == K_DECODE) {
		img_ctx *c = img_ctx_new();
		img_decode_opts o;
		img_decode_opts_default(&o);
		o.want_w = o.want_h = want;
		img_rgb im = {0};
		mvl_err err;
		if (img_decode(c, f[0].data, f[0].n, &o, &im, NULL, &err) == 0) {
			r.w = im.w;
			r.h = im.h;
			img_rgb_free(&im);
		}
		img_ctx_free(c);
	}
	return r;
}

static void crop(const img_rgb *src, int x, int y, int w, int h, img_rgb *out)
{
	out->w = w;
	out->h = h;
	out->px = xmalloc((size_t)w * h * 3);
	for (int r = 0; r < h; r++)
		memcpy(out->px + (size_t)r * w * 3, src->px + ((size_t)(y + r) * src->w + x) * 3, (size_t)w * 3);
}

static void print_rate(const char *name, rate r)
{
	printf("%s_rate1 %.0f\n", name, r.r1);
	printf("%s_rate2 %.0f\n", name, r.r2);
	if (r.w)
		printf("%s_decoded %dx%d\n", name, r.w, r.h);
}

static int cmd_phash(double seconds, int threads, int nfiles, char **files)
{
	if (nfiles < 1)
		die("no photos");
	jfile *f = xcalloc((size_t)nfiles, sizeof *f);
	img_rgb *full = xcalloc((size_t)nfiles, sizeof *full);
	img_ctx *c = img_ctx_new();
	double bytes = 0, pixels = 0;
	for (int i = 0; i < nfiles; i++) {
		buf b = {0};
		mvl_err err;
		if (read_file(files[i], 1u << 30, &b, &err) != 0)
			die("%s: %s", files[i], err.msg);
		f[i].data = b.data;
		f[i].n = b.len;
		bytes += (double)b.len;
		img_decode_opts o;
		img_decode_opts_default(&o);
		if (img_decode(c, f[i].data, f[i].n, &o, &full[i], NULL, &err) != 0)
			die("%s: %s", files[i], err.msg);
		pixels += (double)full[i].w * full[i].h;
	}
	printf("photos %d\n", nfiles);
	printf("photo_mean_kb %.0f\n", bytes / nfiles / 1024);
	printf("photo_mean_mpix %.2f\n", pixels / nfiles / 1e6);

	/* decoded thumbnails: crops of the photos */
	enum { NTH = 2048, NJ = 1024 };
	img_rgb *t32 = xcalloc(NTH, sizeof *t32), *t64 = xcalloc(NTH, sizeof *t64);
	uint64_t r = 7;
	for (int i = 0; i < NTH; i++) {
		const img_rgb *s = &full[i % nfiles];
		r = mix64(r);
		int x = (int)(r % (uint64_t)(s->w - 64)), y = (int)((r >> 32) % (uint64_t)(s->h - 64));
		crop(s, x, y, 64, 64, &t64[i]);
		crop(s, x, y, 32, 32, &t32[i]);
	}
	/* 256x256 JPEGs, q90 */
	jfile *j256 = xcalloc(NJ, sizeof *j256);
	double jbytes = 0;
	for (int i = 0; i < NJ; i++) {
		const img_rgb *s = &full[i % nfiles];
		r = mix64(r);
		int x = (int)(r % (uint64_t)(s->w - 256)), y = (int)((r >> 32) % (uint64_t)(s->h - 256));
		img_rgb cr;
		crop(s, x, y, 256, 256, &cr);
		buf out = {0};
		mvl_err err;
		if (img_encode(c, &cr, IMG_JPEG, 90, &out, &err) != 0)
			die("encode: %s", err.msg);
		j256[i].data = out.data;
		j256[i].n = out.len;
		jbytes += (double)out.len;
		img_rgb_free(&cr);
	}
	printf("j256_mean_kb %.1f\n", jbytes / NJ / 1024);
	double slice = seconds / 4 / 3;
	print_rate("thumb32", time_set(K_THUMB, threads, slice / 2, t32, NTH, NULL, 0, 0));
	print_rate("thumb64", time_set(K_THUMB, threads, slice / 2, t64, NTH, NULL, 0, 0));
	print_rate("photo", time_set(K_DECODE, threads, slice, NULL, 0, f, nfiles, 32));
	print_rate("photo_full", time_set(K_DECODE, 1, slice / 2, NULL, 0, f, nfiles, 0));
	print_rate("j256", time_set(K_DECODE, threads, slice, NULL, 0, j256, NJ, 32));
	print_rate("j256_full", time_set(K_DECODE, 1, slice / 2, NULL, 0, j256, NJ, 0));
	/* the hinted decode must give the same hashes as decoding at full size
	 * and reducing?  Not required (different pixels); report how far apart */
	{
		img_decode_opts o, of;
		img_decode_opts_default(&o);
		img_decode_opts_default(&of);
		o.want_w = o.want_h = 32;
		int maxd = 0, sum = 0;
		for (int i = 0; i < nfiles; i++) {
			img_rgb a = {0}, b = {0};
			mvl_err err;
			img_sig sa, sb;
			if (img_decode(c, f[i].data, f[i].n, &o, &a, NULL, &err) ||
			    img_decode(c, f[i].data, f[i].n, &of, &b, NULL, &err))
				die("decode: %s", err.msg);
			sig_or_die(&a, &sa);
			sig_or_die(&b, &sb);
			int d = hamming64(sa.phash, sb.phash);
			maxd = d > maxd ? d : maxd;
			sum += d;
			img_rgb_free(&a);
			img_rgb_free(&b);
		}
		printf("scaled_vs_full_hamming_max %d\n", maxd);
		printf("scaled_vs_full_hamming_mean %.2f\n", (double)sum / nfiles);
	}
	img_ctx_free(c);
	return 0;
}

/* ====================================================================== */
/* index */

enum { ORIGINAL = 0, NEAR = 1, FAR = 2 };

typedef struct gen {
	uint64_t seed;
} gen;

static inline int kind_of(const gen *g, uint64_t i)
{
	if (i < 1000)
		return ORIGINAL;
	uint64_t r = mix64(g->seed ^ (i * 0xD1B54A32D192ED03ull)) % 1000;
	return r < 10 ? NEAR : r < 15 ? FAR : ORIGINAL;
}

static inline void original(const gen *g, uint64_t i, uint64_t *h, uint8_t th[THUMB_BYTES])
{
	uint64_t s = mix64(g->seed * 0x9E3779B97F4A7C15ull + i);
	*h = mix64(s ^ 0xA5A5A5A5A5A5A5A5ull);
	for (int k = 0; k < THUMB_BYTES / 8; k++) {
		uint64_t v = mix64(s + (uint64_t)k + 1);
		memcpy(th + 8 * k, &v, 8);
	}
}

/* item i: its hash and thumbnail; for a plant, *src = the original it
 * copies and *dist = the bits flipped. */
static inline int item(const gen *g, uint64_t i, uint64_t *h, uint8_t th[THUMB_BYTES], uint64_t *src,
		       int *dist)
{
	int k = kind_of(g, i);
	if (k == ORIGINAL) {
		original(g, i, h, th);
		*src = i;
		*dist = 0;
		return k;
	}
	uint64_t r = mix64(g->seed ^ (i * 0x9E3779B97F4A7C15ull) ^ 0x5555);
	uint64_t j = r % i;
	while (kind_of(g, j) != ORIGINAL)
		j--;
	original(g, j, h, th);
	int d = k == NEAR ? (int)((r >> 40) % 4) : 4 + (int)((r >> 40) % 7);
	uint64_t mask = 0, s = r;
	while (__builtin_popcountll(mask) < d) {
		s = mix64(s);
		mask |= 1ull << (s & 63);
	}
	*h ^= mask;
	for (int b = 0; b < THUMB_BYTES; b++) {
		if (b % 8 == 0)
			s = mix64(s);
		int v = th[b] + (int)((s >> (8 * (b % 8))) & 0xFF) % 11 - 5;
		th[b] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
	}
	*src = j;
	*dist = d;
	return k;
}

typedef struct tally {
	uint64_t near, near_found, near_found_src;
	uint64_t far[11], far_found[11];
	uint64_t false_match; /* originals that matched */
	uint64_t kept, dropped;
	uint64_t hist[65]; /* distance of the match found, all matches */
} tally;

static void account(tally *t, int k, uint64_t src, int pd, int64_t v, int d)
{
	if (v >= 0) {
		t->dropped++;
		t->hist[d]++;
	} else
		t->kept++;
	if (k == NEAR) {
		t->near++;
		t->near_found += v >= 0;
		t->near_found_src += v >= 0 && (uint64_t)v == src;
	} else if (k == FAR) {
		t->far[pd]++;
		t->far_found[pd] += v >= 0;
	} else if (v >= 0)
		t->false_match++;
}

enum { CHECKPOINTS = 20, BATCH = 8192 };

typedef struct bitem {
	uint64_t h, src;
	uint8_t th[THUMB_BYTES];
	int kind, pd, d;
	int64_t v;
} bitem;

static int cmd_index(uint64_t n, int bands, int max_ham, double max_thumb, int threads, double deadline,
		     uint64_t seed)
{
	gen g = {seed};
	/* generation alone, on 1M items (part of every figure below) */
	double tg = now_sec();
	uint64_t ck = 0, ngen = n < 1000000 ? n : 1000000;
	for (uint64_t i = 0; i < ngen; i++) {
		uint64_t h, src;
		uint8_t th[THUMB_BYTES];
		int pd;
		item(&g, i, &h, th, &src, &pd);
		ck += h + th[7];
	}
	tg = now_sec() - tg;
	printf("gen_seconds_per_million %.3f\n", tg * 1e6 / (double)ngen);
	printf("gen_check %llu\n", (unsigned long long)ck);

	double rss0 = rss_now();
	long peak0 = peak_rss_kb();
	img_index *x = img_index_new(bands);
	if (!x)
		die("img_index_new(%d) failed", bands);
	tally t = {0};
	double cp_n[CHECKPOINTS + 1], cp_t[CHECKPOINTS + 1];
	int ncp = 0;
	uint64_t step = n / CHECKPOINTS ? n / CHECKPOINTS : 1;
	uint64_t next_cp = step, done = 0;
	int stopped = 0;
	double t0 = now_sec();
	if (threads <= 1) {
		for (uint64_t i = 0; i < n; i++) {
			uint64_t h, src;
			uint8_t th[THUMB_BYTES];
			int pd, d = 0;
			double td = 0;
			int k = item(&g, i, &h, th, &src, &pd);
			int64_t v = img_index_query(x, h, th, max_ham, max_thumb, &d, &td);
			account(&t, k, src, pd, v, d);
			if (v < 0)
				img_index_add(x, h, th, (uint32_t)i);
			if (i + 1 == next_cp && ncp < CHECKPOINTS + 1) {
				double el = now_sec() - t0;
				cp_n[ncp] = (double)(i + 1);
				cp_t[ncp++] = el;
				next_cp += step;
				if (el > deadline && i + 1 < n) {
					stopped = 1;
					done = i + 1;
					break;
				}
			}
		}
	} else {
		bitem *b = xmalloc(BATCH * sizeof *b);
		for (uint64_t s = 0; s < n; s += BATCH) {
			int m = (int)(n - s < BATCH ? n - s : BATCH);
#pragma omp parallel for num_threads(threads) schedule(dynamic, 64)
			for (int q = 0; q < m; q++) {
				bitem *e = &b[q];
				double td;
				e->kind = item(&g, s + (uint64_t)q, &e->h, e->th, &e->src, &e->pd);
				e->d = 0;
				e->v = img_index_query(x, e->h, e->th, max_ham, max_thumb, &e->d, &td);
			}
			img_index *bx = img_index_new(bands);
			for (int q = 0; q < m; q++) {
				bitem *e = &b[q];
				if (e->v < 0) {
					double td;
					e->v = img_index_query(bx, e->h, e->th, max_ham, max_thumb, &e->d, &td);
					if (e->v < 0) {
						img_index_add(x, e->h, e->th, (uint32_t)(s + (uint64_t)q));
						img_index_add(bx, e->h, e->th, (uint32_t)(s + (uint64_t)q));
					}
				}
				account(&t, e->kind, e->src, e->pd, e->v, e->d);
			}
			img_index_free(bx);
			uint64_t end = s + (uint64_t)m;
			if (end >= next_cp && ncp < CHECKPOINTS + 1) {
				double el = now_sec() - t0;
				cp_n[ncp] = (double)end;
				cp_t[ncp++] = el;
				while (next_cp <= end)
					next_cp += step;
				if (el > deadline && end < n) {
					stopped = 1;
					done = end;
					break;
				}
			}
		}
		free(b);
	}
	double wall = now_sec() - t0;
	if (!stopped)
		done = n;
	double rss1 = rss_now();
	long peak1 = peak_rss_kb();
	size_t ib = img_index_bytes(x);
	uint32_t isz = img_index_size(x);

	printf("items %llu\n", (unsigned long long)n);
	printf("done %llu\n", (unsigned long long)done);
	printf("stopped %d\n", stopped);
	printf("threads %d\n", threads);
	printf("bands %d\n", bands);
	printf("max_hamming %d\n", max_ham);
	printf("max_thumb %g\n", max_thumb);
	printf("wall_seconds %.2f\n", wall);
	printf("rate %.0f\n", (double)done / wall);
	/* fit wall = a n + b n^2 (least squares through the origin) */
	if (ncp >= 2) {
		double s11 = 0, s12 = 0, s22 = 0, y1 = 0, y2 = 0;
		for (int i = 0; i < ncp; i++) {
			double u = cp_n[i], v = u * u;
			s11 += u * u;
			s12 += u * v;
			s22 += v * v;
			y1 += u * cp_t[i];
			y2 += v * cp_t[i];
		}
		double det = s11 * s22 - s12 * s12;
		double a = (y1 * s22 - y2 * s12) / det, bq = (s11 * y2 - s12 * y1) / det;
		double N = (double)n;
		printf("fit_a %.6g\n", a);
		printf("fit_b %.6g\n", bq);
		printf("extrapolated_seconds %.1f\n", a * N + bq * N * N);
	}
	printf("kept %llu\n", (unsigned long long)t.kept);
	printf("dropped %llu\n", (unsigned long long)t.dropped);
	printf("index_entries %u\n", isz);
	printf("near_plants %llu\n", (unsigned long long)t.near);
	printf("near_found %llu\n", (unsigned long long)t.near_found);
	printf("near_found_src %llu\n", (unsigned long long)t.near_found_src);
	uint64_t fa = 0, ff = 0;
	for (int d = 4; d <= 10; d++) {
		printf("far_%d %llu %llu\n", d, (unsigned long long)t.far[d], (unsigned long long)t.far_found[d]);
		fa += t.far[d];
		ff += t.far_found[d];
	}
	printf("far_plants %llu\n", (unsigned long long)fa);
	printf("far_found %llu\n", (unsigned long long)ff);
	printf("false_matches %llu\n", (unsigned long long)t.false_match);
	printf("peak_rss_kb %ld\n", peak1);
	printf("start_rss_kb %ld\n", peak0);
	printf("rss_growth_bytes_per_item %.1f\n", (rss1 - rss0) / (double)done);
	printf("index_bytes %zu\n", ib);
	printf("index_bytes_per_item %.1f\n", (double)ib / (double)done);
	printf("index_bytes_per_entry %.1f\n", (double)ib / (double)(isz ? isz : 1));
	img_index_free(x);

	return 0;
}


/* ---------------------------------------------------------------------- */
/* build: memory at full size, query cost at full size */

static int cmd_build(uint64_t n, int bands, double max_thumb, int threads, uint64_t seed, int nq)
{
	gen g = {seed};
	double rss0 = rss_now();
	img_index *x = img_index_new(bands);
	if (!x)
		die("img_index_new(%d) failed", bands);
	double t0 = now_sec();
	for (uint64_t i = 0; i < n; i++) {
		uint64_t h, src;
		uint8_t th[THUMB_BYTES];
		int pd;
		item(&g, i, &h, th, &src, &pd);
		img_index_add(x, h, th, (uint32_t)i);
	}
	double tadd = now_sec() - t0;
	double rss1 = rss_now();
	printf("items %llu\n", (unsigned long long)n);
	printf("add_seconds %.2f\n", tadd);
	printf("index_bytes_per_item %.1f\n", (double)img_index_bytes(x) / (double)n);
	printf("rss_growth_bytes_per_item %.1f\n", (rss1 - rss0) / (double)n);
	printf("peak_rss_kb_index %ld\n", peak_rss_kb());

	/* queries against the full index: nq/2 copies of random indexed
	 * originals with 0..10 bits flipped (and thumbnail jitter), nq/2 fresh
	 * random images (seed + 1, never indexed) */
	gen fresh = {seed + 1};
	bitem *q = xmalloc((size_t)nq * sizeof *q);
	for (int k = 0; k < nq; k++) {
		bitem *e = &q[k];
		if (k % 2 == 0) {
			uint64_t r = mix64(seed ^ 0xC0FFEEull ^ ((uint64_t)k << 20));
			uint64_t j = r % n;
			while (kind_of(&g, j) != ORIGINAL)
				j--;
			original(&g, j, &e->h, e->th);
			int d = (k / 2) % 11;
			uint64_t mask = 0, s = r;
			while (__builtin_popcountll(mask) < d) {
				s = mix64(s);
				mask |= 1ull << (s & 63);
			}
			e->h ^= mask;
			for (int b = 0; b < THUMB_BYTES; b++) {
				if (b % 8 == 0)
					s = mix64(s);
				int v = e->th[b] + (int)((s >> (8 * (b % 8))) & 0xFF) % 11 - 5;
				e->th[b] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
			e->kind = NEAR;
			e->pd = d;
			e->src = j;
		} else {
			original(&fresh, (uint64_t)k, &e->h, e->th);
			e->kind = ORIGINAL;
			e->pd = 0;
		}
	}
	static const int hams[] = {3, 8, 10};
	for (int hi = 0; hi < 3; hi++) {
		int ham = hams[hi];
		double best[2] = {1e30, 1e30};
		for (int tt = 0; tt < 2; tt++) {
			int nt = tt ? threads : 1;
			if (tt && threads <= 1)
				break;
			double tq = now_sec();
#pragma omp parallel for num_threads(nt) schedule(dynamic, 64)
			for (int k = 0; k < nq; k++) {
				bitem *e = &q[k];
				double td;
				e->d = 0;
				e->v = img_index_query(x, e->h, e->th, ham, max_thumb, &e->d, &td);
			}
			best[tt] = now_sec() - tq;
		}
		uint64_t per[11] = {0}, found[11] = {0}, fm = 0;
		for (int k = 0; k < nq; k++) {
			bitem *e = &q[k];
			if (e->kind == NEAR) {
				per[e->pd]++;
				found[e->pd] += e->v >= 0;
			} else
				fm += e->v >= 0;
		}
		printf("q%d_rate1 %.0f\n", ham, nq / best[0]);
		printf("q%d_rate2 %.0f\n", ham, threads > 1 ? nq / best[1] : nq / best[0]);
		printf("q%d_found", ham);
		for (int d = 0; d <= 10; d++)
			printf(" %llu/%llu", (unsigned long long)found[d], (unsigned long long)per[d]);
		printf("\n");
		printf("q%d_false %llu/%d\n", ham, (unsigned long long)fm, nq / 2);
		/* a streaming pass queries an index growing from 0 to n: about
		 * half the full-size cost per query on average (chains grow
		 * linearly with the index) */
		printf("q%d_stream_estimate1 %.1f\n", ham, tadd + (double)n * (best[0] / nq) / 2);
		printf("q%d_stream_estimate2 %.1f\n", ham,
		       tadd + (double)n * ((threads > 1 ? best[1] : best[0]) / nq) / 2);
	}
	free(q);
	img_index_free(x);

	/* an exact-hash set (128-bit) of as many items */
	double r0 = rss_now();
	double te = now_sec();
	hset128 *hs = hset128_new();
	uint64_t hits = 0;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t j = i;
		if (kind_of(&g, i) == NEAR) { /* the same bytes as an earlier original */
			j = mix64(i) % i;
			while (kind_of(&g, j) == NEAR)
				j--;
		}
		uint64_t lo = mix64(seed * 31 + j), hi = mix64(lo ^ 0x1234567);
		if (hset128_find(hs, lo, hi) >= 0)
			hits++;
		else
			hset128_put(hs, lo, hi, (uint32_t)i);
	}
	te = now_sec() - te;
	printf("exact_seconds %.2f\n", te);
	printf("exact_hits %llu\n", (unsigned long long)hits);
	printf("exact_bytes_per_item %.1f\n", (double)hset128_bytes(hs) / (double)n);
	printf("exact_rss_growth_bytes_per_item %.1f\n", (rss_now() - r0) / (double)n);
	hset128_free(hs);
	printf("peak_rss_kb %ld\n", peak_rss_kb());
	return 0;
}

/* ====================================================================== */
/* minhash */

typedef struct arena {
	char *text;
	size_t len, cap;
	size_t *off; /* caption i is text[off[i], off[i+1]) */
	size_t n, ncap;
} arena;

static void arena_add(arena *a, const char *data, size_t n)
{
	if (a->len + n > a->cap) {
		a->cap = (a->len + n) * 2;
		a->text = xrealloc(a->text, a->cap);
	}
	memcpy(a->text + a->len, data, n);
	a->len += n;
	if (a->n + 2 > a->ncap) {
		a->ncap = a->ncap ? a->ncap * 2 : 1024;
		a->off = xrealloc(a->off, a->ncap * sizeof *a->off);
	}
	a->off[a->n + 1] = a->len;
	a->n++;
}

/* A plain ustar reader: every member whose name ends in .txt. */
static void read_tar(const char *path, arena *a)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		die("cannot open '%s'", path);
	unsigned char h[512];
	char *data = NULL;
	size_t cap = 0;
	while (fread(h, 1, 512, f) == 512) {
		if (!h[0])
			break;
		char sz[13];
		memcpy(sz, h + 124, 12);
		sz[12] = 0;
		size_t n = strtoull(sz, NULL, 8);
		size_t padded = (n + 511) / 512 * 512;
		if (padded > cap) {
			cap = padded;
			data = xrealloc(data, cap);
		}
		if (padded && fread(data, 1, padded, f) != padded)
			die("'%s': truncated", path);
		size_t nl = strnlen((char *)h, 100);
		if ((h[156] == '0' || h[156] == 0) && nl > 4 && !memcmp(h + nl - 4, ".txt", 4))
			arena_add(a, data, n);
	}
	free(data);
	fclose(f);
}

static double sketch_all(const minhash *m, const arena *a, int threads, uint64_t *check)
{
	int perm = minhash_num_perm(m);
	uint64_t ck = 0;
	double t0 = now_sec();
#pragma omp parallel num_threads(threads) reduction(+ : ck)
	{
		text_ctx *t = text_ctx_new();
		uint32_t *sig = xmalloc((size_t)perm * sizeof *sig);
#pragma omp for schedule(dynamic, 256)
		for (size_t i = 0; i < a->n; i++) {
			minhash_sketch(m, t, a->text + a->off[i], a->off[i + 1] - a->off[i], sig);
			ck += sig[0] ^ sig[perm - 1];
		}
		free(sig);
		text_ctx_free(t);
	}
	*check = ck;
	return now_sec() - t0;
}

static int cmd_minhash(const char *path, int perm, int ngram, double jaccard, int reps, int threads)
{
	arena a = {0};
	a.ncap = 1024;
	a.off = xcalloc(a.ncap, sizeof *a.off);
	read_tar(path, &a);
	minhash *m = minhash_new(perm, ngram, 1);
	if (!m)
		die("minhash_new failed");
	uint64_t c1 = 0, c2 = 0;
	double b1 = 1e30, b2 = 1e30;
	for (int r = 0; r < reps; r++) {
		double d = sketch_all(m, &a, 1, &c1);
		b1 = d < b1 ? d : b1;
	}
	for (int r = 0; r < reps && threads > 1; r++) {
		double d = sketch_all(m, &a, threads, &c2);
		b2 = d < b2 ? d : b2;
	}
	if (threads > 1 && c1 != c2)
		die("sketches differ between 1 and %d threads", threads);
	printf("captions %zu\n", a.n);
	printf("caption_bytes %.1f\n", (double)a.len / (double)a.n);
	printf("sketch_rate1 %.0f\n", (double)a.n / b1);
	printf("sketch_rate2 %.0f\n", threads > 1 ? (double)a.n / b2 : (double)a.n / b1);

	/* streaming pass through cap_index */
	int bands, rows;
	double tune = jaccard > 0.2 ? jaccard - 0.1 : jaccard;
	lsh_params(tune, perm, &bands, &rows);
	double rss0 = rss_now();
	cap_index *x = cap_index_new(perm, bands, rows);
	text_ctx *t = text_ctx_new();
	uint32_t *sig = xmalloc((size_t)perm * sizeof *sig);
	size_t dropped = 0, empty = 0;
	double tidx = 0, t0 = now_sec();
	for (size_t i = 0; i < a.n; i++) {
		size_t ns = minhash_sketch(m, t, a.text + a.off[i], a.off[i + 1] - a.off[i], sig);
		double t1 = now_sec();
		if (!ns) {
			empty++;
			continue;
		}
		double sim;
		int64_t v = cap_index_query(x, sig, jaccard, &sim);
		if (v >= 0)
			dropped++;
		else
			cap_index_add(x, sig, (uint32_t)i);
		tidx += now_sec() - t1;
	}
	double wall = now_sec() - t0;
	double rss1 = rss_now();
	printf("lsh_bands %d\n", bands);
	printf("lsh_rows %d\n", rows);
	printf("lsh_tuned_for %.2f\n", tune);
	printf("pass_seconds %.2f\n", wall);
	printf("index_seconds %.2f\n", tidx);
	printf("dropped %zu\n", dropped);
	printf("empty %zu\n", empty);
	printf("index_bytes_per_caption %.1f\n", (double)cap_index_bytes(x) / (double)a.n);
	printf("rss_growth_bytes_per_caption %.1f\n", (rss1 - rss0) / (double)a.n);
	printf("peak_rss_kb %ld\n", peak_rss_kb());
	printf("captions_in_memory_bytes_per_caption %.1f\n",
	       (double)(a.len + (a.n + 1) * sizeof(size_t)) / (double)a.n);
	free(sig);
	text_ctx_free(t);
	cap_index_free(x);
	minhash_free(m);
	free(a.text);
	free(a.off);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "phash"))
		return cmd_phash(atof(argv[2]), atoi(argv[3]), argc - 4, argv + 4);
	if (argc >= 9 && !strcmp(argv[1], "index"))
		return cmd_index(strtoull(argv[2], NULL, 10), atoi(argv[3]), atoi(argv[4]), atof(argv[5]),
				 atoi(argv[6]), atof(argv[7]), strtoull(argv[8], NULL, 10));
	if (argc >= 8 && !strcmp(argv[1], "build"))
		return cmd_build(strtoull(argv[2], NULL, 10), atoi(argv[3]), atof(argv[4]), atoi(argv[5]),
				 strtoull(argv[6], NULL, 10), atoi(argv[7]));
	if (argc >= 8 && !strcmp(argv[1], "minhash"))
		return cmd_minhash(argv[2], atoi(argv[3]), atoi(argv[4]), atof(argv[5]), atoi(argv[6]),
				   atoi(argv[7]));
	fprintf(stderr, "usage: dedup_bench phash SECONDS THREADS PHOTO...\n"
			"       dedup_bench index N BANDS MAX_HAMMING MAX_THUMB THREADS DEADLINE SEED\n"
			"       dedup_bench build N BANDS MAX_THUMB THREADS SEED QUERIES\n"
			"       dedup_bench minhash IN.tar PERM NGRAM JACCARD REPS THREADS\n");
	return 2;
}
