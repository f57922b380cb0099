/* test_pretok.c: the hand-written gpt2 / cl100k scanners against PCRE2 on
 * the same patterns, piece boundary for piece boundary, on random text
 * drawn from the characters where the patterns' alternatives fight:
 * apostrophes and contractions (with long s), letters of several scripts
 * and of Unicode 16, digits of several scripts, every kind of White_Space,
 * marks, symbols, emoji, CR/LF, and invalid UTF-8 of every kind. */
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "check.h"
#include "pretok.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

static const char *alphabet[] = {
	"a", "b", "Z", "s", "S", "t", "T", "re", "RE", "vE", "ll", "Ll", "m", "d", "D", "x",
	"'", "'", "'", "\xC5\xBF" /* long s */, "0", "7", "12345", " ", " ", " ", "  ", "\t",
	"\r", "\n", "\r\n", "\x0B", "\x0C", "\xC2\x85" /* NEL */, "\xC2\xA0" /* NBSP */,
	"\xE3\x80\x80" /* ideographic space */, "\xE2\x80\xA8", "\xE2\x80\x8B" /* ZWSP: not \s */,
	"!", "?", ".", ",", "(", ")", "-", "/", "\"", "_", "#", "\xC3\xA9", "\xC3\x89",
	"\xD0\xB4\xD0\xB0" /* Cyrillic */, "\xE4\xB8\xAD\xE6\x96\x87" /* CJK */,
	"\xD9\xA3" /* Arabic-Indic 3 */, "\xEF\xBC\x91" /* fullwidth 1 */, "\xC2\xB2" /* superscript 2 */,
	"\xE2\x85\xA0" /* Roman numeral: Nl */, "\xCC\x81" /* combining acute: Mn */,
	"\xE0\xA4\xBF" /* Devanagari vowel sign: Mc */, "\xE2\x82\xAC", "\xF0\x9F\x98\x80",
	"\xE2\x80\x8D" /* ZWJ */, "\xF0\x9F\x8F\xBD" /* skin tone */,
	"\xE1\xB2\x89" /* U+1C89, a Unicode 16 letter */, "\xF0\x90\xB5\x80" /* U+10D40, a Unicode 16 digit */,
	"\x80", "\xC3", "\xE4\xB8", "\xED\xA0\x80" /* surrogate */, "\xC0\x80" /* overlong */,
	"\xE0\x80\x80", "\xF4\x90\x80\x80" /* > U+10FFFF */, "\xF0\x9F\x98" /* truncated */, "\xFF",
	"\x00",
};
enum { NALPHA = sizeof alphabet / sizeof alphabet[0] };

/* pieces as boundaries, PCRE2's way (bpe_encode_ordinary's regex loop) */
static size_t regex_cuts(pcre2_code *re, pcre2_match_data *md, const char *t, size_t n, size_t *cut)
{
	size_t k = 0, pos = 0;
	while (pos < n) {
		int rc = pcre2_match(re, (PCRE2_SPTR)t, n, pos, 0, md, NULL);
		size_t s = n, e = n;
		if (rc >= 0) {
			s = pcre2_get_ovector_pointer(md)[0];
			e = pcre2_get_ovector_pointer(md)[1];
		}
		if (s > pos)
			cut[k++] = s;
		if (e == s && rc >= 0 && e < n)
			e = s + 1;
		if (e > s)
			cut[k++] = e;
		pos = e;
	}
	return k;
}

static size_t scan_cuts(const pretok *pt, const char *t, size_t n, size_t *cut)
{
	size_t k = 0, pos = 0;
	while (pos < n) {
		size_t s, e = pretok_next(pt, (const uint8_t *)t, n, pos, &s);
		if (s > pos)
			cut[k++] = s;
		if (e > s)
			cut[k++] = e;
		if (e <= pos)
			break; /* no progress: a bug, reported below as a mismatch */
		pos = e;
	}
	return k;
}

static void show(const char *t, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 5 < cap; i++)
		o += (size_t)snprintf(out + o, cap - o, (unsigned char)t[i] < 0x20 || (unsigned char)t[i] >= 0x7F ? "\\x%02X" : "%c",
				      (unsigned char)t[i]);
	out[o] = 0;
}

static void differential(const char *enc, unsigned seed, int rounds)
{
	mvl_err err;
	pcre2_code *re = bpe_compile_pattern(bpe_pattern(enc), &err);
	pretok *pt = pretok_new(bpe_pattern(enc));
	char name[96];
	snprintf(name, sizeof name, "pretok %s: a scanner exists", enc);
	CHECK(re && pt, name);
	if (!re || !pt)
		return;
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
	char t[512];
	size_t a[600], b[600];
	int bad = 0;
	char where[1024] = "";
	srand(seed);
	for (int r = 0; r < rounds && !bad; r++) {
		size_t n = 0;
		int parts = rand() % 24;
		for (int p = 0; p < parts; p++) {
			const char *s = alphabet[rand() % NALPHA];
			size_t l = *s ? strlen(s) : 1; /* "\x00" is one NUL byte */
			memcpy(t + n, s, l);
			n += l;
		}
		size_t na = regex_cuts(re, md, t, n, a), nb = scan_cuts(pt, t, n, b);
		if (na != nb || memcmp(a, b, na * sizeof *a)) {
			bad = 1;
			char txt[600];
			show(t, n, txt, sizeof txt);
			size_t k = 0;
			while (k < na && k < nb && a[k] == b[k])
				k++;
			snprintf(where, sizeof where, "round %d, text \"%s\": first differing cut #%zu: regex %zd, scanner %zd",
				 r, txt, k, k < na ? (ssize_t)a[k] : -1, k < nb ? (ssize_t)b[k] : -1);
		}
	}
	snprintf(name, sizeof name, "pretok %s: same pieces as PCRE2 on %d random texts", enc, rounds);
	CHECKF(!bad, name, "%s", where);
	pcre2_match_data_free(md);
	pcre2_code_free(re);
	pretok_free(pt);
}

/* whole-text cases worth naming */
static void named(const char *enc, const char *text, const char *want)
{
	pretok *pt = pretok_new(bpe_pattern(enc));
	size_t n = strlen(text), pos = 0;
	char got[256] = "";
	size_t o = 0;
	while (pt && pos < n) {
		size_t s, e = pretok_next(pt, (const uint8_t *)text, n, pos, &s);
		o += (size_t)snprintf(got + o, sizeof got - o, "%s%.*s", o ? "|" : "", (int)(e - s), text + s);
		pos = e;
	}
	char name[128];
	snprintf(name, sizeof name, "pretok %s: '%s'", enc, want);
	CHECKF(pt && !strcmp(got, want), name, "got '%s'", got);
	pretok_free(pt);
}

int main(void)
{
	differential("cl100k_base", 1, 200000);
	differential("gpt2", 2, 200000);
	CHECK(pretok_new(bpe_pattern("o200k_base")) == NULL, "pretok: o200k_base keeps the regex");
	CHECK(pretok_new("\\w+") == NULL, "pretok: an unknown pattern keeps the regex");
	named("cl100k_base", "Hello world's  end\n\n 12345!!\r\n", "Hello| world|'s| | end|\n\n| |123|45|!!\r\n");
	named("gpt2", "Hello world's  end\n\n 12345!!\r\n", "Hello| world|'s| | end|\n\n| 12345|!!|\r\n");
	named("cl100k_base", "I'LL DON'T", "I|'LL| DON|'T");
	named("gpt2", "I'LL DON'T", "I|'|LL| DON|'|T");
	return check_done();
}
