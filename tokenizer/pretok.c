/* pretok.c: gpt2 and cl100k_base pre-tokenization without a regex engine;
 * see pretok.h for why and for what keeps it equal to the regex. */
#include "pretok.h"

#include <stdlib.h>
#include <string.h>

#include "bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

enum { GPT2, CL100K };
/* class bits; KNOWN marks a filled entry (0 = not asked yet) */
enum { C_L = 1, C_N = 2, C_WS = 4, C_KNOWN = 0x80 };

struct pretok {
	int kind;
	pcre2_code *re_l, *re_n, *re_ws;
	uint8_t *cls; /* by code point, 0x110000 entries, filled on first sight */
};

/* ---------------------------------------------------------------------- */
/* characters */

/* The code point starting at t[q] and its length in bytes, or 0 when no
 * well-formed UTF-8 character starts there (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF; PCRE2's definition too). */
static inline int decode(const uint8_t *t, size_t n, size_t q, uint32_t *cp)
{
	uint8_t b0 = t[q];
	if (b0 < 0x80) {
		*cp = b0;
		return 1;
	}
	size_t left = n - q;
	if (b0 >= 0xC2 && b0 <= 0xDF) {
		if (left < 2 || (t[q + 1] & 0xC0) != 0x80)
			return 0;
		*cp = (uint32_t)(b0 & 0x1F) << 6 | (t[q + 1] & 0x3F);
		return 2;
	}
	if (b0 >= 0xE0 && b0 <= 0xEF) {
		if (left < 3 || (t[q + 1] & 0xC0) != 0x80 || (t[q + 2] & 0xC0) != 0x80)
			return 0;
		if ((b0 == 0xE0 && t[q + 1] < 0xA0) || (b0 == 0xED && t[q + 1] > 0x9F))
			return 0; /* overlong; surrogate */
		*cp = (uint32_t)(b0 & 0x0F) << 12 | (uint32_t)(t[q + 1] & 0x3F) << 6 | (t[q + 2] & 0x3F);
		return 3;
	}
	if (b0 >= 0xF0 && b0 <= 0xF4) {
		if (left < 4 || (t[q + 1] & 0xC0) != 0x80 || (t[q + 2] & 0xC0) != 0x80 ||
		    (t[q + 3] & 0xC0) != 0x80)
			return 0;
		if ((b0 == 0xF0 && t[q + 1] < 0x90) || (b0 == 0xF4 && t[q + 1] > 0x8F))
			return 0; /* overlong; above U+10FFFF */
		*cp = (uint32_t)(b0 & 0x07) << 18 | (uint32_t)(t[q + 1] & 0x3F) << 12 |
		      (uint32_t)(t[q + 2] & 0x3F) << 6 | (t[q + 3] & 0x3F);
		return 4;
	}
	return 0;
}

static size_t encode(uint32_t cp, uint8_t out[4])
{
	if (cp < 0x80) {
		out[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (uint8_t)(0xC0 | cp >> 6);
		out[1] = (uint8_t)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (uint8_t)(0xE0 | cp >> 12);
		out[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
		out[2] = (uint8_t)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (uint8_t)(0xF0 | cp >> 18);
	out[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
	out[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
	out[3] = (uint8_t)(0x80 | (cp & 0x3F));
	return 4;
}

static int matches(pcre2_code *re, const uint8_t *s, size_t n, pcre2_match_data *md)
{
	return pcre2_match(re, s, n, 0, PCRE2_ANCHORED, md, NULL) >= 0;
}

/* Asks PCRE2 which classes cp is in.  Threads may race to fill the same
 * entry; they store the same value, with relaxed atomics. */
static unsigned classify(const pretok *pt, uint32_t cp)
{
	uint8_t s[4];
	size_t n = encode(cp, s);
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	unsigned k = C_KNOWN;
	if (md) {
		k |= matches(pt->re_l, s, n, md) ? C_L : 0;
		k |= matches(pt->re_n, s, n, md) ? C_N : 0;
		k |= matches(pt->re_ws, s, n, md) ? C_WS : 0;
		pcre2_match_data_free(md);
	}
	__atomic_store_n(&pt->cls[cp], (uint8_t)k, __ATOMIC_RELAXED);
	return k;
}

static inline unsigned cls(const pretok *pt, uint32_t cp)
{
	unsigned k = __atomic_load_n(&pt->cls[cp], __ATOMIC_RELAXED);
	return __builtin_expect(k != 0, 1) ? k : classify(pt, cp);
}

/* the class of the character at t[q], 0 when none (end or invalid) */
static inline unsigned cls_at(const pretok *pt, const uint8_t *t, size_t n, size_t q, int *len)
{
	uint32_t cp;
	*len = q < n ? decode(t, n, q, &cp) : 0;
	return *len ? cls(pt, cp) : 0;
}

/* "other": a character that is neither \s nor \p{L} nor \p{N} */
static inline int other(unsigned k)
{
	return k && !(k & (C_L | C_N | C_WS));
}

/* end of the run of characters at q whose class has a bit of mask */
static size_t run(const pretok *pt, const uint8_t *t, size_t n, size_t q, unsigned mask)
{
	int l;
	while (cls_at(pt, t, n, q, &l) & mask)
		q += (size_t)l;
	return q;
}

/* end of the run of "other" characters at q */
static size_t run_other(const pretok *pt, const uint8_t *t, size_t n, size_t q)
{
	int l;
	while (other(cls_at(pt, t, n, q, &l)))
		q += (size_t)l;
	return q;
}

/* 's 't 're 've 'm 'll 'd after the apostrophe at q - 1: the end, or 0.
 * caseless: cl100k's (?i:...), where U+017F (long s) folds to s too. */
static size_t contraction(const uint8_t *t, size_t n, size_t q, int caseless)
{
	if (q >= n)
		return 0;
	int a = t[q], b = q + 1 < n ? t[q + 1] : 0;
	if (caseless) {
		if (a == 0xC5 && b == 0xBF)
			return q + 2;
		a |= a >= 'A' && a <= 'Z' ? 0x20 : 0;
		b |= b >= 'A' && b <= 'Z' ? 0x20 : 0;
	}
	if (a == 's' || a == 't' || a == 'm' || a == 'd')
		return q + 1;
	if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
		return q + 2;
	return 0;
}

/* The end of the whitespace piece at i, whose run of \s ends at e:
 * cl100k's \s*[\r\n]+ (through the last newline of the run), then, both
 * patterns, \s+(?!\S) (the run, less its last character when a non-space
 * follows and the run has more than one) and \s+. */
static size_t spaces(const uint8_t *t, size_t n, size_t i, size_t e, int newlines, int valid_after)
{
	if (newlines)
		for (size_t q = e; q > i; q--)
			if (t[q - 1] == '\r' || t[q - 1] == '\n')
				return q;
	if (e == n || !valid_after)
		return e; /* end or invalid UTF-8: (?!\S) holds */
	size_t last = e - 1;
	while ((t[last] & 0xC0) == 0x80)
		last--; /* start of the run's last character */
	return last > i ? last : e;
}

/* ---------------------------------------------------------------------- */
/* the two patterns */

/* cl100k_base: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|
 * \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t cl100k(const pretok *pt, const uint8_t *t, size_t n, size_t i, uint32_t c0, int l0,
		     unsigned k0)
{
	size_t j = i + (size_t)l0, e;
	if (c0 == '\'' && (e = contraction(t, n, j, 1)))
		return e;
	if (k0 & C_L)
		return run(pt, t, n, j, C_L);
	int l1;
	unsigned k1 = cls_at(pt, t, n, j, &l1);
	if (!(k0 & C_N) && c0 != '\r' && c0 != '\n' && (k1 & C_L))
		return run(pt, t, n, j + (size_t)l1, C_L);
	if (k0 & C_N) {
		if (k1 & C_N) {
			j += (size_t)l1;
			int l2;
			if (cls_at(pt, t, n, j, &l2) & C_N)
				j += (size_t)l2;
		}
		return j;
	}
	if (other(k0) || (c0 == ' ' && other(k1))) {
		e = run_other(pt, t, n, other(k0) ? j : j + (size_t)l1);
		while (e < n && (t[e] == '\r' || t[e] == '\n'))
			e++;
		return e;
	}
	/* k0 is \s */
	e = run(pt, t, n, j, C_WS);
	int le;
	return spaces(t, n, i, e, 1, e < n && cls_at(pt, t, n, e, &le));
}

/* gpt2 / r50k_base: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
 * ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t gpt2(const pretok *pt, const uint8_t *t, size_t n, size_t i, uint32_t c0, int l0,
		   unsigned k0)
{
	size_t j = i + (size_t)l0, e;
	if (c0 == '\'' && (e = contraction(t, n, j, 0)))
		return e;
	unsigned k = k0;
	if (c0 == ' ') {
		int l1;
		unsigned k1 = cls_at(pt, t, n, j, &l1);
		if (k1 & (C_L | C_N) || other(k1)) {
			k = k1; /* the optional space, then this */
			j += (size_t)l1;
		}
	}
	if (k & C_L)
		return run(pt, t, n, j, C_L);
	if (k & C_N)
		return run(pt, t, n, j, C_N);
	if (other(k))
		return run_other(pt, t, n, j);
	e = run(pt, t, n, j, C_WS);
	int le;
	return spaces(t, n, i, e, 0, e < n && cls_at(pt, t, n, e, &le));
}

size_t pretok_next(const pretok *pt, const uint8_t *t, size_t n, size_t pos, size_t *start)
{
	uint32_t c0 = 0;
	int l0 = 0;
	while (pos < n && !(l0 = decode(t, n, pos, &c0)))
		pos++; /* invalid UTF-8: no match starts here */
	*start = pos;
	if (pos >= n)
		return n;
	unsigned k0 = cls(pt, c0);
	return pt->kind == CL100K ? cl100k(pt, t, n, pos, c0, l0, k0) : gpt2(pt, t, n, pos, c0, l0, k0);
}

/* ---------------------------------------------------------------------- */

pretok *pretok_new(const char *pattern)
{
	int kind;
	if (pattern && !strcmp(pattern, bpe_pattern("gpt2")))
		kind = GPT2;
	else if (pattern && !strcmp(pattern, bpe_pattern("cl100k_base")))
		kind = CL100K;
	else
		return NULL;
	mvl_err err;
	pretok *pt = calloc(1, sizeof *pt);
	if (!pt)
		return NULL;
	pt->kind = kind;
	pt->re_l = bpe_compile_pattern("\\p{L}", &err);
	pt->re_n = bpe_compile_pattern("\\p{N}", &err);
	pt->re_ws = bpe_compile_pattern("\\s", &err);
	pt->cls = calloc(0x110000, 1); /* untouched pages stay unmapped */
	if (!pt->re_l || !pt->re_n || !pt->re_ws || !pt->cls) {
		pretok_free(pt);
		return NULL; /* the caller keeps the regex */
	}
	for (uint32_t cp = 0; cp < 0x80; cp++)
		classify(pt, cp);
	return pt;
}

void pretok_free(pretok *pt)
{
	if (!pt)
		return;
	pcre2_code_free(pt->re_l);
	pcre2_code_free(pt->re_n);
	pcre2_code_free(pt->re_ws);
	free(pt->cls);
	free(pt);
}
