/* clean.c: the `clean` filter: UTF-8, HTML, URLs and e-mails, Unicode
 * normalization, invisible characters, whitespace, case (filters/README.md).
 *
 * Most web captions are plain ASCII with nothing to clean, so one scan
 * decides whether any step can change the text; only captions that need
 * work reach PCRE2 and ICU. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/ucasemap.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "filter.h"
#include "regex.h"
#include "text.h"

typedef struct clean_conf {
	const char *normalize, *utf8, *urls, *emails, *url_ph, *email_ph;
	int html, whitespace, lower;
} clean_conf;

typedef struct clean_state {
	clean_conf c;
	pcre2_code *block, *tag, *url, *email;
	const UNormalizer2 *norm; /* NULL: none */
	int nfkc;
	int check_urls, check_emails;
} clean_state;

typedef struct clean_tls {
	pcre2_match_data *md;
	UCaseMap *cm;
	text_ctx *tc;
	buf a, b;
	UChar *u16;
	int32_t cap16;
} clean_tls;

#define O(f) offsetof(clean_conf, f)
static const fopt clean_opts[] = {
	{"normalize", OPT_CHOICE, O(normalize), "nfc", "nfc|nfkc|none", "Unicode normalization (ICU)"},
	{"utf8", OPT_CHOICE, O(utf8), "reject", "reject|repair",
	 "invalid UTF-8: drop the sample, or replace bad bytes with U+FFFD"},
	{"html", OPT_INT, O(html), "1", "0|1", "strip HTML tags (not <image>) and decode entities"},
	{"urls", OPT_CHOICE, O(urls), "remove", "remove|placeholder|keep", "URLs"},
	{"emails", OPT_CHOICE, O(emails), "remove", "remove|placeholder|keep", "e-mail addresses"},
	{"url_placeholder", OPT_STR, O(url_ph), "<URL>", "TEXT", "what urls=placeholder writes"},
	{"email_placeholder", OPT_STR, O(email_ph), "<EMAIL>", "TEXT", "what emails=placeholder writes"},
	{"whitespace", OPT_INT, O(whitespace), "1", "0|1", "collapse whitespace runs to one space, trim"},
	{"lower", OPT_INT, O(lower), "0", "0|1", "lower-case (ICU full case mapping)"},
	{0},
};
#undef O

static void clean_close(void *state)
{
	clean_state *s = state;
	if (!s)
		return;
	pcre2_code_free(s->block);
	pcre2_code_free(s->tag);
	pcre2_code_free(s->url);
	pcre2_code_free(s->email);
	free(s);
}

static int clean_open(const void *conf, void **state, mvl_err *err)
{
	clean_state *s = xcalloc(1, sizeof *s);
	s->c = *(const clean_conf *)conf;
	*state = s;
	/* a tag starts with a letter, '/' or '!' (comments, doctype); "<3" and
	 * "a < b" are text, and LLaVA's <image> placeholder is not a tag */
	/* block-level tags separate words ("a<br>b" -> "a b"); inline ones
	 * do not ("<b>this</b>?" -> "this?") */
	if (!(s->block = re_compile("</?(?:br|p|div|li|ul|ol|tr|td|th|table|thead|tbody|h[1-6]|hr|"
				    "section|article|header|footer|nav|aside|blockquote|pre|dd|dt|dl|"
				    "figure|figcaption|caption|title|option|form|main)\\b[^<>]{0,2000}>", 1, err)) ||
	    !(s->tag = re_compile("<(?!image>)[A-Za-z/!][^<>]{0,2000}>", 0, err)) ||
	    !(s->url = re_compile("\\b(?:(?:https?|ftp)://|www\\.)[^\\s<>\"']+", 1, err)) ||
	    !(s->email = re_compile("\\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}\\b", 0, err)))
		return -1;
	s->check_urls = strcmp(s->c.urls, "keep") != 0;
	s->check_emails = strcmp(s->c.emails, "keep") != 0;
	UErrorCode st = U_ZERO_ERROR;
	if (!strcmp(s->c.normalize, "nfc"))
		s->norm = unorm2_getNFCInstance(&st);
	else if (!strcmp(s->c.normalize, "nfkc")) {
		s->norm = unorm2_getNFKCInstance(&st);
		s->nfkc = 1;
	}
	if (U_FAILURE(st))
		return mvl_errf(err, "ICU normalizer unavailable: %s", u_errorName(st));
	if (s->c.html < 0 || s->c.html > 1 || s->c.whitespace < 0 || s->c.whitespace > 1 ||
	    s->c.lower < 0 || s->c.lower > 1)
		return mvl_errf(err, "html, whitespace and lower take 0 or 1");
	return 0;
}

static void *clean_tls_new(const void *state)
{
	const clean_state *s = state;
	clean_tls *t = xcalloc(1, sizeof *t);
	t->md = pcre2_match_data_create_from_pattern(s->url, NULL);
	UErrorCode st = U_ZERO_ERROR;
	t->cm = ucasemap_open("", 0, &st);
	t->tc = text_ctx_new();
	return t;
}

static void clean_tls_free(void *tls)
{
	clean_tls *t = tls;
	pcre2_match_data_free(t->md);
	ucasemap_close(t->cm);
	text_ctx_free(t->tc);
	buf_free(&t->a);
	buf_free(&t->b);
	free(t->u16);
	free(t);
}

/* ---------------------------------------------------------------------- */
/* HTML entities */

static const struct { const char *name; uint32_t cp; } entities[] = {
	{"AElig", 0xC6}, {"Aacute", 0xC1}, {"Acirc", 0xC2}, {"Agrave", 0xC0}, {"Aring", 0xC5},
	{"Atilde", 0xC3}, {"Auml", 0xC4}, {"Ccedil", 0xC7}, {"Eacute", 0xC9}, {"Ecirc", 0xCA},
	{"Egrave", 0xC8}, {"Euml", 0xCB}, {"Iacute", 0xCD}, {"Icirc", 0xCE}, {"Igrave", 0xCC},
	{"Iuml", 0xCF}, {"Ntilde", 0xD1}, {"Oacute", 0xD3}, {"Ocirc", 0xD4}, {"Ograve", 0xD2},
	{"Oslash", 0xD8}, {"Otilde", 0xD5}, {"Ouml", 0xD6}, {"Uacute", 0xDA}, {"Ucirc", 0xDB},
	{"Ugrave", 0xD9}, {"Uuml", 0xDC}, {"Yacute", 0xDD}, {"aacute", 0xE1}, {"acirc", 0xE2},
	{"acute", 0xB4}, {"aelig", 0xE6}, {"agrave", 0xE0}, {"amp", '&'}, {"apos", '\''},
	{"aring", 0xE5}, {"atilde", 0xE3}, {"auml", 0xE4}, {"bdquo", 0x201E}, {"brvbar", 0xA6},
	{"bull", 0x2022}, {"ccedil", 0xE7}, {"cedil", 0xB8}, {"cent", 0xA2}, {"copy", 0xA9},
	{"curren", 0xA4}, {"dagger", 0x2020}, {"deg", 0xB0}, {"divide", 0xF7}, {"eacute", 0xE9},
	{"ecirc", 0xEA}, {"egrave", 0xE8}, {"eth", 0xF0}, {"euml", 0xEB}, {"euro", 0x20AC},
	{"frac12", 0xBD}, {"frac14", 0xBC}, {"frac34", 0xBE}, {"gt", '>'}, {"hellip", 0x2026},
	{"iacute", 0xED}, {"icirc", 0xEE}, {"iexcl", 0xA1}, {"igrave", 0xEC}, {"iquest", 0xBF},
	{"iuml", 0xEF}, {"laquo", 0xAB}, {"ldquo", 0x201C}, {"lsaquo", 0x2039}, {"lsquo", 0x2018},
	{"lt", '<'}, {"macr", 0xAF}, {"mdash", 0x2014}, {"micro", 0xB5}, {"middot", 0xB7},
	{"nbsp", 0xA0}, {"ndash", 0x2013}, {"not", 0xAC}, {"ntilde", 0xF1}, {"oacute", 0xF3},
	{"ocirc", 0xF4}, {"ograve", 0xF2}, {"ordf", 0xAA}, {"ordm", 0xBA}, {"oslash", 0xF8},
	{"otilde", 0xF5}, {"ouml", 0xF6}, {"para", 0xB6}, {"permil", 0x2030}, {"plusmn", 0xB1},
	{"pound", 0xA3}, {"quot", '"'}, {"raquo", 0xBB}, {"rdquo", 0x201D}, {"reg", 0xAE},
	{"rsaquo", 0x203A}, {"rsquo", 0x2019}, {"sbquo", 0x201A}, {"sect", 0xA7}, {"shy", 0xAD},
	{"sup1", 0xB9}, {"sup2", 0xB2}, {"sup3", 0xB3}, {"szlig", 0xDF}, {"thorn", 0xFE},
	{"times", 0xD7}, {"trade", 0x2122}, {"uacute", 0xFA}, {"ucirc", 0xFB}, {"ugrave", 0xF9},
	{"uml", 0xA8}, {"uuml", 0xFC}, {"yacute", 0xFD}, {"yen", 0xA5}, {"yuml", 0xFF},
};

static int ent_cmp(const void *k, const void *e)
{
	return strcmp(k, *(const char *const *)e);
}

/* Decodes &name; &#NNN; &#xHH; (one level: "&amp;lt;" gives "&lt;"). */
static void decode_entities(const char *s, size_t n, buf *out)
{
	out->len = 0;
	buf_reserve(out, n + 1);
	for (size_t i = 0; i < n;) {
		if (s[i] != '&') {
			const char *amp = memchr(s + i, '&', n - i);
			size_t run = amp ? (size_t)(amp - (s + i)) : n - i;
			buf_append(out, s + i, run);
			i += run;
			continue;
		}
		size_t j = i + 1;
		while (j < n && j - i <= 10 && s[j] != ';' && s[j] != '&' && s[j] != ' ')
			j++;
		uint32_t cp = 0;
		int ok = 0;
		if (j < n && s[j] == ';' && j > i + 1) {
			char name[16];
			size_t len = j - i - 1;
			memcpy(name, s + i + 1, len);
			name[len] = 0;
			if (name[0] == '#') {
				char *end;
				unsigned long v = (name[1] == 'x' || name[1] == 'X')
							  ? strtoul(name + 2, &end, 16)
							  : strtoul(name + 1, &end, 10);
				if (*end == 0 && end != name + 1 && end != name + 2) {
					ok = 1;
					cp = (v == 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) ? 0xFFFD
														 : (uint32_t)v;
				}
			} else {
				const void *e = bsearch(name, entities, sizeof entities / sizeof entities[0],
							sizeof entities[0], ent_cmp);
				if (e) {
					ok = 1;
					cp = ((const __typeof__(entities[0]) *)e)->cp;
				}
			}
		}
		if (!ok) {
			buf_append(out, "&", 1);
			i++;
			continue;
		}
		char tmp[4], *p = tmp;
		utf8_put(cp, &p);
		buf_append(out, tmp, (size_t)(p - tmp));
		i = j + 1;
	}
}

/* ---------------------------------------------------------------------- */
/* the steps */

/* Characters dropped as invisible: see filters/README.md for why ZWJ and
 * ZWNJ stay. */
static int invisible(uint32_t c)
{
	return c == 0x200B || c == 0x2060 || c == 0xFEFF || c == 0xAD || c == 0x200E ||
	       c == 0x200F || (c >= 0x202A && c <= 0x202E) || c == 0x2061 || c == 0x2062 ||
	       c == 0x2063 || c == 0x2064;
}

static int white(uint32_t c)
{
	return c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
	       (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
	       c == 0x205F || c == 0x3000;
}

/* Controls and invisibles out, whitespace collapsed and trimmed. */
static void tidy(const clean_state *st, const char *s, size_t n, buf *out)
{
	out->len = 0;
	buf_reserve(out, n + 1);
	char *o = (char *)out->data;
	int pending = 0;
	for (size_t i = 0; i < n;) {
		uint32_t c = utf8_next(s, n, &i);
		if (white(c)) {
			if (!st->c.whitespace) {
				if (c == '\t' || c == '\n' || c == ' ' || c >= 0x80)
					utf8_put(c, &o);
				/* other ASCII controls are controls: dropped */
				continue;
			}
			pending = 1;
			continue;
		}
		if (c < 0x20 || (c >= 0x7F && c <= 0x9F) || invisible(c))
			continue;
		if (pending && o != (char *)out->data)
			*o++ = ' ';
		pending = 0;
		utf8_put(c, &o);
	}
	out->len = (size_t)(o - (char *)out->data);
	out->data[out->len] = 0;
}

/* Bytes below 0x20 or from 0x7F up, in 8 at a time (the classic
 * has-less-than bit trick: a borrow reaches bit 7 only for bytes < 0x20). */
static int has_special_byte(const unsigned char *p, size_t n)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t x;
		memcpy(&x, p + i, 8);
		uint64_t lt20 = (x - ones * 0x20) & ~x & highs;
		uint64_t del = ((x ^ (ones * 0x7F)) - ones) & ~(x ^ (ones * 0x7F)) & highs;
		if ((x & highs) | lt20 | del)
			return 1;
	}
	for (; i < n; i++)
		if (p[i] < 0x20 || p[i] >= 0x7F)
			return 1;
	return 0;
}

/* Two spaces in a row, 8 bytes at a time: an exact per-byte "is a space"
 * mask, and-ed with itself shifted by one byte. */
static int has_double_space(const unsigned char *p, size_t n)
{
	const uint64_t lo7 = 0x7F7F7F7F7F7F7F7Full, spaces = 0x2020202020202020ull;
	uint64_t carry = 0; /* the previous word's last byte was a space */
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t x;
		memcpy(&x, p + i, 8);
		uint64_t y = x ^ spaces;
		uint64_t sp = ~(((y & lo7) + lo7) | y) & ~lo7; /* 0x80 where a space */
		if ((sp & (sp << 8)) || (carry && (sp & 0x80)))
			return 1;
		carry = sp >> 63;
	}
	for (; i < n; i++) {
		if (p[i] == ' ' && (carry || (i + 1 < n && p[i + 1] == ' ')))
			return 1;
		carry = p[i] == ' ';
	}
	return 0;
}

/* Does the text need anything beyond being copied?  A handful of
 * vectorized scans (memchr, memmem); most alt-texts are answered "no"
 * here and cost nothing more. */
static int needs_work(const clean_state *st, const char *s, size_t n)
{
	if (n == 0)
		return 0;
	if (s[0] == ' ' || s[n - 1] == ' ')
		return 1;
	const unsigned char *p = (const unsigned char *)s;
	if (has_special_byte(p, n))
		return 1;
	if (st->c.html && (memchr(s, '<', n) || memchr(s, '&', n)))
		return 1;
	if (st->check_emails && memchr(s, '@', n))
		return 1;
	if (has_double_space(p, n))
		return 1;
	if (st->check_urls) {
		for (const char *c = memchr(s, ':', n); c; c = memchr(c + 1, ':', (size_t)(s + n - c - 1)))
			if (s + n - c >= 3 && c[1] == '/' && c[2] == '/')
				return 1;
		for (const char *d = memchr(s, '.', n); d; d = memchr(d + 1, '.', (size_t)(s + n - d - 1)))
			if (d - s >= 3 && (d[-1] | 0x20) == 'w' && (d[-2] | 0x20) == 'w' && (d[-3] | 0x20) == 'w')
				return 1;
	}
	if (st->c.lower)
		for (size_t i = 0; i < n; i++)
			if (p[i] >= 'A' && p[i] <= 'Z')
				return 1;
	return 0;
}

static int has_url_hint(const char *s, size_t n)
{
	for (size_t i = 0; i + 3 < n + 1 && i < n; i++) {
		if (s[i] == ':' && i + 2 < n && s[i + 1] == '/' && s[i + 2] == '/')
			return 1;
		if ((s[i] | 0x20) == 'w' && i + 3 < n && (s[i + 1] | 0x20) == 'w' &&
		    (s[i + 2] | 0x20) == 'w' && s[i + 3] == '.')
			return 1;
	}
	return 0;
}

static uint32_t max_cp_below(const char *s, size_t n)
{
	uint32_t m = 0;
	for (size_t i = 0; i < n;) {
		uint32_t c = utf8_next(s, n, &i);
		if (c > m)
			m = c;
	}
	return m;
}

/* ICU normalization through UTF-16. */
static void normalize(const clean_state *st, clean_tls *t, const char *s, size_t n, buf *out)
{
	UErrorCode e = U_ZERO_ERROR;
	int32_t n16;
	uint16_t *u = text_to_utf16(t->tc, s, n, &n16, NULL);
	if (unorm2_quickCheck(st->norm, (const UChar *)u, n16, &e) == UNORM_YES && U_SUCCESS(e)) {
		out->len = 0;
		buf_append(out, s, n);
		return;
	}
	e = U_ZERO_ERROR;
	int32_t need = unorm2_normalize(st->norm, (const UChar *)u, n16, t->u16, t->cap16, &e);
	if (e == U_BUFFER_OVERFLOW_ERROR || need > t->cap16) {
		t->cap16 = need + 16;
		t->u16 = xrealloc(t->u16, (size_t)t->cap16 * sizeof(UChar));
		e = U_ZERO_ERROR;
		need = unorm2_normalize(st->norm, (const UChar *)u, n16, t->u16, t->cap16, &e);
	}
	if (U_FAILURE(e)) {
		out->len = 0;
		buf_append(out, s, n);
		return;
	}
	int32_t n8 = 0;
	e = U_ZERO_ERROR;
	u_strToUTF8(NULL, 0, &n8, t->u16, need, &e);
	out->len = 0;
	buf_reserve(out, (size_t)n8 + 1);
	e = U_ZERO_ERROR;
	u_strToUTF8((char *)out->data, n8 + 1, &n8, t->u16, need, &e);
	out->len = (size_t)n8;
	out->data[out->len] = 0;
}

static void lower(clean_tls *t, const char *s, size_t n, buf *out)
{
	UErrorCode e = U_ZERO_ERROR;
	out->len = 0;
	buf_reserve(out, n + 16);
	int32_t need = ucasemap_utf8ToLower(t->cm, (char *)out->data, (int32_t)out->cap, s, (int32_t)n, &e);
	if (e == U_BUFFER_OVERFLOW_ERROR || (size_t)need >= out->cap) {
		buf_reserve(out, (size_t)need + 16);
		e = U_ZERO_ERROR;
		need = ucasemap_utf8ToLower(t->cm, (char *)out->data, (int32_t)out->cap, s, (int32_t)n, &e);
	}
	if (U_FAILURE(e)) {
		out->len = 0;
		buf_append(out, s, n);
		return;
	}
	out->len = (size_t)need;
	out->data[out->len] = 0;
}

enum { CLEAN_OK, CLEAN_UNCHANGED, CLEAN_INVALID_UTF8, CLEAN_EMPTY };

/* Cleans s[0..n); the result is in t->a (unless CLEAN_UNCHANGED). */
static int clean_text(const clean_state *st, clean_tls *t, const char *s, size_t n)
{
	if (!needs_work(st, s, n))
		return n ? CLEAN_UNCHANGED : CLEAN_EMPTY;
	buf *cur = &t->a, *nxt = &t->b, *tmp;
#define SWAP() (tmp = cur, cur = nxt, nxt = tmp)
	cur->len = 0;
	if (!utf8_valid((const unsigned char *)s, n)) {
		if (strcmp(st->c.utf8, "repair") != 0)
			return CLEAN_INVALID_UTF8;
		utf8_repair((const unsigned char *)s, n, cur);
	} else {
		buf_append(cur, s, n);
	}
	if (st->c.html && memchr(cur->data, '<', cur->len)) {
		re_replace_all(st->block, t->md, (char *)cur->data, cur->len, " ", nxt);
		SWAP();
		re_replace_all(st->tag, t->md, (char *)cur->data, cur->len, "", nxt);
		SWAP();
	}
	if (st->c.html && memchr(cur->data, '&', cur->len)) {
		decode_entities((char *)cur->data, cur->len, nxt);
		SWAP();
	}
	if (strcmp(st->c.urls, "keep") != 0 && has_url_hint((char *)cur->data, cur->len)) {
		re_replace_all(st->url, t->md, (char *)cur->data, cur->len,
			       strcmp(st->c.urls, "placeholder") ? "" : st->c.url_ph, nxt);
		SWAP();
	}
	if (strcmp(st->c.emails, "keep") != 0 && memchr(cur->data, '@', cur->len)) {
		re_replace_all(st->email, t->md, (char *)cur->data, cur->len,
			       strcmp(st->c.emails, "placeholder") ? "" : st->c.email_ph, nxt);
		SWAP();
	}
	/* below U+0300 every character is already NFC; NFKC has compatibility
	 * forms among them (nbsp, superscripts, ligatures), so only ASCII skips */
	if (st->norm && !text_is_ascii((char *)cur->data, cur->len) &&
	    (st->nfkc || max_cp_below((char *)cur->data, cur->len) >= 0x300)) {
		normalize(st, t, (char *)cur->data, cur->len, nxt);
		SWAP();
	}
	tidy(st, (char *)cur->data, cur->len, nxt);
	SWAP();
	if (st->c.lower) {
		lower(t, (char *)cur->data, cur->len, nxt);
		SWAP();
	}
#undef SWAP
	if (cur != &t->a) {
		t->a.len = 0;
		buf_append(&t->a, cur->data, cur->len);
	}
	return t->a.len ? CLEAN_OK : CLEAN_EMPTY;
}

/* Cleans every turn's "value"; @return 0, or 1 with *rj. */
static int clean_conversations(const clean_state *st, clean_tls *t, sample *s, member *jm,
			       int *had, reject_info *rj)
{
	json_error_t je;
	/* duplicate keys are refused, as ingest does: rewriting the turns
	 * would keep only the last copy, and which one a reader sees is not
	 * ours to choose */
	json_t *o = json_loadb((const char *)jm->data, jm->size, JSON_REJECT_DUPLICATES, &je);
	if (!o || !json_is_object(o)) {
		json_decref(o);
		return reject_set(rj, "bad_json", "KEY.json: %s", o ? "not an object" : je.text);
	}
	json_t *conv = json_object_get(o, "conversations");
	if (!json_is_array(conv)) {
		json_decref(o);
		return 0;
	}
	*had = 1;
	int changed = 0, nonempty = 0;
	size_t i;
	json_t *turn;
	json_array_foreach(conv, i, turn) {
		json_t *v = json_object_get(turn, "value");
		if (!json_is_string(v))
			continue;
		int r = clean_text(st, t, json_string_value(v), json_string_length(v));
		if (r == CLEAN_UNCHANGED) {
			nonempty++;
			continue;
		}
		if (r == CLEAN_INVALID_UTF8) { /* jansson refuses these; defensive */
			json_decref(o);
			return reject_set(rj, "invalid_utf8", "conversation turn %zu", i);
		}
		if (r == CLEAN_OK)
			nonempty++;
		json_object_set_new(turn, "value", json_stringn((const char *)t->a.data, r == CLEAN_OK ? t->a.len : 0));
		changed = 1;
	}
	if (!nonempty) {
		json_decref(o);
		return reject_set(rj, "empty", "every conversation turn is empty after cleaning");
	}
	if (changed) {
		char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
		if (js) {
			sample_put(s, "json", js, strlen(js));
			free(js);
		}
	}
	json_decref(o);
	return 0;
}

static int clean_apply(const void *state, void *tls, sample *s, reject_info *rj)
{
	const clean_state *st = state;
	clean_tls *t = tls;
	member *txt = sample_get(s, "txt");
	member *jm = sample_get(s, "json");
	int had_conv = 0;
	if (jm && memmem(jm->data, jm->size, "\"conversations\"", 15) &&
	    clean_conversations(st, t, s, jm, &had_conv, rj))
		return 1;
	if (!txt)
		return had_conv ? 0 : reject_set(rj, "no_text", "no .txt caption and no conversations");
	int r = clean_text(st, t, (const char *)txt->data, txt->size);
	if (r == CLEAN_INVALID_UTF8)
		return reject_set(rj, "invalid_utf8", "caption is not valid UTF-8");
	if (r == CLEAN_EMPTY)
		return reject_set(rj, "empty", "caption is empty after cleaning");
	if (r == CLEAN_OK)
		sample_put(s, "txt", t->a.data, t->a.len);
	return 0;
}

const filter_def filter_clean = {
	"clean",
	"Clean caption text (KEY.txt) and conversation turns (KEY.json): UTF-8,\n"
	"HTML tags and entities, URLs and e-mails, Unicode normalization (NFC),\n"
	"control and zero-width characters, whitespace, optional lower-casing.",
	"Steps, in order: UTF-8 check (reject or repair); HTML tags removed and\n"
	"entities decoded; URLs and e-mail addresses removed (or a placeholder);\n"
	"Unicode normalization (ICU); control characters and invisible formatting\n"
	"(zero-width space, word joiner, BOM, soft hyphen, bidi controls) removed,\n"
	"ZWJ/ZWNJ kept (emoji sequences, Persian and Indic text need them);\n"
	"whitespace collapsed and trimmed; optional lower-casing.\n"
	"Drops: clean.invalid_utf8, clean.empty (nothing left), clean.no_text (no\n"
	"caption and no conversations), clean.bad_json.  Details: filters/README.md.\n",
	clean_opts,
	sizeof(clean_conf),
	clean_open,
	clean_tls_new,
	clean_tls_free,
	clean_apply,
	clean_close,
	NULL,
	NULL,
	NULL,
	NULL, /* runs on any rank as it is: no dist_start */
	NULL,
};
