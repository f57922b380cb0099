/* minhash_bench.c: the C side of scripts/bench_minhash.sh.
 *
 *   minhash_bench sketch IN.tar [PERM NGRAM REPS]
 *       loads every KEY.txt caption of the tar into memory, then times
 *       minhash_sketch() over all of them on one thread (best of REPS);
 *       prints "name value" lines: captions, rate (captions/s), seconds,
 *       shingles, words (mean per caption), bytes (mean per caption).
 *   minhash_bench lsh IN.tar [PERM NGRAM THRESHOLD]
 *       one streaming pass, one thread: reads a caption, sketches it, looks
 *       its band keys up in the index (bands x rows from lsh_params()), takes
 *       the first caption seen with any equal band as candidate, keeps the
 *       pair when the sketches' Jaccard estimate >= THRESHOLD (union-find),
 *       then adds its keys.  The index: one open-addressing table of
 *       (band key, first caption) for every band, plus the sketches (for the
 *       verification).  Prints wall time, the time in sketching and in the
 *       index, pairs, clusters, and peak RSS (getrusage) per caption.
 *
 * Built by bench_minhash.sh from filters/minhash.c, filters/text.c and
 * pipeline/util.c (not libmvl.a, so a half-edited module elsewhere in the
 * tree does not stop the benchmark).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "minhash.h"
#include "text.h"
#include "util.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long peak_rss_kb(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

/* A plain ustar reader: calls fn for each member whose name ends in .txt. */
typedef void (*member_fn)(void *ctx, const char *data, size_t n);

static void read_tar(const char *path, member_fn fn, void *ctx)
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
		if (h[156] == '0' || h[156] == 0) {
			if (nl > 4 && !memcmp(h + nl - 4, ".txt", 4))
				fn(ctx, data, n);
		}
	}
	free(data);
	fclose(f);
}

/* ---------------------------------------------------------------------- */
/* sketch */

typedef struct arena {
	char *text;
	size_t len, cap;
	size_t *off; /* caption i is text[off[i], off[i+1]) */
	size_t n, ncap;
} arena;

static void arena_add(void *ctx, const char *data, size_t n)
{
	arena *a = ctx;
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

static int cmd_sketch(const char *path, int perm, int ngram, int reps)
{
	arena a = {0};
	a.off = xcalloc(1024, sizeof *a.off);
	a.ncap = 1024;
	read_tar(path, arena_add, &a);
	minhash *m = minhash_new(perm, ngram, 1);
	text_ctx *t = text_ctx_new();
	uint32_t *sig = xmalloc((size_t)perm * sizeof *sig);
	double best = 1e30;
	size_t shingles = 0, words = 0;
	uint64_t check = 0;
	for (int r = 0; r < reps; r++) {
		shingles = 0;
		check = 0;
		double t0 = now();
		for (size_t i = 0; i < a.n; i++) {
			shingles += minhash_sketch(m, t, a.text + a.off[i], a.off[i + 1] - a.off[i], sig);
			check += sig[0] ^ sig[perm - 1];
		}
		double d = now() - t0;
		if (d < best)
			best = d;
	}
	for (size_t i = 0; i < a.n; i++) {
		const word_span *w;
		words += text_words_icu(t, a.text + a.off[i], a.off[i + 1] - a.off[i], &w);
	}
	printf("captions %zu\n", a.n);
	printf("rate %.0f\n", a.n / best);
	printf("seconds %.4f\n", best);
	printf("shingles %.2f\n", (double)shingles / a.n);
	printf("words %.2f\n", (double)words / a.n);
	printf("bytes %.1f\n", (double)a.len / a.n);
	printf("check %llu\n", (unsigned long long)check);
	free(sig);
	text_ctx_free(t);
	minhash_free(m);
	free(a.text);
	free(a.off);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* lsh */

typedef struct lsh {
	minhash *m;
	text_ctx *t;
	int perm, bands, rows;
	double threshold;
	/* sketches, perm slots each */
	uint32_t *sigs;
	size_t n, ncap;
	/* open addressing: key 0 is empty (a real 0 key is stored as 1) */
	uint64_t *keys;
	uint32_t *ids;
	size_t slots, used;
	uint32_t *parent; /* union-find */
	size_t candidates, verified, empty;
	double t_sketch, t_index;
} lsh;

static size_t slot_of(const lsh *l, uint64_t k)
{
	size_t mask = l->slots - 1, i = (size_t)(k * 0x9E3779B97F4A7C15ull >> 20) & mask;
	while (l->keys[i] && l->keys[i] != k)
		i = (i + 1) & mask;
	return i;
}

static void table_grow(lsh *l)
{
	uint64_t *ok = l->keys;
	uint32_t *oi = l->ids;
	size_t on = l->slots;
	l->slots = on ? on * 2 : 1 << 16;
	l->keys = xcalloc(l->slots, sizeof *l->keys);
	l->ids = xmalloc(l->slots * sizeof *l->ids);
	for (size_t i = 0; i < on; i++)
		if (ok[i]) {
			size_t j = slot_of(l, ok[i]);
			l->keys[j] = ok[i];
			l->ids[j] = oi[i];
		}
	free(ok);
	free(oi);
}

static uint32_t find(uint32_t *p, uint32_t x)
{
	while (p[x] != x) {
		p[x] = p[p[x]];
		x = p[x];
	}
	return x;
}

static void lsh_add(void *ctx, const char *data, size_t n)
{
	lsh *l = ctx;
	if (l->n == l->ncap) {
		l->ncap = l->ncap ? l->ncap * 2 : 1 << 16;
		l->sigs = xrealloc(l->sigs, l->ncap * l->perm * sizeof *l->sigs);
		l->parent = xrealloc(l->parent, l->ncap * sizeof *l->parent);
	}
	uint32_t id = (uint32_t)l->n++;
	uint32_t *sig = l->sigs + (size_t)id * l->perm;
	l->parent[id] = id;
	double t0 = now();
	size_t ns = minhash_sketch(l->m, l->t, data, n, sig);
	double t1 = now();
	l->t_sketch += t1 - t0;
	if (!ns) { /* no words: nothing to compare */
		l->empty++;
		l->t_index += now() - t1;
		return;
	}
	uint32_t seen[64];
	int nseen = 0;
	for (int b = 0; b < l->bands; b++) {
		uint64_t k = lsh_band_key(sig, b, l->rows);
		k += !k;
		if ((l->used + 1) * 10 > l->slots * 7)
			table_grow(l);
		size_t s = slot_of(l, k);
		if (!l->keys[s]) {
			l->keys[s] = k;
			l->ids[s] = id;
			l->used++;
			continue;
		}
		uint32_t j = l->ids[s];
		int dup = 0;
		for (int q = 0; q < nseen; q++)
			dup |= seen[q] == j;
		if (dup || nseen == 64)
			continue;
		seen[nseen++] = j;
		l->candidates++;
		const uint32_t *o = l->sigs + (size_t)j * l->perm;
		if (minhash_jaccard(sig, o, l->perm) >= l->threshold) {
			l->verified++;
			uint32_t a = find(l->parent, id), c = find(l->parent, j);
			if (a != c)
				l->parent[a > c ? a : c] = a > c ? c : a;
		}
	}
	l->t_index += now() - t1;
}

static int cmd_lsh(const char *path, int perm, int ngram, double threshold)
{
	long rss0 = peak_rss_kb();
	lsh l = {0};
	l.perm = perm;
	l.threshold = threshold;
	l.m = minhash_new(perm, ngram, 1);
	l.t = text_ctx_new();
	double tp = now();
	lsh_params(threshold, perm, &l.bands, &l.rows);
	tp = now() - tp;
	if (l.bands > 64)
		die("more than 64 bands");
	double t0 = now();
	read_tar(path, lsh_add, &l);
	double wall = now() - t0;
	size_t clusters = 0, dropped = 0;
	for (size_t i = 0; i < l.n; i++) {
		uint32_t r = find(l.parent, (uint32_t)i);
		if (r == i) {
			/* a root with members is a cluster; counted below */
		} else {
			dropped++;
		}
	}
	/* clusters: roots that have at least one other member */
	char *has = xcalloc(l.n ? l.n : 1, 1);
	for (size_t i = 0; i < l.n; i++) {
		uint32_t r = find(l.parent, (uint32_t)i);
		if (r != i && !has[r]) {
			has[r] = 1;
			clusters++;
		}
	}
	free(has);
	long rss = peak_rss_kb();
	printf("captions %zu\n", l.n);
	printf("bands %d\n", l.bands);
	printf("rows %d\n", l.rows);
	printf("params_seconds %.4f\n", tp);
	printf("wall_seconds %.3f\n", wall);
	printf("sketch_seconds %.3f\n", l.t_sketch);
	printf("index_seconds %.3f\n", l.t_index);
	printf("read_seconds %.3f\n", wall - l.t_sketch - l.t_index);
	printf("empty %zu\n", l.empty);
	printf("candidates %zu\n", l.candidates);
	printf("verified %zu\n", l.verified);
	printf("clusters %zu\n", clusters);
	printf("dropped %zu\n", dropped);
	printf("table_slots %zu\n", l.slots);
	printf("table_used %zu\n", l.used);
	printf("sketch_bytes_per_caption %d\n", perm * 4);
	printf("table_bytes_per_caption %.1f\n", (double)l.slots * 12 / (l.n ? l.n : 1));
	printf("peak_rss_kb %ld\n", rss);
	printf("start_rss_kb %ld\n", rss0);
	printf("rss_bytes_per_caption %.1f\n", (double)(rss - rss0) * 1024 / (l.n ? l.n : 1));
	free(l.sigs);
	free(l.parent);
	free(l.keys);
	free(l.ids);
	text_ctx_free(l.t);
	minhash_free(l.m);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: minhash_bench sketch|lsh IN.tar [PERM NGRAM REPS|THRESHOLD]\n");
		return 2;
	}
	int perm = argc > 3 ? atoi(argv[3]) : 128;
	int ngram = argc > 4 ? atoi(argv[4]) : 5;
	if (!strcmp(argv[1], "sketch"))
		return cmd_sketch(argv[2], perm, ngram, argc > 5 ? atoi(argv[5]) : 3);
	if (!strcmp(argv[1], "lsh"))
		return cmd_lsh(argv[2], perm, ngram, argc > 5 ? atof(argv[5]) : 0.8);
	fprintf(stderr, "minhash_bench: unknown command '%s'\n", argv[1]);
	return 2;
}
