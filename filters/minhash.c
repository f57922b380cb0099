/* minhash.c: MinHash sketches of captions (word n-grams) and LSH banding.
 *
 * What a sketch is, exactly (minhash.h gives the outline):
 *
 *  1. The caption is lower-cased (ASCII: A-Z only; otherwise ICU's root
 *     full lower-casing, ucasemap_utf8ToLower), then cut into words by
 *     text_words_icu() on the lower-cased text.  (ASCII text takes a fast
 *     path, ascii_words(), that finds the same words without ICU.)
 *  2. Shingles are the word n-grams: words k..k+n-1 joined by single spaces,
 *     hashed with XXH3_64bits (seed 0).  A caption with fewer than n words
 *     (but at least one) is one shingle of all its words; no words: no
 *     shingles and the sketch is all 0xFFFFFFFF.
 *  3. Each shingle hash x (64 bits) is reduced mod p = 2^61 - 1 and permuted
 *     by h_i(x) = (a_i * x + b_i) mod p, i = 0..num_perm-1.  a_i in [1, p)
 *     and b_i in [0, p) come from splitmix64 seeded with the seed, drawn in
 *     the order a_0, b_0, a_1, b_1, ...: a_i = 1 + r % (p - 1),
 *     b_i = r' % p.  So a sketch with fewer permutations is a prefix of one
 *     with more, for the same seed.
 *  4. Slot i keeps the minimum of h_i over the shingles, taken over the full
 *     61-bit values; the sketch stores the low 32 bits of that minimum.
 *     (Taking the minimum first keeps the estimator exact: two sets share
 *     slot i with probability J; equal 32-bit slots from different minima
 *     add about 2^-32 false agreement per slot.)
 *
 * The multiply mod p is done in 32-bit halves (four 32x32->64 multiplies,
 * 2^64 = 8 mod p, 2^61 = 1 mod p), 4 or 8 permutations per instruction with
 * AVX2 or AVX-512 (chosen at run time on x86-64; elsewhere a scalar
 * __int128 kernel).  All kernels and both word paths give identical
 * sketches; for tests and benchmarks the environment, read by
 * minhash_new(), can force them: MVL_MINHASH_KERNEL=scalar|avx2|avx512,
 * MVL_MINHASH_ICU=1 (ICU words for ASCII too).
 *
 * Scratch (lower-cased text, joined words, shingle hashes, ICU case map) is
 * per thread, grown as needed and freed at thread exit: no allocation per
 * call once warm.
 */
#include "minhash.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/ucasemap.h>
#include <xxhash.h>

#include "util.h"

#define P61 ((uint64_t)0x1FFFFFFFFFFFFFFFull) /* 2^61 - 1 */
#define LANES 8                              /* permutations padded to this */

struct minhash {
	int num_perm, ngram, padded;
	int icu_only; /* MVL_MINHASH_ICU=1: no ASCII fast path (tests) */
	uint64_t seed;
	/* a_i split into 32-bit halves, b_i; `padded` entries, 64-byte aligned */
	uint64_t *alo, *ahi, *b;
	/* the permutation kernel for this CPU (see pick_kernel()) */
	void (*kernel)(const minhash *m, const uint64_t *xs, const uint64_t *xh, size_t nx,
		       uint64_t *mins);
};

/* ---------------------------------------------------------------------- */
/* parameters */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

typedef void (*kernel_fn)(const minhash *m, const uint64_t *xs, const uint64_t *xh, size_t nx,
			  uint64_t *mins);
static kernel_fn pick_kernel(void);

static uint64_t *alloc_lanes(int n)
{
	void *p = aligned_alloc(64, (size_t)n * sizeof(uint64_t));
	if (!p)
		die("out of memory");
	return p;
}

minhash *minhash_new(int num_perm, int ngram, uint64_t seed)
{
	if (num_perm < 1 || num_perm > 1024 || ngram < 1)
		return NULL;
	minhash *m = xcalloc(1, sizeof *m);
	m->num_perm = num_perm;
	m->ngram = ngram;
	m->seed = seed;
	m->padded = (num_perm + LANES - 1) / LANES * LANES;
	m->alo = alloc_lanes(m->padded);
	m->ahi = alloc_lanes(m->padded);
	m->b = alloc_lanes(m->padded);
	m->kernel = pick_kernel();
	const char *icu = getenv("MVL_MINHASH_ICU");
	m->icu_only = icu && *icu == '1';
	uint64_t st = seed;
	for (int i = 0; i < m->padded; i++) {
		uint64_t a = 1, b = 0; /* padding lanes: identity, never read back */
		if (i < num_perm) {
			a = 1 + splitmix64(&st) % (P61 - 1);
			b = splitmix64(&st) % P61;
		}
		m->alo[i] = a & 0xFFFFFFFFu;
		m->ahi[i] = a >> 32;
		m->b[i] = b;
	}
	return m;
}

void minhash_free(minhash *m)
{
	if (!m)
		return;
	free(m->alo);
	free(m->ahi);
	free(m->b);
	free(m);
}

int minhash_num_perm(const minhash *m)
{
	return m->num_perm;
}

/* ---------------------------------------------------------------------- */
/* per-thread scratch */

typedef struct mh_tls {
	UCaseMap *cm;
	char *low, *join;
	size_t lowcap, joincap;
	word_span *ws; /* word k is join[ws[k].off, + ws[k].len) */
	size_t wcap;
	word_span *fw; /* ascii_words() */
	size_t fwcap;
	uint64_t *hv, *hh; /* shingle hashes, reduced mod p; their high 32 bits */
	size_t hvcap;
} mh_tls;

static _Thread_local mh_tls *tls_;
static pthread_key_t tls_key_;
static pthread_once_t tls_once_ = PTHREAD_ONCE_INIT;

static void tls_free(void *p)
{
	mh_tls *t = p;
	if (!t)
		return;
	if (t->cm)
		ucasemap_close(t->cm);
	free(t->low);
	free(t->join);
	free(t->ws);
	free(t->fw);
	free(t->hv);
	free(t->hh);
	free(t);
}

static void tls_key_init(void)
{
	pthread_key_create(&tls_key_, tls_free);
}

static mh_tls *get_tls(void)
{
	if (tls_)
		return tls_;
	pthread_once(&tls_once_, tls_key_init);
	mh_tls *t = xcalloc(1, sizeof *t);
	pthread_setspecific(tls_key_, t);
	tls_ = t;
	return t;
}

static void grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (*cap >= need)
		return;
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	*p = xrealloc(*p, c * elem);
	*cap = c;
}

/* Lower-cases s[0..n) into t->low (NUL-terminated); *ascii: s is ASCII.
 * @return the length. */
static size_t lower(mh_tls *t, const char *s, size_t n, int *ascii)
{
	*ascii = text_is_ascii(s, n);
	if (*ascii) {
		grow((void **)&t->low, &t->lowcap, n + 1, 1);
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)s[i];
			t->low[i] = (char)((unsigned)(c - 'A') < 26u ? c + 32 : c);
		}
		t->low[n] = 0;
		return n;
	}
	if (!t->cm) {
		UErrorCode st = U_ZERO_ERROR;
		t->cm = ucasemap_open("", 0, &st);
		if (U_FAILURE(st))
			t->cm = NULL;
	}
	if (t->cm && n < (size_t)INT32_MAX / 4) {
		for (int tries = 0; tries < 2; tries++) {
			grow((void **)&t->low, &t->lowcap, n + n / 2 + 16, 1);
			UErrorCode e = U_ZERO_ERROR;
			int32_t need = ucasemap_utf8ToLower(t->cm, t->low, (int32_t)t->lowcap, s,
							    (int32_t)n, &e);
			if (U_SUCCESS(e) && (size_t)need < t->lowcap) {
				t->low[need] = 0;
				return (size_t)need;
			}
			if (e != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(e))
				break;
			grow((void **)&t->low, &t->lowcap, (size_t)need + 16, 1);
		}
	}
	/* no ICU case map (or it failed): ASCII letters only */
	grow((void **)&t->low, &t->lowcap, n + 1, 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		t->low[i] = (char)((unsigned)(c - 'A') < 26u ? c + 32 : c);
	}
	t->low[n] = 0;
	return n;
}

/* ASCII words exactly as text_words_icu() finds them (UAX #29 word break,
 * the segments holding a letter or digit), for lower-cased ASCII text: runs
 * of [a-z0-9], joined across one '.' or '\'' between two letters (WB6/7)
 * and across one '.', '\'', ',' or ';' between two digits (WB11/12).
 * Text with '_' (ExtendNumLet) or '@' (a letter to ICU 72, not to Unicode)
 * anywhere, or ':' between two letters or digits (Unicode's MidLetter, not
 * ICU's), is left to ICU: @return (size_t)-1.
 * tests/unit/test_minhash.c checks the two agree on random ASCII text. */
static size_t ascii_words(mh_tls *t, const char *s, size_t n)
{
#define ALPHA(c) ((unsigned)((c) - 'a') < 26u)
#define DIGIT(c) ((unsigned)((c) - '0') < 10u)
#define ALNUM(c) (ALPHA(c) || DIGIT(c))
	size_t nw = 0, i = 0;
	for (;;) {
		while (i < n && !ALNUM(s[i])) {
			if (s[i] == '_' || s[i] == '@')
				return (size_t)-1;
			i++;
		}
		if (i == n)
			return nw;
		size_t a = i++;
		for (;;) {
			while (i < n && ALNUM(s[i]))
				i++;
			if (i + 1 >= n || !ALNUM(s[i + 1]))
				break;
			char c = s[i], x = s[i - 1], y = s[i + 1];
			if (c == '_' || c == ':' || c == '@')
				return (size_t)-1;
			if (ALPHA(x) && ALPHA(y) && (c == '.' || c == '\''))
				i += 2;
			else if (DIGIT(x) && DIGIT(y) && (c == '.' || c == '\'' || c == ',' || c == ';'))
				i += 2;
			else
				break;
		}
		if (nw == t->fwcap)
			grow((void **)&t->fw, &t->fwcap, nw + 1, sizeof *t->fw);
		t->fw[nw].off = (uint32_t)a;
		t->fw[nw].len = (uint32_t)(i - a);
		nw++;
	}
#undef ALPHA
#undef DIGIT
#undef ALNUM
}

/* Shingle hashes of text into t->hv.  @return their number. */
static size_t shingles(const minhash *m, mh_tls *t, text_ctx *tc, const char *s, size_t n)
{
	int ascii;
	size_t ln = lower(t, s, n, &ascii);
	const word_span *w;
	size_t nw = ascii && !m->icu_only ? ascii_words(t, t->low, ln) : (size_t)-1;
	if (nw == (size_t)-1)
		nw = text_words_icu(tc, t->low, ln, &w);
	else
		w = t->fw;
	if (!nw)
		return 0;
	/* words joined by single spaces: every n-gram is a substring */
	grow((void **)&t->join, &t->joincap, ln + nw + 1, 1);
	grow((void **)&t->ws, &t->wcap, nw, sizeof *t->ws);
	size_t o = 0;
	for (size_t k = 0; k < nw; k++) {
		if (k)
			t->join[o++] = ' ';
		t->ws[k].off = (uint32_t)o;
		t->ws[k].len = w[k].len;
		memcpy(t->join + o, t->low + w[k].off, w[k].len);
		o += w[k].len;
	}
	size_t g = (size_t)m->ngram;
	size_t ns = nw >= g ? nw - g + 1 : 1;
	if (g > nw)
		g = nw;
	if (t->hvcap < ns) {
		size_t c = t->hvcap;
		grow((void **)&t->hv, &c, ns, sizeof *t->hv);
		grow((void **)&t->hh, &t->hvcap, ns, sizeof *t->hh);
	}
	for (size_t k = 0; k < ns; k++) {
		const word_span *e = &t->ws[k + g - 1];
		uint64_t x = XXH3_64bits(t->join + t->ws[k].off, e->off + e->len - t->ws[k].off);
		x = (x & P61) + (x >> 61);
		x = x >= P61 ? x - P61 : x;
		t->hv[k] = x;
		t->hh[k] = x >> 32;
	}
	return ns;
}

/* ---------------------------------------------------------------------- */
/* permutations */

/* Three kernels, identical results: mins[i] = min over xs[k] of
 * (a_i * x + b_i) mod p for i < padded (every x < p).  The vector ones work
 * on lanes of 64 bits with 32 x 32 -> 64 multiplies (vpmuludq):
 *   a*x = ah*xh*2^64 + (ah*xl + al*xh)*2^32 + al*xl   (a, x < 2^61)
 * and 2^64 = 8, 2^61 = 1 (mod p), so with mid = ah*xl + al*xh (< 2^62) and
 * ll = al*xl (< 2^64) the sum
 *   8*ah*xh + (mid >> 29) + ((mid & (2^29-1)) << 32) + (ll & p) + (ll >> 61) + b
 * has every term below 2^61 and fits 64 bits; one fold ((s & p) + (s >> 61))
 * brings it below p + 4 and one conditional subtraction into [0, p). */

static void kernel_scalar(const minhash *m, const uint64_t *xs, const uint64_t *xh, size_t nx,
			  uint64_t *mins)
{
	for (int i = 0; i < m->padded; i++) {
		uint64_t a = m->ahi[i] << 32 | m->alo[i], b = m->b[i], mn = UINT64_MAX;
		for (size_t k = 0; k < nx; k++) {
			unsigned __int128 z = (unsigned __int128)a * xs[k];
			uint64_t s = ((uint64_t)z & P61) + (uint64_t)(z >> 61) + b; /* < 2^63 */
			s = (s & P61) + (s >> 61);
			s = s >= P61 ? s - P61 : s;
			mn = s < mn ? s : mn;
		}
		mins[i] = mn;
	}
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define MH_X86 1

__attribute__((target("avx2"))) static void kernel_avx2(const minhash *m, const uint64_t *xs,
							 const uint64_t *xh, size_t nx, uint64_t *mins)
{
	const __m256i P = _mm256_set1_epi64x((long long)P61);
	const __m256i HI29 = _mm256_set1_epi64x((long long)(0x1FFFFFFFull << 32));
	for (int i = 0; i < m->padded; i += 4) {
		__m256i al = _mm256_load_si256((const __m256i *)(m->alo + i));
		__m256i ah = _mm256_load_si256((const __m256i *)(m->ahi + i));
		__m256i b = _mm256_load_si256((const __m256i *)(m->b + i));
		__m256i mn = _mm256_set1_epi64x(INT64_MAX); /* values < 2^61: signed compares */
		for (size_t k = 0; k < nx; k++) {
			__m256i xl = _mm256_set1_epi64x((long long)xs[k]);
			__m256i xhi = _mm256_set1_epi64x((long long)xh[k]);
			__m256i hh = _mm256_mul_epu32(ah, xhi);
			__m256i mid = _mm256_add_epi64(_mm256_mul_epu32(ah, xl), _mm256_mul_epu32(al, xhi));
			__m256i ll = _mm256_mul_epu32(al, xl);
			__m256i s = _mm256_add_epi64(_mm256_slli_epi64(hh, 3), _mm256_srli_epi64(mid, 29));
			s = _mm256_add_epi64(s, _mm256_and_si256(_mm256_slli_epi64(mid, 32), HI29));
			s = _mm256_add_epi64(s, _mm256_and_si256(ll, P));
			s = _mm256_add_epi64(s, _mm256_srli_epi64(ll, 61));
			s = _mm256_add_epi64(s, b);
			s = _mm256_add_epi64(_mm256_and_si256(s, P), _mm256_srli_epi64(s, 61));
			__m256i r = _mm256_sub_epi64(s, P); /* negative when s < p */
			s = _mm256_castpd_si256(_mm256_blendv_pd(_mm256_castsi256_pd(r),
								 _mm256_castsi256_pd(s),
								 _mm256_castsi256_pd(r)));
			__m256i gt = _mm256_cmpgt_epi64(mn, s);
			mn = _mm256_castpd_si256(_mm256_blendv_pd(_mm256_castsi256_pd(mn),
								  _mm256_castsi256_pd(s),
								  _mm256_castsi256_pd(gt)));
		}
		_mm256_store_si256((__m256i *)(mins + i), mn);
	}
}

__attribute__((target("avx512f"))) static void kernel_avx512(const minhash *m, const uint64_t *xs,
							      const uint64_t *xh, size_t nx,
							      uint64_t *mins)
{
	const __m512i P = _mm512_set1_epi64((long long)P61);
	const __m512i HI29 = _mm512_set1_epi64((long long)(0x1FFFFFFFull << 32));
	for (int i = 0; i < m->padded; i += 8) {
		__m512i al = _mm512_load_si512((const void *)(m->alo + i));
		__m512i ah = _mm512_load_si512((const void *)(m->ahi + i));
		__m512i b = _mm512_load_si512((const void *)(m->b + i));
		__m512i mn = _mm512_set1_epi64(-1);
		for (size_t k = 0; k < nx; k++) {
			__m512i xl = _mm512_set1_epi64((long long)xs[k]);
			__m512i xhi = _mm512_set1_epi64((long long)xh[k]);
			__m512i hh = _mm512_mul_epu32(ah, xhi);
			__m512i mid = _mm512_add_epi64(_mm512_mul_epu32(ah, xl), _mm512_mul_epu32(al, xhi));
			__m512i ll = _mm512_mul_epu32(al, xl);
			__m512i s = _mm512_add_epi64(_mm512_slli_epi64(hh, 3), _mm512_srli_epi64(mid, 29));
			s = _mm512_add_epi64(s, _mm512_and_si512(_mm512_slli_epi64(mid, 32), HI29));
			s = _mm512_add_epi64(s, _mm512_and_si512(ll, P));
			s = _mm512_add_epi64(s, _mm512_srli_epi64(ll, 61));
			s = _mm512_add_epi64(s, b);
			s = _mm512_add_epi64(_mm512_and_si512(s, P), _mm512_srli_epi64(s, 61));
			s = _mm512_min_epu64(s, _mm512_sub_epi64(s, P)); /* s - p wraps when s < p */
			mn = _mm512_min_epu64(mn, s);
		}
		_mm512_store_si512((void *)(mins + i), mn);
	}
}
#endif

/* The kernel for this CPU; MVL_MINHASH_KERNEL=scalar|avx2|avx512 picks one
 * (for tests and benchmarks; one the CPU lacks falls back to the best). */
static kernel_fn pick_kernel(void)
{
	const char *want = getenv("MVL_MINHASH_KERNEL");
	if (want && !strcmp(want, "scalar"))
		return kernel_scalar;
#ifdef MH_X86
	__builtin_cpu_init();
	int has512 = __builtin_cpu_supports("avx512f"), has2 = __builtin_cpu_supports("avx2");
	if (want && !strcmp(want, "avx2") && has2)
		return kernel_avx2;
	if (has512)
		return kernel_avx512;
	if (has2)
		return kernel_avx2;
#endif
	return kernel_scalar;
}

size_t minhash_sketch(const minhash *m, text_ctx *t, const char *text, size_t n, uint32_t *sig)
{
	mh_tls *s = get_tls();
	size_t ns = shingles(m, s, t, text, n);
	if (!ns) {
		for (int i = 0; i < m->num_perm; i++)
			sig[i] = 0xFFFFFFFFu;
		return 0;
	}
	_Alignas(64) uint64_t mins[1024];
	m->kernel(m, s->hv, s->hh, ns, mins);
	for (int i = 0; i < m->num_perm; i++)
		sig[i] = (uint32_t)mins[i];
	return ns;
}

double minhash_jaccard(const uint32_t *a, const uint32_t *b, int num_perm)
{
	if (num_perm <= 0)
		return 0;
	int eq = 0;
	for (int i = 0; i < num_perm; i++)
		eq += a[i] == b[i];
	return (double)eq / num_perm;
}

/* ---------------------------------------------------------------------- */
/* LSH */

double lsh_probability(double s, int bands, int rows)
{
	return 1.0 - pow(1.0 - pow(s, rows), bands);
}

static double ipow(double x, int e)
{
	double r = 1;
	while (e) {
		if (e & 1)
			r *= x;
		x *= x;
		e >>= 1;
	}
	return r;
}

/* Composite Simpson's rule on [lo, hi] with SIMPSON_N intervals: the grid
 * is the same for every (bands, rows), so s^rows is kept per point and
 * multiplied by s as rows grows. */
#define SIMPSON_N 512

void lsh_params(double threshold, int num_perm, int *bands, int *rows)
{
	if (num_perm < 1)
		num_perm = 1;
	if (!(threshold > 0))
		threshold = 0;
	if (threshold > 1)
		threshold = 1;
	/* grid: points 0..N on [0, t] (false positives), N+1..2N+1 on [t, 1] */
	enum { NP = 2 * (SIMPSON_N + 1) };
	double x[NP], wgt[NP], pw[NP];
	for (int side = 0; side < 2; side++) {
		double lo = side ? threshold : 0, hi = side ? 1 : threshold;
		double h = (hi - lo) / SIMPSON_N;
		for (int k = 0; k <= SIMPSON_N; k++) {
			int j = side * (SIMPSON_N + 1) + k;
			x[j] = lo + h * k;
			double c = (k == 0 || k == SIMPSON_N) ? 1 : (k & 1) ? 4 : 2;
			wgt[j] = c * h / 3;
		}
	}
	double best = INFINITY;
	int bb = 1, br = 1;
	for (int b = 1; b <= num_perm; b++) {
		int maxr = num_perm / b;
		for (int j = 0; j < NP; j++)
			pw[j] = 1;
		for (int r = 1; r <= maxr; r++) {
			double fp = 0, fn = 0;
			for (int j = 0; j < NP; j++) {
				pw[j] *= x[j];
				double miss = ipow(1 - pw[j], b); /* 1 - P(candidate) */
				if (j <= SIMPSON_N)
					fp += wgt[j] * (1 - miss);
				else
					fn += wgt[j] * miss;
			}
			double err = 0.5 * fp + 0.5 * fn;
			if (err < best) {
				best = err;
				bb = b;
				br = r;
			}
		}
	}
	*bands = bb;
	*rows = br;
}

uint64_t lsh_band_key(const uint32_t *sig, int band, int rows)
{
	/* seeded with the band index, so equal rows in different bands give
	 * different keys and one table can hold every band */
	return XXH3_64bits_withSeed(sig + (size_t)band * rows, (size_t)rows * sizeof *sig,
				    (uint64_t)band);
}
