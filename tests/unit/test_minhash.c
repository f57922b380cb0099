/* test_minhash.c: MinHash sketches and LSH banding (filters/minhash.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "check.h"
#include "minhash.h"
#include "text.h"

#define P61 ((uint64_t)0x1FFFFFFFFFFFFFFFull)

static text_ctx *T;

static size_t sk(const minhash *m, const char *s, uint32_t *sig)
{
	return minhash_sketch(m, T, s, strlen(s), sig);
}

static int all_ff(const uint32_t *sig, int n)
{
	for (int i = 0; i < n; i++)
		if (sig[i] != 0xFFFFFFFFu)
			return 0;
	return 1;
}

/* ---------------------------------------------------------------------- */
/* the definition, written out the slow way (independent of minhash.c's
 * split multiplies and fast word path): ASCII text only */

static uint64_t ref_splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static size_t ref_sketch(const char *text, int num_perm, int ngram, uint64_t seed, uint32_t *sig)
{
	uint64_t a[1024], b[1024], st = seed;
	for (int i = 0; i < num_perm; i++) {
		a[i] = 1 + ref_splitmix(&st) % (P61 - 1);
		b[i] = ref_splitmix(&st) % P61;
	}
	size_t n = strlen(text);
	char *low = calloc(n + 1, 1);
	for (size_t i = 0; i < n; i++)
		low[i] = (char)((text[i] >= 'A' && text[i] <= 'Z') ? text[i] + 32 : text[i]);
	const word_span *w;
	size_t nw = text_words_icu(T, low, n, &w);
	uint64_t mins[1024];
	for (int i = 0; i < num_perm; i++)
		mins[i] = UINT64_MAX;
	size_t g = (size_t)ngram, ns = nw >= g ? nw - g + 1 : (nw ? 1 : 0);
	if (g > nw)
		g = nw;
	for (size_t k = 0; k < ns; k++) {
		char sh[4096];
		size_t o = 0;
		for (size_t j = k; j < k + g; j++) {
			if (j > k)
				sh[o++] = ' ';
			memcpy(sh + o, low + w[j].off, w[j].len);
			o += w[j].len;
		}
		uint64_t x = XXH3_64bits(sh, o) % P61;
		for (int i = 0; i < num_perm; i++) {
			uint64_t h = (uint64_t)(((unsigned __int128)a[i] * x + b[i]) % P61);
			if (h < mins[i])
				mins[i] = h;
		}
	}
	for (int i = 0; i < num_perm; i++)
		sig[i] = ns ? (uint32_t)mins[i] : 0xFFFFFFFFu;
	free(low);
	return ns;
}

/* ---------------------------------------------------------------------- */

static void test_new(void)
{
	CHECK(!minhash_new(0, 5, 1), "new: 0 permutations refused");
	CHECK(!minhash_new(1025, 5, 1), "new: 1025 permutations refused");
	CHECK(!minhash_new(128, 0, 1), "new: ngram 0 refused");
	minhash *m = minhash_new(1024, 1, 1);
	CHECK(m && minhash_num_perm(m) == 1024, "new: 1024 permutations");
	minhash_free(m);
	m = minhash_new(13, 3, 1); /* not a multiple of the vector width */
	CHECK(m && minhash_num_perm(m) == 13, "new: 13 permutations");
	minhash_free(m);
	minhash_free(NULL);
}

static void test_definition(void)
{
	static const char *caps[] = {
		"A red bicycle leaning against a brick wall at sunset",
		"Close-up of a vintage wooden chair, isolated on white background.",
		"it's 3.5 km: the U.S. road, 1,000 cars; e.g. a_b x@y.com",
		"Hello", "two words", "one two three four", "one two three four five",
		"one two three four five six", "",
	};
	int ok = 1;
	for (int perm = 1; perm <= 300; perm += 61) {
		for (int g = 1; g <= 6; g += 4) {
			minhash *m = minhash_new(perm, g, 12345);
			for (size_t c = 0; c < sizeof caps / sizeof *caps; c++) {
				uint32_t got[1024], want[1024];
				size_t ng = sk(m, caps[c], got), nw = ref_sketch(caps[c], perm, g, 12345, want);
				if (ng != nw || memcmp(got, want, perm * sizeof *got)) {
					if (ok)
						printf("# perm %d ngram %d '%s': %zu vs %zu shingles\n", perm, g,
						       caps[c], ng, nw);
					ok = 0;
				}
			}
			minhash_free(m);
		}
	}
	CHECK(ok, "definition: sketches equal a slow implementation of the documented algorithm");
}

static void test_kernels(void)
{
	static const char *names[] = {"scalar", "avx2", "avx512"};
	minhash *m[3];
	for (int k = 0; k < 3; k++) {
		setenv("MVL_MINHASH_KERNEL", names[k], 1);
		m[k] = minhash_new(256, 5, 7);
	}
	unsetenv("MVL_MINHASH_KERNEL");
	char buf[8192];
	int ok = 1;
	srand(3);
	for (int it = 0; it < 300 && ok; it++) {
		int nw = 1 + rand() % 400, o = 0;
		for (int i = 0; i < nw; i++)
			o += snprintf(buf + o, sizeof buf - o, "%sw%d", i ? " " : "", rand() % 1000);
		uint32_t s[3][256];
		for (int k = 0; k < 3; k++)
			minhash_sketch(m[k], T, buf, (size_t)o, s[k]);
		ok = !memcmp(s[0], s[1], sizeof s[0]) && !memcmp(s[0], s[2], sizeof s[0]);
	}
	CHECK(ok, "kernels: scalar, AVX2 and AVX-512 give the same sketches");
	for (int k = 0; k < 3; k++)
		minhash_free(m[k]);
}

/* the ASCII word path agrees with text_words_icu() */
static void test_fast_words(void)
{
	static const char al[] = "abZ19 .,';:_-\"\t\n!?()@#/&%$+=*<>[]{}|~`^\\aaeEo0";
	for (int g = 1; g <= 2; g++) {
		minhash *fast = minhash_new(256, g, 9);
		setenv("MVL_MINHASH_ICU", "1", 1);
		minhash *icu = minhash_new(256, g, 9);
		unsetenv("MVL_MINHASH_ICU");
		int bad = 0;
		srand(11);
		for (int it = 0; it < 100000; it++) {
			char s[48];
			int n = 1 + rand() % 40;
			for (int i = 0; i < n; i++)
				s[i] = al[rand() % (int)(sizeof al - 1)];
			uint32_t a[256], b[256];
			size_t x = minhash_sketch(fast, T, s, (size_t)n, a);
			size_t y = minhash_sketch(icu, T, s, (size_t)n, b);
			if (x != y || memcmp(a, b, sizeof a)) {
				if (!bad)
					printf("# differs on '%.*s'\n", n, s);
				bad++;
			}
		}
		CHECKF(!bad, g == 1 ? "ascii words: same as ICU (1-grams, 100000 random strings)"
				    : "ascii words: same as ICU (2-grams, 100000 random strings)",
		       "%d differ", bad);
		minhash_free(fast);
		minhash_free(icu);
	}
}

static void test_identity_case(void)
{
	minhash *m = minhash_new(128, 5, 1);
	uint32_t a[128], b[128];
	const char *s = "A red bicycle leaning against a brick wall at sunset";
	size_t na = sk(m, s, a), nb = sk(m, s, b);
	CHECK(na == 6 && nb == 6 && !memcmp(a, b, sizeof a), "identical captions: identical sketches, 6 shingles");
	sk(m, "A RED Bicycle LEANING against A brick WALL at SUNSET", b);
	CHECK(!memcmp(a, b, sizeof a), "case: ASCII upper and lower case alike");
	sk(m, "  a red bicycle,   leaning against a\tbrick wall... at sunset!\n", b);
	CHECK(!memcmp(a, b, sizeof a), "words: punctuation and spacing do not matter");
	sk(m, "a red bicycle leaning against a brick wall at sunrise", b);
	double j = minhash_jaccard(a, b, 128);
	CHECKF(j > 0.55 && j < 0.95, "last word changed: estimate near 5/7", "%.3f", j);
	sk(m, "ПРИВЕТ ИЗ МОСКВЫ, КРАСНАЯ ПЛОЩАДЬ ЗИМОЙ ВЕЧЕРОМ", a);
	sk(m, "привет из москвы, красная площадь зимой вечером", b);
	CHECK(!all_ff(a, 128) && !memcmp(a, b, sizeof a), "case: Cyrillic upper and lower case alike");
	sk(m, "ÉCOLE ÀÉÎÕÜ ÇA VA BIEN MERCI", a);
	sk(m, "école àéîõü ça va bien merci", b);
	CHECK(!memcmp(a, b, sizeof a), "case: Latin accents alike");
	sk(m, "Straße", a);
	sk(m, "STRASSE", b);
	CHECK(memcmp(a, b, sizeof a), "case: lower-casing, not case folding (STRASSE is not straße)");
	minhash_free(m);
}

static void test_determinism(void)
{
	const char *s = "Photo of a golden retriever puppy playing in the snow in winter";
	minhash *m1 = minhash_new(128, 5, 42), *m2 = minhash_new(128, 5, 42);
	minhash *m3 = minhash_new(128, 5, 43), *m4 = minhash_new(256, 5, 42);
	uint32_t a[128], b[128], c[128], d[256];
	sk(m1, s, a);
	sk(m2, s, b);
	sk(m3, s, c);
	sk(m4, s, d);
	CHECK(!memcmp(a, b, sizeof a), "seed: the same seed gives the same sketch");
	CHECKF(minhash_jaccard(a, c, 128) < 0.1, "seed: another seed gives other permutations", "%.3f",
	       minhash_jaccard(a, c, 128));
	CHECK(!memcmp(a, d, sizeof a), "seed: 128 permutations are the first 128 of 256");
	/* across runs and machines: fixed values of the documented algorithm
	 * (also computed with Python integers and libxxhash through ctypes) */
	minhash *m = minhash_new(4, 5, 1);
	uint32_t e[4];
	static const uint32_t want[4] = {0x30f72efb, 0xf24d027e, 0x5c8989a4, 0x84d63799};
	static const uint32_t want_ru[4] = {0xbbca4f4b, 0x5deba66b, 0xffc1d41d, 0xadc1c6cc};
	sk(m, "a red bicycle leaning against a brick wall", e);
	CHECKF(!memcmp(e, want, sizeof e), "seed: the same values in every run",
	       "%08x %08x %08x %08x", e[0], e[1], e[2], e[3]);
	sk(m, "Красный Велосипед", e);
	CHECKF(!memcmp(e, want_ru, sizeof e), "seed: the same values in every run (Cyrillic)",
	       "%08x %08x %08x %08x", e[0], e[1], e[2], e[3]);
	minhash_free(m);
	minhash_free(m1);
	minhash_free(m2);
	minhash_free(m3);
	minhash_free(m4);
}

/* Two captions of distinct words whose 5-gram sets overlap: A has the
 * 5-grams starting at 0..m-1, B those starting at s..s+m-1, so J =
 * (m - s) / (m + s). */
static void make_pair(int m, int s, int salt, char *a, char *b)
{
	int oa = 0, ob = 0;
	for (int i = 0; i < m + 4; i++)
		oa += sprintf(a + oa, "%sw%dx%d", i ? " " : "", i, salt);
	for (int i = s; i < s + m + 4; i++)
		ob += sprintf(b + ob, "%sw%dx%d", i > s ? " " : "", i, salt);
}

static void test_jaccard_accuracy(void)
{
	static const struct {
		int m, s;
		double j;
	} pairs[] = {{60, 40, 0.2}, {60, 20, 0.5}, {90, 10, 0.8}, {100, 0, 1.0}};
	static const int perms[] = {128, 256};
	char a[8192], b[8192];
	for (int pi = 0; pi < 2; pi++) {
		int k = perms[pi];
		for (int q = 0; q < 4; q++) {
			double sd = sqrt(pairs[q].j * (1 - pairs[q].j) / k), sum = 0, worst = 0;
			int seeds = 30, count_ok = 1;
			for (int seed = 1; seed <= seeds; seed++) {
				minhash *mh = minhash_new(k, 5, (uint64_t)seed * 1000003u);
				make_pair(pairs[q].m, pairs[q].s, seed, a, b);
				uint32_t sa[256], sb[256];
				size_t na = sk(mh, a, sa), nb = sk(mh, b, sb);
				count_ok &= na == (size_t)pairs[q].m && nb == (size_t)pairs[q].m;
				double e = minhash_jaccard(sa, sb, k);
				sum += e;
				if (fabs(e - pairs[q].j) > worst)
					worst = fabs(e - pairs[q].j);
				minhash_free(mh);
			}
			double mean = sum / seeds;
			char name[128];
			snprintf(name, sizeof name, "jaccard %.1f, %d perms: every estimate within 4 sd (%.3f)",
				 pairs[q].j, k, 4 * sd);
			CHECKF(count_ok && worst <= 4 * sd + 1e-12, name, "worst error %.3f", worst);
			snprintf(name, sizeof name, "jaccard %.1f, %d perms: mean of 30 seeds within 3 sd/sqrt(30)",
				 pairs[q].j, k);
			CHECKF(fabs(mean - pairs[q].j) <= 3 * sd / sqrt(seeds) + 1e-12, name, "mean %.4f",
			       mean);
		}
	}
	/* disjoint sets: almost nothing equal (only 32-bit collisions) */
	minhash *mh = minhash_new(256, 5, 5);
	make_pair(50, 0, 1, a, b);
	make_pair(50, 0, 2, b, b + 4096);
	uint32_t sa[256], sb[256];
	sk(mh, a, sa);
	sk(mh, b, sb);
	CHECK(minhash_jaccard(sa, sb, 256) <= 1.0 / 256, "jaccard 0: disjoint shingle sets");
	minhash_free(mh);
	uint32_t x[4] = {1, 2, 3, 4}, y[4] = {1, 2, 0, 0};
	CHECK(minhash_jaccard(x, y, 4) == 0.5 && minhash_jaccard(x, x, 4) == 1.0,
	      "jaccard: share of equal slots");
}

static void test_short_empty(void)
{
	minhash *m = minhash_new(128, 5, 1);
	uint32_t a[128], b[128];
	CHECK(sk(m, "", a) == 0 && all_ff(a, 128), "empty: no shingles, all 0xFFFFFFFF");
	CHECK(minhash_sketch(m, T, NULL, 0, a) == 0 && all_ff(a, 128), "empty: NULL text, length 0");
	CHECK(sk(m, " \t\n  ", a) == 0 && all_ff(a, 128), "empty: whitespace only");
	CHECK(sk(m, "!!! ... ---", a) == 0 && all_ff(a, 128), "empty: punctuation only");
	CHECK(sk(m, "😀😀 👍", a) == 0 && all_ff(a, 128), "empty: emoji only (no word)");
	CHECK(sk(m, "Hello", a) == 1 && !all_ff(a, 128), "one word: one shingle");
	CHECK(sk(m, "hello!", b) == 1 && !memcmp(a, b, sizeof a), "one word: 'Hello' = 'hello!'");
	CHECK(sk(m, "one two three four", a) == 1, "4 words, 5-grams: one shingle");
	CHECK(sk(m, "one two three four five", b) == 1 && memcmp(a, b, sizeof a),
	      "5 words: one shingle, not the 4-word one");
	CHECK(sk(m, "one two three four five six", a) == 2, "6 words: two shingles");
	minhash_free(m);
	m = minhash_new(64, 1, 1);
	CHECK(sk(m, "b a b a", a) == 4, "1-grams: shingles counted with repeats");
	sk(m, "a b", b);
	CHECK(!memcmp(a, b, 64 * sizeof *a), "1-grams: a set (repeats and order do not matter)");
	minhash_free(m);
}

static void test_non_ascii(void)
{
	minhash *m = minhash_new(128, 5, 1), *m1 = minhash_new(128, 1, 1);
	uint32_t a[128], b[128];
	const char *zh = "一只红色的自行车靠在砖墙上，夕阳西下的时候非常漂亮";
	size_t n = sk(m, zh, a);
	CHECKF(n >= 2 && !all_ff(a, 128), "CJK: dictionary words give 5-grams", "%zu shingles", n);
	sk(m, zh, b);
	CHECK(!memcmp(a, b, sizeof a), "CJK: identical captions, identical sketches");
	sk(m, "一只蓝色的汽车停在房子前面，早上的阳光非常明亮", b);
	CHECKF(minhash_jaccard(a, b, 128) < 0.5, "CJK: another caption differs", "%.3f",
	       minhash_jaccard(a, b, 128));
	const char *ja = "東京の夜景、レインボーブリッジと東京タワー";
	CHECK(sk(m1, ja, a) >= 4 && !all_ff(a, 128), "Japanese: words without spaces");
	const char *ru = "Красный велосипед у кирпичной стены на закате солнца";
	CHECK(sk(m, ru, a) == 4, "Cyrillic: 8 words, 4 shingles");
	sk(m, "Красный велосипед у кирпичной стены на закате луны", b);
	double j = minhash_jaccard(a, b, 128);
	CHECKF(j > 0.3 && j < 0.95, "Cyrillic: last word changed, estimate near 3/5", "%.3f", j);
	CHECK(sk(m, "Caf\xe9 au lait \xff\xfe sur la table", a) >= 1 && !all_ff(a, 128),
	      "invalid UTF-8: sketched (as U+FFFD)");
	sk(m, "mixed ascii and 中文 words with Ünïcödé letters", a);
	sk(m, "MIXED ASCII AND 中文 WORDS WITH ÜNÏCÖDÉ LETTERS", b);
	CHECK(!memcmp(a, b, sizeof a), "mixed scripts: case-insensitive");
	minhash_free(m);
	minhash_free(m1);
}

static void test_long(void)
{
	minhash *m = minhash_new(256, 5, 1);
	setenv("MVL_MINHASH_ICU", "1", 1);
	minhash *mi = minhash_new(256, 5, 1);
	unsetenv("MVL_MINHASH_ICU");
	static char s[6000], u[12000];
	int o = 0, nw = 0;
	while (o < 5000) {
		o += snprintf(s + o, sizeof s - o, "%sWord%d", nw ? " " : "", nw % 700);
		nw++;
	}
	uint32_t a[256], b[256], c[256];
	uint32_t before[256];
	sk(m, "a short caption before the long one", before);
	size_t n = minhash_sketch(m, T, s, (size_t)o, a);
	CHECKF(n == (size_t)nw - 4, "long: 5000-char caption, words - 4 shingles", "%zu vs %d", n,
	       nw - 4);
	minhash_sketch(mi, T, s, (size_t)o, b);
	CHECK(!memcmp(a, b, sizeof a), "long: ASCII path and ICU agree");
	sk(m, "a short caption before the long one", c);
	CHECK(!memcmp(before, c, sizeof c), "long: scratch reused, a short caption after it unchanged");
	int ou = 0, k = 0;
	while (ou < 5000) {
		ou += snprintf(u + ou, sizeof u - ou, "%sСЛОВО%d", k ? " " : "", k % 300);
		k++;
	}
	n = minhash_sketch(m, T, u, (size_t)ou, a);
	CHECKF(n + 4 == (size_t)k, "long: 5000-byte Cyrillic caption", "%zu shingles, %d words", n, k);
	minhash_free(m);
	minhash_free(mi);
}

static void test_threads(void)
{
	enum { N = 2000 };
	minhash *m = minhash_new(128, 5, 3);
	static uint32_t ser[N][128], par[N][128];
	char buf[N][96];
	for (int i = 0; i < N; i++)
		snprintf(buf[i], sizeof buf[i], "%s caption number %d with %d words and %s",
			 i % 3 ? "Ünïcödé" : "plain", i, i % 17, i % 2 ? "more" : "fewer words");
	for (int i = 0; i < N; i++)
		sk(m, buf[i], ser[i]);
	int bad = 0;
#pragma omp parallel num_threads(4) reduction(+ : bad)
	{
		text_ctx *t = text_ctx_new();
#pragma omp for schedule(dynamic, 7)
		for (int i = 0; i < N; i++) {
			minhash_sketch(m, t, buf[i], strlen(buf[i]), par[i]);
			bad += memcmp(ser[i], par[i], sizeof par[i]) != 0;
		}
		text_ctx_free(t);
	}
	CHECKF(!bad, "threads: 4 threads give the serial sketches", "%d differ", bad);
	minhash_free(m);
}

static void test_lsh(void)
{
	int b, r;
	lsh_params(0.8, 128, &b, &r);
	CHECKF(b == 9 && r == 13, "lsh_params(0.8, 128): 9 bands x 13 rows (datasketch's optimum)",
	       "%d x %d", b, r);
	static const struct {
		double t;
		int perm, b, r;
	} want[] = {{0.5, 128, 25, 5}, {0.7, 128, 14, 9}, {0.9, 128, 5, 25}, {0.8, 64, 5, 11},
		    {0.8, 256, 17, 15}, {0.9, 256, 9, 28}};
	int ok = 1;
	for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
		lsh_params(want[i].t, want[i].perm, &b, &r);
		if (b != want[i].b || r != want[i].r) {
			printf("# lsh_params(%.1f, %d) = %d x %d, want %d x %d\n", want[i].t, want[i].perm,
			       b, r, want[i].b, want[i].r);
			ok = 0;
		}
	}
	CHECK(ok, "lsh_params: the same optimum as datasketch at 0.5-0.9, 64-256 perms");
	ok = 1;
	for (int perm = 1; perm <= 1024; perm = perm * 3 + 1)
		for (double t = 0.1; t < 1; t += 0.2) {
			lsh_params(t, perm, &b, &r);
			ok &= b >= 1 && r >= 1 && b * r <= perm;
		}
	CHECK(ok, "lsh_params: bands x rows <= num_perm");
	lsh_params(0.8, 128, &b, &r);
	int mono = 1;
	double prev = -1;
	for (int i = 0; i <= 1000; i++) {
		double p = lsh_probability(i / 1000.0, b, r);
		mono &= p >= prev && p >= 0 && p <= 1;
		prev = p;
	}
	CHECK(mono, "S-curve: monotone in [0, 1]");
	CHECK(lsh_probability(0, b, r) == 0 && lsh_probability(1, b, r) == 1, "S-curve: 0 at 0, 1 at 1");
	double p3 = lsh_probability(0.3, b, r), p5 = lsh_probability(0.5, b, r);
	double p8 = lsh_probability(0.8, b, r), p9 = lsh_probability(0.9, b, r);
	double p95 = lsh_probability(0.95, b, r);
	CHECKF(p3 < 1e-5 && p5 < 0.01, "S-curve 9x13: P(0.3) < 1e-5, P(0.5) < 1%", "%.2e %.4f", p3, p5);
	CHECKF(fabs(p8 - 0.3988) < 0.001, "S-curve 9x13: P(0.8) = 0.399 (the optimum crosses there)",
	       "%.4f", p8);
	CHECKF(p9 > 0.9 && p95 > 0.99, "S-curve 9x13: P(0.9) > 0.9, P(0.95) > 0.99", "%.4f %.4f", p9, p95);
	CHECK(fabs(lsh_probability(0.5, 2, 1) - 0.75) < 1e-12, "lsh_probability: 1 - (1 - s^r)^b");

	uint32_t s1[128], s2[128];
	for (int i = 0; i < 128; i++)
		s1[i] = s2[i] = (uint32_t)i * 2654435761u;
	s2[3 * 13 + 5] ^= 1; /* a slot of band 3 */
	int eq = 1;
	for (int band = 0; band < 9; band++)
		eq &= (lsh_band_key(s1, band, 13) == lsh_band_key(s2, band, 13)) == (band != 3);
	CHECK(eq, "band keys: only the band with the changed slot differs");
	uint32_t rep[26] = {0};
	CHECK(lsh_band_key(rep, 0, 13) != lsh_band_key(rep, 1, 13), "band keys: equal rows, other band, other key");
}

int main(void)
{
	T = text_ctx_new();
	test_new();
	test_definition();
	test_kernels();
	test_fast_words();
	test_identity_case();
	test_determinism();
	test_jaccard_accuracy();
	test_short_empty();
	test_non_ascii();
	test_long();
	test_threads();
	test_lsh();
	text_ctx_free(T);
	return check_done();
}
