/* text.c: word segmentation (ASCII fast path, ICU otherwise). */
#include "text.h"

#include <stdlib.h>
#include <string.h>
#include <unicode/ubrk.h>
#include <unicode/utypes.h>

#include "util.h"

struct text_ctx {
	UBreakIterator *brk;
	uint16_t *u16;
	uint32_t *map;
	size_t cap16;
	word_span *w;
	size_t capw;
};

text_ctx *text_ctx_new(void)
{
	text_ctx *t = xcalloc(1, sizeof *t);
	UErrorCode st = U_ZERO_ERROR;
	t->brk = ubrk_open(UBRK_WORD, "", NULL, 0, &st);
	if (U_FAILURE(st))
		t->brk = NULL; /* ICU data missing: fall back to whitespace words */
	return t;
}

void text_ctx_free(text_ctx *t)
{
	if (!t)
		return;
	if (t->brk)
		ubrk_close(t->brk);
	free(t->u16);
	free(t->map);
	free(t->w);
	free(t);
}

int text_is_ascii(const char *s, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		memcpy(&w, s + i, 8);
		if (w & 0x8080808080808080ull)
			return 0;
	}
	for (; i < n; i++)
		if ((unsigned char)s[i] & 0x80)
			return 0;
	return 1;
}

uint32_t utf8_next(const char *s, size_t n, size_t *i)
{
	const unsigned char *p = (const unsigned char *)s + *i;
	size_t left = n - *i;
	unsigned c = p[0];
	if (c < 0x80) {
		(*i)++;
		return c;
	}
	uint32_t cp;
	size_t k;
	if (c >= 0xC2 && c <= 0xDF) {
		k = 2;
		cp = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		k = 3;
		cp = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		k = 4;
		cp = c & 0x07;
	} else {
		(*i)++;
		return 0xFFFD;
	}
	if (left < k) {
		(*i)++;
		return 0xFFFD;
	}
	for (size_t j = 1; j < k; j++) {
		if ((p[j] & 0xC0) != 0x80) {
			(*i)++;
			return 0xFFFD;
		}
		cp = cp << 6 | (p[j] & 0x3F);
	}
	/* overlongs, surrogates, above U+10FFFF */
	if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
	    (cp >= 0xD800 && cp <= 0xDFFF)) {
		(*i)++;
		return 0xFFFD;
	}
	*i += k;
	return cp;
}

void utf8_put(uint32_t c, char **out)
{
	unsigned char *o = (unsigned char *)*out;
	if (c < 0x80) {
		*o++ = (unsigned char)c;
	} else if (c < 0x800) {
		*o++ = (unsigned char)(0xC0 | c >> 6);
		*o++ = (unsigned char)(0x80 | (c & 0x3F));
	} else if (c < 0x10000) {
		*o++ = (unsigned char)(0xE0 | c >> 12);
		*o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
		*o++ = (unsigned char)(0x80 | (c & 0x3F));
	} else {
		*o++ = (unsigned char)(0xF0 | c >> 18);
		*o++ = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
		*o++ = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
		*o++ = (unsigned char)(0x80 | (c & 0x3F));
	}
	*out = (char *)o;
}

uint16_t *text_to_utf16(text_ctx *t, const char *s, size_t n, int32_t *len16,
			const uint32_t **map)
{
	if (t->cap16 < 2 * n + 2) {
		t->cap16 = 2 * n + 2;
		t->u16 = xrealloc(t->u16, t->cap16 * sizeof *t->u16);
		t->map = xrealloc(t->map, t->cap16 * sizeof *t->map);
	}
	size_t i = 0, k = 0;
	while (i < n) {
		size_t at = i;
		uint32_t c = utf8_next(s, n, &i);
		if (c >= 0x10000) {
			c -= 0x10000;
			t->map[k] = (uint32_t)at;
			t->u16[k++] = (uint16_t)(0xD800 | (c >> 10));
			t->map[k] = (uint32_t)at;
			t->u16[k++] = (uint16_t)(0xDC00 | (c & 0x3FF));
		} else {
			t->map[k] = (uint32_t)at;
			t->u16[k++] = (uint16_t)c;
		}
	}
	t->map[k] = (uint32_t)n;
	*len16 = (int32_t)k;
	if (map)
		*map = t->map;
	return t->u16;
}

static word_span *push_word(text_ctx *t, size_t *nw, uint32_t off, uint32_t len)
{
	if (*nw == t->capw) {
		t->capw = t->capw ? t->capw * 2 : 64;
		t->w = xrealloc(t->w, t->capw * sizeof *t->w);
	}
	t->w[*nw].off = off;
	t->w[*nw].len = len;
	return &t->w[(*nw)++];
}

static int is_ws(unsigned char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static size_t words(text_ctx *t, const char *s, size_t n, const word_span **out, int icu)
{
	size_t nw = 0;
	if ((!icu && text_is_ascii(s, n)) || !t->brk) {
		/* whitespace is ' ' and \t..\r: one compare for the common case */
		size_t i = 0;
		while (i < n) {
			while (i < n && (unsigned char)s[i] <= ' ' && is_ws((unsigned char)s[i]))
				i++;
			size_t a = i;
			while (i < n && ((unsigned char)s[i] > ' ' || !is_ws((unsigned char)s[i])))
				i++;
			if (i > a)
				push_word(t, &nw, (uint32_t)a, (uint32_t)(i - a));
		}
		*out = t->w;
		return nw;
	}
	int32_t n16;
	const uint32_t *map;
	uint16_t *u = text_to_utf16(t, s, n, &n16, &map);
	UErrorCode st = U_ZERO_ERROR;
	ubrk_setText(t->brk, (const UChar *)u, n16, &st);
	if (U_FAILURE(st)) {
		*out = t->w;
		return 0;
	}
	int32_t a = ubrk_first(t->brk);
	for (int32_t b = ubrk_next(t->brk); b != UBRK_DONE; a = b, b = ubrk_next(t->brk)) {
		/* rule status >= UBRK_WORD_NONE_LIMIT: number, letter, kana, ideo */
		if (ubrk_getRuleStatus(t->brk) >= UBRK_WORD_NONE_LIMIT)
			push_word(t, &nw, map[a], map[b] - map[a]);
	}
	*out = t->w;
	return nw;
}

size_t text_words(text_ctx *t, const char *s, size_t n, const word_span **out)
{
	return words(t, s, n, out, 0);
}

size_t text_words_icu(text_ctx *t, const char *s, size_t n, const word_span **out)
{
	return words(t, s, n, out, 1);
}

size_t text_count_words(text_ctx *t, const char *s, size_t n, size_t limit)
{
	if (!limit || !text_is_ascii(s, n)) {
		const word_span *w;
		size_t nw = words(t, s, n, &w, 0);
		return limit && nw > limit ? limit : nw;
	}
	size_t nw = 0, i = 0;
	while (i < n && nw < limit) {
		while (i < n && (unsigned char)s[i] <= ' ' && is_ws((unsigned char)s[i]))
			i++;
		if (i == n)
			break;
		nw++;
		while (i < n && ((unsigned char)s[i] > ' ' || !is_ws((unsigned char)s[i])))
			i++;
	}
	return nw;
}
