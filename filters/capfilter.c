/* capfilter.c: the `capfilter` filter: caption quality rules with the
 * defaults of DataComp's basic filter and opt-in Gopher / Data-Juicer
 * rules (filters/README.md has every rule and where its default is from).
 *
 * One pass computes what the enabled rules need; rules that are off cost
 * nothing, so the default (words and chars only) runs at memory speed on
 * ASCII alt-texts. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unicode/uchar.h>
#include <unicode/ucasemap.h>
#include <unicode/uscript.h>
#include <xxhash.h>

#include "embedded.h"
#include "filter.h"
#include "langid.h"
#include "regex.h"
#include "sample_text.h"
#include "strset.h"
#include "text.h"

typedef struct cap_conf {
	int min_words, max_words, min_chars, max_chars;
	double min_mean_word_len, max_mean_word_len, min_alpha_words;
	double max_symbol_ratio, max_digit_ratio, max_nonalnum_ratio;
	double max_char_rep, max_word_rep;
	int char_rep_n, word_rep_n, min_stopwords, boilerplate;
	const char *banned_words, *lang, *scripts;
	double lang_min_conf;
} cap_conf;

#define O(f) offsetof(cap_conf, f)
static const fopt cap_opts[] = {
	{"min_words", OPT_INT, O(min_words), "3", "N", "fewer words: drop (DataComp basic: > 2 words)"},
	{"max_words", OPT_INT, O(max_words), "0", "N", "more words: drop (0: off)"},
	{"min_chars", OPT_INT, O(min_chars), "6", "N", "fewer code points: drop (DataComp basic: > 5 chars)"},
	{"max_chars", OPT_INT, O(max_chars), "2000", "N", "more code points: drop (0: off)"},
	{"min_mean_word_len", OPT_DOUBLE, O(min_mean_word_len), "0", "X",
	 "mean word length in chars below: drop (0: off; Gopher: 3)"},
	{"max_mean_word_len", OPT_DOUBLE, O(max_mean_word_len), "0", "X",
	 "mean word length above: drop (0: off; Gopher: 10)"},
	{"min_alpha_words", OPT_DOUBLE, O(min_alpha_words), "0", "RATIO",
	 "share of words with a letter below: drop (0: off; Gopher: 0.8)"},
	{"max_symbol_ratio", OPT_DOUBLE, O(max_symbol_ratio), "0", "RATIO",
	 "('#' + ellipses) per word above: drop (0: off; Gopher: 0.1)"},
	{"max_digit_ratio", OPT_DOUBLE, O(max_digit_ratio), "0", "RATIO", "digits per char above: drop (0: off)"},
	{"max_nonalnum_ratio", OPT_DOUBLE, O(max_nonalnum_ratio), "0", "RATIO",
	 "chars neither letter, digit, mark nor space, per char, above: drop (0: off; Data-Juicer: 0.25)"},
	{"max_char_rep", OPT_DOUBLE, O(max_char_rep), "0", "RATIO",
	 "character n-gram repetition above: drop (0: off; Data-Juicer: 0.5)"},
	{"char_rep_n", OPT_INT, O(char_rep_n), "10", "N", "n for max_char_rep (Data-Juicer: 10)"},
	{"max_word_rep", OPT_DOUBLE, O(max_word_rep), "0", "RATIO",
	 "word n-gram repetition above: drop (0: off)"},
	{"word_rep_n", OPT_INT, O(word_rep_n), "3", "N", "n for max_word_rep"},
	{"min_stopwords", OPT_INT, O(min_stopwords), "0", "N",
	 "fewer stopwords of the caption's language: drop (0: off; Gopher: 2)"},
	{"banned_words", OPT_STR, O(banned_words), NULL, "FILE",
	 "words or phrases (up to 3 words, one per line) that drop a caption"},
	{"boilerplate", OPT_INT, O(boilerplate), "0", "0|1", "drop captions matching the shipped boilerplate patterns"},
	{"lang", OPT_STR, O(lang), NULL, "LIST", "keep only these languages (ISO 639-1, e.g. en,de)"},
	{"lang_min_conf", OPT_DOUBLE, O(lang_min_conf), "0.5", "X", "minimum language confidence with lang"},
	{"scripts", OPT_STR, O(scripts), NULL, "LIST",
	 "keep only captions whose dominant script is listed (ISO 15924: Latn,Cyrl,Hani,...)"},
	{0},
};
#undef O

enum { MAX_LIST = 64 };

typedef struct cap_state {
	cap_conf c;
	pcre2_code *boiler;
	strset *banned;
	strset *stop[MAX_LIST + 1]; /* per language of `langs`, or [0] = en */
	char langs[MAX_LIST][8];
	int nlangs;
	int scripts[MAX_LIST];
	int nscripts;
	int need_spans; /* some rule needs all the words, not only a count */
} cap_state;

typedef struct cap_tls {
	text_ctx *tc;
	pcre2_match_data *md;
	langid *li;
	UCaseMap *cm;
	buf low, cat;
	uint64_t *h;
	size_t hcap;
	uint32_t *cpoff;
	size_t cpcap;
} cap_tls;

static void cap_close(void *state)
{
	cap_state *s = state;
	if (!s)
		return;
	pcre2_code_free(s->boiler);
	strset_free(s->banned);
	for (int i = 0; i <= MAX_LIST; i++)
		strset_free(s->stop[i]);
	free(s);
}

static void *cap_tls_new(const void *state);
static void cap_tls_free(void *tls);
static void lowercase(cap_tls *t, const char *s, size_t n);

static strset *load_stopwords(const char *lang)
{
	char name[64];
	snprintf(name, sizeof name, "stopwords/%s.txt", lang);
	size_t n;
	const char *d = embedded_file(name, &n);
	if (!d)
		return NULL;
	strset *s = strset_new();
	strset_add_lines(s, d, n);
	return s;
}

/* Splits a comma list into fixed-size words. */
static int split_list(const char *list, char out[][8], int max, const char *what, mvl_err *err)
{
	int n = 0;
	const char *p = list;
	while (*p) {
		size_t len = strcspn(p, ",");
		if (len == 0 || len >= 8)
			return mvl_errf(err, "%s: '%.*s' is not a code", what, (int)len, p);
		if (n == max)
			return mvl_errf(err, "%s: more than %d entries", what, max);
		memcpy(out[n], p, len);
		out[n][len] = 0;
		n++;
		p += len;
		if (*p == ',')
			p++;
	}
	if (!n)
		return mvl_errf(err, "%s: empty list", what);
	return n;
}

static int cap_open(const void *conf, void **state, mvl_err *err)
{
	cap_state *s = xcalloc(1, sizeof *s);
	s->c = *(const cap_conf *)conf;
	*state = s;
	cap_conf *c = &s->c;
	if (c->min_words < 0 || c->max_words < 0 || c->min_chars < 0 || c->max_chars < 0 ||
	    c->min_stopwords < 0)
		return mvl_errf(err, "word, char and stopword bounds must be >= 0");
	if (c->max_words && c->max_words < c->min_words)
		return mvl_errf(err, "max_words %d is below min_words %d", c->max_words, c->min_words);
	if (c->max_chars && c->max_chars < c->min_chars)
		return mvl_errf(err, "max_chars %d is below min_chars %d", c->max_chars, c->min_chars);
	if (c->char_rep_n < 1 || c->word_rep_n < 1)
		return mvl_errf(err, "char_rep_n and word_rep_n must be >= 1");
	if (c->boilerplate < 0 || c->boilerplate > 1)
		return mvl_errf(err, "boilerplate takes 0 or 1");
	double ratios[] = {c->min_alpha_words, c->max_symbol_ratio, c->max_digit_ratio,
			   c->max_nonalnum_ratio, c->max_char_rep, c->max_word_rep, c->lang_min_conf};
	for (size_t i = 0; i < sizeof ratios / sizeof ratios[0]; i++)
		if (!(ratios[i] >= 0 && ratios[i] <= 1))
			return mvl_errf(err, "ratios and lang_min_conf must be within 0..1");
	if (c->boilerplate) {
		size_t n;
		const char *d = embedded_file("boilerplate.txt", &n);
		if (!d)
			return mvl_errf(err, "boilerplate patterns missing from the build");
		/* one alternation, so a caption is scanned once, not per pattern */
		buf alt = {0};
		for (size_t i = 0; i < n;) {
			const char *nl = memchr(d + i, '\n', n - i);
			size_t e = nl ? (size_t)(nl - d) : n;
			size_t b = e;
			while (b > i && (d[b - 1] == '\r' || d[b - 1] == ' '))
				b--;
			if (b > i && d[i] != '#') {
				buf_printf(&alt, "%s(?:%.*s)", alt.len ? "|" : "", (int)(b - i), d + i);
			}
			i = e + 1;
		}
		s->boiler = re_compile(alt.len ? (char *)alt.data : "(?!)", 1, err);
		buf_free(&alt);
		if (!s->boiler)
			return -1;
	}
	if (c->banned_words) {
		buf b = {0};
		if (read_file(c->banned_words, 64u << 20, &b, err) != 0)
			return -1;
		s->banned = strset_new();
		/* entries are lower-cased (ICU) and re-spaced word by word, as the
		 * caption's words will be, so "Ёлка" matches "ёлка," */
		cap_tls *t = cap_tls_new(s);
		lowercase(t, (char *)b.data, b.len);
		const char *low = (const char *)t->low.data;
		for (size_t i = 0; i < t->low.len;) {
			const char *nl = memchr(low + i, '\n', t->low.len - i);
			size_t e = nl ? (size_t)(nl - low) : t->low.len;
			if (e > i && low[i] != '#') {
				buf line = {0};
				buf_append(&line, low + i, e - i);
				const word_span *w;
				size_t nw = text_words_icu(t->tc, (char *)line.data, line.len, &w);
				buf phrase = {0};
				for (size_t k = 0; k < nw; k++) {
					if (k)
						buf_append(&phrase, " ", 1);
					buf_append(&phrase, line.data + w[k].off, w[k].len);
				}
				if (nw)
					strset_add(s->banned, (char *)phrase.data, phrase.len);
				buf_free(&line);
				buf_free(&phrase);
			}
			i = e + 1;
		}
		cap_tls_free(t);
		buf_free(&b);
	}
	if (c->lang) {
		int n = split_list(c->lang, s->langs, MAX_LIST, "lang", err);
		if (n < 0)
			return -1;
		s->nlangs = n;
		mvl_err e2;
		langid *probe = langid_new(&e2);
		if (!probe)
			return mvl_errf(err, "language identification unavailable: %s", e2.msg);
		langid_free(probe);
	}
	s->need_spans = c->min_mean_word_len > 0 || c->max_mean_word_len > 0 ||
			c->min_alpha_words > 0 || c->max_word_rep > 0 || c->max_symbol_ratio > 0;
	if (c->min_stopwords) {
		if (s->nlangs) {
			for (int i = 0; i < s->nlangs; i++)
				if (!(s->stop[i] = load_stopwords(s->langs[i])))
					return mvl_errf(err, "no stopword list for language '%s'", s->langs[i]);
		} else if (!(s->stop[0] = load_stopwords("en"))) {
			return mvl_errf(err, "no English stopword list in the build");
		}
	}
	if (c->scripts) {
		char names[MAX_LIST][8];
		int n = split_list(c->scripts, names, MAX_LIST, "scripts", err);
		if (n < 0)
			return -1;
		for (int i = 0; i < n; i++) {
			int code = u_getPropertyValueEnum(UCHAR_SCRIPT, names[i]);
			if (code < 0)
				return mvl_errf(err, "scripts: '%s' is not an ISO 15924 script code", names[i]);
			s->scripts[i] = code;
		}
		s->nscripts = n;
	}
	return 0;
}

static void *cap_tls_new(const void *state)
{
	const cap_state *s = state;
	cap_tls *t = xcalloc(1, sizeof *t);
	t->tc = text_ctx_new();
	if (s->boiler)
		t->md = pcre2_match_data_create_from_pattern(s->boiler, NULL);
	if (s->nlangs)
		t->li = langid_new(NULL);
	UErrorCode st = U_ZERO_ERROR;
	t->cm = ucasemap_open("", 0, &st);
	return t;
}

static void cap_tls_free(void *tls)
{
	cap_tls *t = tls;
	text_ctx_free(t->tc);
	pcre2_match_data_free(t->md);
	if (t->li)
		langid_free(t->li);
	ucasemap_close(t->cm);
	buf_free(&t->low);
	buf_free(&t->cat);
	free(t->h);
	free(t->cpoff);
	free(t);
}

/* ---------------------------------------------------------------------- */
/* measurements */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* sum of counts of repeated items / total items (filters/README.md) */
static double repetition(uint64_t *h, size_t n)
{
	if (!n)
		return 0;
	qsort(h, n, sizeof *h, cmp_u64);
	size_t rep = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && h[j] == h[i])
			j++;
		if (j - i > 1)
			rep += j - i;
		i = j;
	}
	return (double)rep / (double)n;
}

static uint64_t *hashes(cap_tls *t, size_t n)
{
	if (t->hcap < n) {
		t->hcap = n + 64;
		t->h = xrealloc(t->h, t->hcap * sizeof *t->h);
	}
	return t->h;
}

static double char_repetition(cap_tls *t, const char *s, size_t n, int k)
{
	size_t ncp = 0;
	if (t->cpcap < n + 1) {
		t->cpcap = n + 64;
		t->cpoff = xrealloc(t->cpoff, t->cpcap * sizeof *t->cpoff);
	}
	for (size_t i = 0; i < n;) {
		t->cpoff[ncp++] = (uint32_t)i;
		utf8_next(s, n, &i);
	}
	t->cpoff[ncp] = (uint32_t)n;
	if (ncp < (size_t)k)
		return 0;
	size_t ng = ncp - (size_t)k + 1;
	uint64_t *h = hashes(t, ng);
	for (size_t i = 0; i < ng; i++)
		h[i] = XXH3_64bits(s + t->cpoff[i], t->cpoff[i + (size_t)k] - t->cpoff[i]);
	return repetition(h, ng);
}

static double word_repetition(cap_tls *t, const char *s, const word_span *w, size_t nw, int k)
{
	if (nw < (size_t)k)
		return 0;
	size_t ng = nw - (size_t)k + 1;
	uint64_t *h = hashes(t, ng);
	for (size_t i = 0; i < ng; i++) {
		uint64_t x = 0;
		for (int j = 0; j < k; j++)
			x = XXH3_64bits_withSeed(s + w[i + (size_t)j].off, w[i + (size_t)j].len, x);
		h[i] = x;
	}
	return repetition(h, ng);
}

/* Lower-cases into t->low (ASCII by hand, else ICU full case mapping). */
static void lowercase(cap_tls *t, const char *s, size_t n)
{
	buf *o = &t->low;
	o->len = 0;
	if (text_is_ascii(s, n)) {
		buf_reserve(o, n + 1);
		for (size_t i = 0; i < n; i++)
			o->data[i] = (unsigned char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
		o->len = n;
		o->data[n] = 0;
		return;
	}
	UErrorCode e = U_ZERO_ERROR;
	buf_reserve(o, n + 16);
	int32_t need = ucasemap_utf8ToLower(t->cm, (char *)o->data, (int32_t)o->cap, s, (int32_t)n, &e);
	if (e == U_BUFFER_OVERFLOW_ERROR || (size_t)need >= o->cap) {
		buf_reserve(o, (size_t)need + 16);
		e = U_ZERO_ERROR;
		need = ucasemap_utf8ToLower(t->cm, (char *)o->data, (int32_t)o->cap, s, (int32_t)n, &e);
	}
	if (U_FAILURE(e)) {
		o->len = 0;
		buf_append(o, s, n);
		return;
	}
	o->len = (size_t)need;
	o->data[o->len] = 0;
}

static int dominant_script(const char *s, size_t n)
{
	int best = -1, bestn = 0;
	int codes[16], counts[16], k = 0;
	for (size_t i = 0; i < n;) {
		uint32_t c = utf8_next(s, n, &i);
		if (!u_isalpha((UChar32)c))
			continue;
		UErrorCode e = U_ZERO_ERROR;
		int sc = (int)uscript_getScript((UChar32)c, &e);
		if (U_FAILURE(e) || sc == USCRIPT_COMMON || sc == USCRIPT_INHERITED)
			continue;
		int j;
		for (j = 0; j < k; j++)
			if (codes[j] == sc)
				break;
		if (j == k) {
			if (k == 16)
				continue;
			codes[k] = sc;
			counts[k++] = 0;
		}
		if (++counts[j] > bestn) {
			bestn = counts[j];
			best = sc;
		}
	}
	return best;
}

static int is_blank(const char *s, size_t n)
{
	if (n && (unsigned char)s[0] > ' ' && (unsigned char)s[0] < 0x80)
		return 0; /* the usual caption: answered by its first byte */
	for (size_t i = 0; i < n;) {
		uint32_t c = utf8_next(s, n, &i);
		if (!(c == ' ' || (c >= 9 && c <= 13) || c == 0xA0 || c == 0x3000 || c == 0x85 ||
		      (c >= 0x2000 && c <= 0x200B) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
		      c == 0x205F || c == 0xFEFF || c == 0x1680))
			return 0;
	}
	return 1;
}

static int cap_apply(const void *state, void *tls, sample *smp, reject_info *rj)
{
	const cap_state *s = state;
	const cap_conf *c = &s->c;
	cap_tls *t = tls;
	size_t n;
	int bad_json;
	const char *cap = sample_caption(smp, &t->cat, &n, &bad_json);
	if (!cap)
		return reject_set(rj, "no_caption", bad_json ? "KEY.json is not valid JSON"
							    : "no .txt caption and no conversations");
	int ascii = text_is_ascii(cap, n);
	if (!ascii && !utf8_valid((const unsigned char *)cap, n))
		return reject_set(rj, "invalid_utf8", "caption is not valid UTF-8 (run clean first)");
	if (is_blank(cap, n))
		return reject_set(rj, "empty", "caption is empty or blank");
	size_t chars = ascii ? n : utf8_count((const unsigned char *)cap, n);
	if (chars < (size_t)c->min_chars)
		return reject_set(rj, "too_few_chars", "%zu chars < %d", chars, c->min_chars);
	if (c->max_chars && chars > (size_t)c->max_chars)
		return reject_set(rj, "too_many_chars", "%zu chars > %d", chars, c->max_chars);
	const word_span *w = NULL;
	size_t nw;
	if (s->need_spans) {
		nw = text_words(t->tc, cap, n, &w);
	} else {
		/* only a count is needed, and past max(min_words, max_words + 1)
		 * the exact number changes nothing */
		size_t limit = c->max_words ? (size_t)c->max_words + 1 : (size_t)c->min_words;
		nw = text_count_words(t->tc, cap, n, limit);
	}
	if (nw < (size_t)c->min_words)
		return reject_set(rj, "too_few_words", "%zu words < %d", nw, c->min_words);
	if (c->max_words && nw > (size_t)c->max_words)
		return reject_set(rj, "too_many_words", "%s%zu words > %d", s->need_spans ? "" : "at least ",
				  nw, c->max_words);

	if (c->min_mean_word_len > 0 || c->max_mean_word_len > 0 || c->min_alpha_words > 0) {
		size_t wchars = 0, alpha = 0;
		for (size_t i = 0; i < nw; i++) {
			const char *p = cap + w[i].off;
			wchars += utf8_count((const unsigned char *)p, w[i].len);
			int has = 0;
			for (size_t k = 0; k < w[i].len && !has;) {
				uint32_t ch = utf8_next(p, w[i].len, &k);
				has = ch < 0x80 ? ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') : u_isalpha((UChar32)ch);
			}
			alpha += (size_t)has;
		}
		double mean = nw ? (double)wchars / (double)nw : 0;
		if (c->min_mean_word_len > 0 && mean < c->min_mean_word_len)
			return reject_set(rj, "mean_word_len", "mean word length %.2f < %g", mean, c->min_mean_word_len);
		if (c->max_mean_word_len > 0 && mean > c->max_mean_word_len)
			return reject_set(rj, "mean_word_len", "mean word length %.2f > %g", mean, c->max_mean_word_len);
		double ar = nw ? (double)alpha / (double)nw : 0;
		if (c->min_alpha_words > 0 && ar < c->min_alpha_words)
			return reject_set(rj, "alpha_words", "alphabetic words %.3f < %g", ar, c->min_alpha_words);
	}
	if (c->max_symbol_ratio > 0) {
		size_t sym = 0;
		for (size_t i = 0; i < n; i++) {
			if (cap[i] == '#')
				sym++;
			else if (cap[i] == '.' && i + 2 < n && cap[i + 1] == '.' && cap[i + 2] == '.') {
				sym++;
				i += 2;
			} else if ((unsigned char)cap[i] == 0xE2 && i + 2 < n && (unsigned char)cap[i + 1] == 0x80 &&
				   (unsigned char)cap[i + 2] == 0xA6) {
				sym++;
				i += 2;
			}
		}
		double r = nw ? (double)sym / (double)nw : 0;
		if (r > c->max_symbol_ratio)
			return reject_set(rj, "symbols", "symbols per word %.3f > %g", r, c->max_symbol_ratio);
	}
	if (c->max_digit_ratio > 0 || c->max_nonalnum_ratio > 0) {
		size_t digits = 0, other = 0;
		for (size_t i = 0; i < n;) {
			uint32_t ch = utf8_next(cap, n, &i);
			int8_t ty = u_charType((UChar32)ch);
			if (ty == U_DECIMAL_DIGIT_NUMBER)
				digits++;
			else if (!(u_isalpha((UChar32)ch) || u_isdigit((UChar32)ch) || ty == U_NON_SPACING_MARK ||
				   ty == U_COMBINING_SPACING_MARK || ty == U_ENCLOSING_MARK ||
				   ty == U_LETTER_NUMBER || ty == U_OTHER_NUMBER || u_isUWhiteSpace((UChar32)ch)))
				other++;
		}
		double dr = (double)digits / (double)chars, orr = (double)other / (double)chars;
		if (c->max_digit_ratio > 0 && dr > c->max_digit_ratio)
			return reject_set(rj, "digits", "digits per char %.3f > %g", dr, c->max_digit_ratio);
		if (c->max_nonalnum_ratio > 0 && orr > c->max_nonalnum_ratio)
			return reject_set(rj, "non_alnum", "non-alphanumeric per char %.3f > %g", orr,
					  c->max_nonalnum_ratio);
	}
	if (c->max_char_rep > 0) {
		double r = char_repetition(t, cap, n, c->char_rep_n);
		if (r > c->max_char_rep)
			return reject_set(rj, "char_repetition", "%d-gram repetition %.3f > %g", c->char_rep_n, r,
					  c->max_char_rep);
	}
	if (c->max_word_rep > 0) {
		double r = word_repetition(t, cap, w, nw, c->word_rep_n);
		if (r > c->max_word_rep)
			return reject_set(rj, "word_repetition", "word %d-gram repetition %.3f > %g",
					  c->word_rep_n, r, c->max_word_rep);
	}
	if (s->boiler && re_search(s->boiler, t->md, cap, n))
		return reject_set(rj, "boilerplate", "matches a boilerplate pattern");
	if (s->nscripts) {
		int sc = dominant_script(cap, n);
		int ok = 0;
		for (int i = 0; i < s->nscripts; i++)
			ok |= s->scripts[i] == sc;
		if (!ok)
			return reject_set(rj, "script", "dominant script %s",
					  sc >= 0 ? uscript_getShortName((UScriptCode)sc) : "none");
	}
	int li = -1; /* index of the identified language in langs */
	if (s->nlangs) {
		char code[8];
		double conf = 0;
		if (!t->li || langid_detect(t->li, cap, n, code, &conf) != 0)
			snprintf(code, sizeof code, "und");
		for (int i = 0; i < s->nlangs; i++)
			if (strcmp(s->langs[i], code) == 0)
				li = i;
		if (li < 0 || conf < c->lang_min_conf)
			return reject_set(rj, "language", "%s (confidence %.2f)", code, conf);
		sample_json_set(smp, "language", json_string(code));
		sample_json_set(smp, "language_conf", json_real(round(conf * 1000) / 1000));
		if (!sample_get(smp, "txt"))
			cap = NULL; /* note_language may have moved the json text */
	}
	if (s->banned || c->min_stopwords) {
		if (!cap) {
			cap = sample_caption(smp, &t->cat, &n, &bad_json);
			if (!cap)
				return 0;
		}
		lowercase(t, cap, n);
		const char *low = (const char *)t->low.data;
		size_t nl = t->low.len;
		const word_span *lw;
		size_t nlw = text_words_icu(t->tc, low, nl, &lw);
		if (s->banned) {
			for (size_t i = 0; i < nlw; i++) {
				for (size_t k = 1; k <= 3 && i + k <= nlw; k++) {
					/* phrases are compared with single spaces between words */
					char tmp[512];
					size_t tl = 0;
					for (size_t j = i; j < i + k && tl < sizeof tmp; j++) {
						if (j > i)
							tmp[tl++] = ' ';
						size_t take = lw[j].len < sizeof tmp - tl ? lw[j].len : sizeof tmp - tl;
						memcpy(tmp + tl, low + lw[j].off, take);
						tl += take;
					}
					if (strset_has(s->banned, tmp, tl))
						return reject_set(rj, "banned_word", "contains '%.*s'", (int)tl, tmp);
				}
			}
		}
		if (c->min_stopwords) {
			const strset *sw = s->stop[li >= 0 ? li : 0];
			size_t count = 0;
			for (size_t i = 0; i < nlw; i++)
				count += (size_t)strset_has(sw, low + lw[i].off, lw[i].len);
			if (count < (size_t)c->min_stopwords)
				return reject_set(rj, "stopwords", "%zu stopwords < %d", count, c->min_stopwords);
		}
	}
	return 0;
}

static const char cap_details[] =
	"Rules (a drop reason is capfilter.NAME), applied in this order:\n"
	"  no_caption / empty / invalid_utf8   nothing to judge\n"
	"  too_few_chars, too_many_chars       code points; defaults 6 and 2000\n"
	"  too_few_words, too_many_words       default min 3 (DataComp basic filter:\n"
	"                                      more than 2 words, more than 5 chars)\n"
	"  mean_word_len, alpha_words, symbols Gopher rules (off by default; Gopher\n"
	"                                      values 3..10 chars, 0.8, 0.1)\n"
	"  digits, non_alnum                   Data-Juicer-style ratios (off)\n"
	"  char_repetition, word_repetition    n-gram repetition (off; Data-Juicer\n"
	"                                      char 10-grams at 0.5)\n"
	"  boilerplate                         shipped patterns (off)\n"
	"  script, language                    ICU dominant script; language ID (off)\n"
	"  banned_word, stopwords              word lists (off)\n"
	"Words: whitespace-separated for ASCII text, ICU word segmentation otherwise\n"
	"(Chinese, Japanese and Thai get real words).  With lang, KEY.json gets\n"
	"language and language_conf.  Exact definitions: filters/README.md.\n";

const filter_def filter_capfilter = {
	"capfilter",
	"Drop captions by quality rules: length in words and chars, Gopher and\n"
	"Data-Juicer ratios, repetition, boilerplate, banned words, stopwords,\n"
	"script and language.",
	cap_details,
	cap_opts,
	sizeof(cap_conf),
	cap_open,
	cap_tls_new,
	cap_tls_free,
	cap_apply,
	cap_close,
	NULL,
	NULL,
	NULL,
	NULL, /* runs on any rank as it is: no dist_start */
	NULL,
};
