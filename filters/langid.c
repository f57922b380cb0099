/* langid.c: language identification of short texts, on CLD2 (through the
 * C++ shim langid_cld2.cc).  Why CLD2 and not libexttextcat: see the
 * measured table in scripts/eval_langid.c. */
#include "langid.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct langid {
	unsigned char *buf; /* the sanitized copy of the text */
	size_t cap;
};

/* CLD2 allocates about 175 KB of scratch per call (new[] 40960 + 61440 +
 * 16384, new 56472) and frees it on return.  With glibc's initial
 * M_TRIM_THRESHOLD (128 KiB) every free hands that memory back to the
 * kernel (brk) and every call faults it in again: 3 page faults and 4 brk
 * calls per langid_detect(), 8x slower (55k instead of 470k captions/s).
 * glibc raises the trim threshold to twice the size of any mmap()ed block
 * that is freed (the dynamic mmap threshold of mallopt(3)); freeing one
 * 1 MiB block once does that, keeps glibc's own heuristics (an explicit
 * mallopt() would switch them off for the whole process), and costs a
 * process at most 2 MiB of heap kept. */
static void keep_cld2_scratch(void)
{
	static atomic_int done;
	if (atomic_exchange(&done, 1))
		return;
	void *volatile p = malloc(1 << 20); /* volatile: not elided */
	free(p);
}

langid *langid_new(mvl_err *err)
{
	keep_cld2_scratch();
	langid *l = calloc(1, sizeof *l);
	if (!l) {
		mvl_errf(err, "langid: out of memory");
		return NULL;
	}
	l->cap = LANGID_MAX_BYTES + 4;
	l->buf = malloc(l->cap);
	if (!l->buf) {
		free(l);
		mvl_errf(err, "langid: out of memory");
		return NULL;
	}
	return l;
}

void langid_free(langid *l)
{
	if (!l)
		return;
	free(l->buf);
	free(l);
}

const char *langid_backend(void)
{
	return "cld2";
}

/* ------------------------------------------------------------ codes */

/* Legacy and Google-specific codes CLD2 returns, with their ISO 639-1. */
static const struct {
	const char *from, *to;
} code_map[] = {
	{"iw", "he"}, /* Hebrew */
	{"jw", "jv"}, /* Javanese */
	{"in", "id"}, /* Indonesian (old code) */
	{"ji", "yi"}, /* Yiddish (old code) */
	{"mo", "ro"}, /* Moldavian */
};

void langid_normalize(const char *raw, char code[8])
{
	size_t n = 0;
	strcpy(code, "und");
	if (!raw)
		return;
	/* the language subtag: "zh-Hant" -> "zh", "sr-ME" -> "sr",
	 * "en--utf8" -> "en", "xx-Latn" -> "xx" */
	while (raw[n] && raw[n] != '-' && raw[n] != '_')
		n++;
	if (n < 2 || n > 3)
		return;
	char c[4];
	for (size_t i = 0; i < n; i++) {
		char ch = raw[i];
		if (ch >= 'A' && ch <= 'Z')
			ch = (char)(ch - 'A' + 'a');
		if (ch < 'a' || ch > 'z')
			return;
		c[i] = ch;
	}
	c[n] = 0;
	/* CLD2's unknown, "Ignore", script-only and joke languages */
	if (!strcmp(c, "un") || !strcmp(c, "xx") || !strcmp(c, "xxx") ||
	    !strcmp(c, "tlh") || !strcmp(c, "und") ||
	    (n == 3 && c[0] == 'z' && c[1] == 'z'))
		return;
	for (size_t i = 0; i < sizeof code_map / sizeof code_map[0]; i++)
		if (!strcmp(c, code_map[i].from)) {
			strcpy(code, code_map[i].to);
			return;
		}
	memcpy(code, c, n + 1);
}

/* ------------------------------------------------------------ text */

/* Length of the well-formed UTF-8 sequence at s[0..n) and its code point,
 * or 0 when the bytes there are not one (overlong, surrogate, > U+10FFFF,
 * truncated). */
static size_t utf8_seq(const unsigned char *s, size_t n, unsigned *cp)
{
	unsigned c = s[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	size_t len;
	unsigned min;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2, min = 0x80, c &= 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3, min = 0x800, c &= 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4, min = 0x10000, c &= 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3F);
	}
	if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return len;
}

/* Code points CLD2 does not accept as "interchange-valid" UTF-8: controls
 * (C0 but tab/newline/return, DEL, C1) and noncharacters. */
static int not_interchange(unsigned cp)
{
	if (cp < 0x20)
		return cp != '\t' && cp != '\n' && cp != '\r';
	if (cp >= 0x7F && cp <= 0x9F)
		return 1;
	if (cp >= 0xFDD0 && cp <= 0xFDEF)
		return 1;
	return (cp & 0xFFFE) == 0xFFFE;
}

/* Copies at most LANGID_MAX_BYTES of text into l->buf (never cutting a
 * character), each invalid byte or non-interchange character as a space.
 * @return the length of the copy. */
static size_t sanitize(langid *l, const unsigned char *s, size_t n)
{
	size_t i = 0, o = 0;
	while (i < n) {
		unsigned cp;
		size_t k = utf8_seq(s + i, n - i, &cp);
		if (k == 0) { /* one invalid byte */
			if (o + 1 > LANGID_MAX_BYTES)
				break;
			l->buf[o++] = ' ';
			i++;
			continue;
		}
		if (o + k > LANGID_MAX_BYTES)
			break;
		if (not_interchange(cp)) {
			l->buf[o++] = ' ';
		} else {
			memcpy(l->buf + o, s + i, k);
			o += k;
		}
		i += k;
	}
	l->buf[o] = 0;
	return o;
}

/* --------------------------------------------------------------- detect */

/* Han and kana code points in s[0..n) (valid UTF-8). */
static void count_cjk(const unsigned char *s, size_t n, size_t *han,
                      size_t *kana)
{
	*han = *kana = 0;
	for (size_t i = 0; i < n;) {
		unsigned cp;
		size_t k = utf8_seq(s + i, n - i, &cp);
		if (k == 0) {
			i++;
			continue;
		}
		if (cp >= 0x3040 && cp <= 0x30FF) /* hiragana, katakana */
			(*kana)++;
		else if ((cp >= 0x4E00 && cp <= 0x9FFF) ||
		         (cp >= 0x3400 && cp <= 0x4DBF) ||
		         (cp >= 0xF900 && cp <= 0xFAFF))
			(*han)++;
		i += k;
	}
}

/* CLD2 on buf[0..m); falls back to the valid prefix should CLD2 refuse
 * something sanitize() let through (a guard: not expected to happen). */
static int cld2(const char *buf, int m, int best_effort, langid_cld2_result *r)
{
	if (langid_cld2_detect(buf, m, best_effort, r) < 0)
		return -1;
	if (r->valid_prefix < m &&
	    langid_cld2_detect(buf, r->valid_prefix, best_effort, r) < 0)
		return -1;
	return 0;
}

int langid_detect(langid *l, const char *text, size_t n, char code[8],
                  double *conf)
{
	if (code)
		strcpy(code, "und");
	if (conf)
		*conf = 0;
	if (!l || !code || !conf || (!text && n))
		return -1;
	int m = (int)sanitize(l, (const unsigned char *)text, n);
	const char *buf = (const char *)l->buf;

	/* First CLD2 as it is, which answers only when it is sure; when it
	 * is not (short text), its best-effort guess, at under half the
	 * confidence (0.45 x): a threshold of 0.5 drops every guess. */
	langid_cld2_result r;
	if (cld2(buf, m, 0, &r) < 0)
		return -1;
	langid_normalize(r.code[0], code);
	int reliable = r.reliable && strcmp(code, "und") != 0;
	if (!reliable) {
		if (cld2(buf, m, 1, &r) < 0)
			return -1;
		langid_normalize(r.code[0], code);
	}
	if (!strcmp(code, "und") || r.text_bytes == 0) {
		strcpy(code, "und");
		return 0;
	}
	/* CLD2 takes some Han-only Chinese for Japanese (5 of 40 captions
	 * in tests/data/lang); Japanese is written with kana, so Han text
	 * without a single kana is Chinese. */
	if (!strcmp(code, "ja")) {
		size_t han, kana;
		count_cjk(l->buf, (size_t)m, &han, &kana);
		if (han > 0 && kana == 0)
			strcpy(code, "zh");
	}
	double c = r.percent[0] / 100.0;
	if (!reliable)
		c *= 0.45;
	*conf = c < 0 ? 0 : c > 1 ? 1 : c;
	return 0;
}
