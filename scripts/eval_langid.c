/* eval_langid.c: measures the two language identifiers Debian ships,
 * libexttextcat and CLD2, on the labelled short captions in tests/data/lang
 * (LANG.txt: one caption per line, LANG its ISO 639-1 code): top-1
 * accuracy per language, per caption length and overall, and speed on one
 * core.  It chose langid.c's backend; re-run it when the corpus changes.
 *
 * Build and run from the repository root (scripts/eval_langid.sh does both,
 * and also runs the variant linked with CLD2's larger "full" tables):
 *
 *   g++ -O2 -Ipipeline -Ifilters -c filters/langid_cld2.cc -o /tmp/lc.o
 *   gcc -std=c11 -D_GNU_SOURCE -O2 -Ipipeline -Ifilters \
 *       $(pkg-config --cflags libexttextcat) scripts/eval_langid.c \
 *       filters/langid.c pipeline/util.c /tmp/lc.o -o /tmp/eval_langid \
 *       $(pkg-config --libs libexttextcat) -lcld2 -lstdc++ -lm
 *   /tmp/eval_langid [-v] [DIR]
 *
 * Words, for the length buckets: whitespace-separated tokens, where a token
 * with Han / kana characters counts one word per two of them (Chinese and
 * Japanese captions have no spaces; two characters is about a word).
 *
 * Backends measured:
 *   cld2         ExtDetectLanguageSummary, plain text, kCLDFlagBestEffort
 *   cld2-strict  the same without kCLDFlagBestEffort (may say "unknown")
 *   textcat      libexttextcat with Debian's fpdb.conf (every model it lists, 163),
 *                textcat_Classify's answer: the best candidate, none when
 *                it says SHORT (under 25 bytes) or UNKNOWN (more than 5
 *                candidates within 3% of the best score)
 *   textcat-min1 the same with TCPROP_MINIMUM_DOCUMENT_SIZE = 1
 *   textcat-best the lowest (best) score over every model it lists, 163 even when
 *                textcat says UNKNOWN: the most libexttextcat's scores can
 *                give; relies on ClassifyFull leaving every model's score in
 *                its candidate array (true of 3.4.5)
 *   langid       filters/langid.c, the shipped API: cld2 plus the rule
 *                "Han without kana is zh", sure/guess confidence
 *
 * Results, Debian 12, libcld2 0.0.0-git20150806-9, libexttextcat 3.4.5,
 * 14 languages x 40 captions (560), one core of the dev machine:
 *
 *   language        n     cld2  cld2-strict  textcat  textcat-best  langid
 *   ar             40    97.5%     87.5%     100.0%     100.0%      97.5%
 *   de             40   100.0%    100.0%      95.0%      97.5%     100.0%
 *   en             40   100.0%     97.5%      65.0%      65.0%     100.0%
 *   es             40    92.5%     87.5%      87.5%      87.5%      92.5%
 *   fr             40   100.0%    100.0%      97.5%      97.5%     100.0%
 *   hi             40    97.5%     97.5%      67.5%      67.5%      97.5%
 *   it             40    97.5%     97.5%      97.5%      97.5%      97.5%
 *   ja             40   100.0%    100.0%     100.0%     100.0%     100.0%
 *   nl             40   100.0%     90.0%      92.5%      92.5%     100.0%
 *   pl             40   100.0%     92.5%     100.0%     100.0%     100.0%
 *   pt             40    90.0%     85.0%      90.0%      95.0%      90.0%
 *   ru             40    92.5%     87.5%      77.5%      77.5%      92.5%
 *   tr             40   100.0%     97.5%      57.5%      70.0%     100.0%
 *   zh             40    87.5%     70.0%      57.5%      70.0%     100.0%
 *   <=5 words      85    94.1%     82.4%      65.9%      72.9%      97.6%
 *   6-12 words    389    96.9%     92.8%      85.9%      87.7%      97.2%
 *   >12 words      86    98.8%     98.8%      97.7%      97.7%     100.0%
 *   overall       560    96.8%     92.1%      84.6%      87.0%      97.7%
 *   captions/s          389k      378k        5.3k       5.3k       328k
 *
 * (textcat-min1 = textcat here.)  textcat loses mostly to its models of
 * close relatives (English -> Scots, Hindi -> Bhojpuri, Russian -> Rusyn)
 * and to UNKNOWN on Chinese and Turkish; even told the answer is one of
 * the 14 (an fpdb.conf of 14 models) it reaches 94.6%.  It compares the
 * text with every model, hence 70x slower.  CLD2 with libcld2_full's
 * tables: 96.2% (more confusions with Latin, Corsican, Afrikaans), so
 * langid.c links the default tables.  CLD2's errors: es/pt/it -> en on
 * short captions, es -> gl/ca, ru -> sr, Han-only Chinese -> ja (the last
 * fixed by langid.c's kana rule, the langid column).
 */
#include "langid.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include <textcat.h>

/* ------------------------------------------------------------ corpus */

typedef struct {
	char lang[8];
	char *text;
	size_t len;
	int words;
} item;

static item *items;
static size_t nitems, capitems;

static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* code point at s (well-formed input assumed: the corpus is checked) */
static unsigned cp_at(const unsigned char *s, int *k)
{
	if (s[0] < 0x80)
		return *k = 1, s[0];
	if (s[0] < 0xE0)
		return *k = 2, ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3F);
	if (s[0] < 0xF0)
		return *k = 3, ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) |
		               (s[2] & 0x3F);
	return *k = 4, ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) |
	               ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3F);
}

static int is_cjk(unsigned c)
{
	return (c >= 0x3040 && c <= 0x30FF) || (c >= 0x3400 && c <= 0x4DBF) ||
	       (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0xF900 && c <= 0xFAFF);
}

static int count_words(const char *text)
{
	const unsigned char *s = (const unsigned char *)text;
	int words = 0;
	while (*s) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (!*s)
			break;
		int cjk = 0, k;
		while (*s && *s != ' ' && *s != '\t') {
			if (is_cjk(cp_at(s, &k)))
				cjk++;
			s += k;
		}
		words += cjk ? (cjk + 1) / 2 : 1;
	}
	return words;
}

static void load(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		die("cannot open '%s'", dir);
	char *names[256];
	int nn = 0;
	struct dirent *e;
	while ((e = readdir(d)) && nn < 256) {
		size_t l = strlen(e->d_name);
		if (l > 4 && l < 12 && !strcmp(e->d_name + l - 4, ".txt"))
			names[nn++] = xstrndup(e->d_name, l - 4);
	}
	closedir(d);
	qsort(names, nn, sizeof names[0], cmpstr);
	for (int i = 0; i < nn; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s.txt", dir, names[i]);
		buf b = {0};
		mvl_err err;
		if (read_file(path, 1 << 24, &b, &err) < 0)
			die("%s", err.msg);
		if (!utf8_valid((const unsigned char *)b.data, b.len))
			die("'%s' is not UTF-8", path);
		char *p = (char *)b.data, *end = p + b.len;
		while (p < end) {
			char *nl = memchr(p, '\n', end - p);
			size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
			if (l) {
				if (nitems == capitems) {
					capitems = capitems ? 2 * capitems : 1024;
					items = xrealloc(items,
					                 capitems * sizeof *items);
				}
				item *it = &items[nitems++];
				snprintf(it->lang, sizeof it->lang, "%s",
				         names[i]);
				it->text = xstrndup(p, l);
				it->len = l;
				it->words = count_words(it->text);
			}
			p += l + 1;
		}
		buf_free(&b);
		free(names[i]);
	}
}

/* ------------------------------------------------------------ backends */

typedef struct backend {
	const char *name;
	void (*detect)(struct backend *b, const item *it, char code[8]);
	void *h;            /* textcat handle or langid */
	candidate_t *cand;  /* textcat candidates */
	int n_models;       /* textcat models */
	/* results */
	int *ok;            /* per item: 1 when right */
	char (*got)[8];
	double rate;        /* captions/s */
} backend;

static void det_cld2(backend *b, const item *it, char code[8])
{
	(void)b;
	langid_cld2_result r;
	if (langid_cld2_detect(it->text, (int)it->len, 1, &r) < 0)
		die("cld2 failed");
	langid_normalize(r.code[0], code);
}

static void det_cld2_strict(backend *b, const item *it, char code[8])
{
	(void)b;
	langid_cld2_result r;
	if (langid_cld2_detect(it->text, (int)it->len, 0, &r) < 0)
		die("cld2 failed");
	langid_normalize(r.code[0], code);
}

static void det_textcat(backend *b, const item *it, char code[8])
{
	int cnt = textcat_ClassifyFull(b->h, it->text, it->len, b->cand);
	if (cnt > 0)
		langid_normalize(b->cand[0].name, code);
	else
		strcpy(code, "und");
}

static void det_textcat_best(backend *b, const item *it, char code[8])
{
	int cnt = textcat_ClassifyFull(b->h, it->text, it->len, b->cand);
	if (cnt == TEXTCAT_RESULT_SHORT) {
		strcpy(code, "und");
		return;
	}
	int best = 0;
	for (int i = 1; i < b->n_models; i++)
		if (b->cand[i].score < b->cand[best].score)
			best = i;
	langid_normalize(b->cand[best].name, code);
}

static void det_langid(backend *b, const item *it, char code[8])
{
	double conf;
	if (langid_detect(b->h, it->text, it->len, code, &conf) < 0)
		die("langid_detect failed");
}

static void *textcat_open(int mindoc, int *n_models)
{
	const char *dirs[] = {getenv("MVL_TEXTCAT_DIR"),
	                      "/usr/share/libexttextcat/",
	                      "/usr/local/share/libexttextcat/"};
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		if (!dirs[i])
			continue;
		char conf[4200], prefix[4096];
		snprintf(prefix, sizeof prefix, "%s/", dirs[i]);
		snprintf(conf, sizeof conf, "%sfpdb.conf", prefix);
		void *h = special_textcat_Init(conf, prefix);
		if (!h)
			continue;
		if (mindoc > 0)
			textcat_SetProperty(h, TCPROP_MINIMUM_DOCUMENT_SIZE,
			                    mindoc);
		/* count the models: lines of fpdb.conf with two fields */
		FILE *f = fopen(conf, "r");
		char line[1024], a[512], c[512];
		*n_models = 0;
		while (f && fgets(line, sizeof line, f)) {
			char *h2 = strchr(line, '#');
			if (h2)
				*h2 = 0;
			if (sscanf(line, "%511s %511s", a, c) == 2)
				(*n_models)++;
		}
		if (f)
			fclose(f);
		return h;
	}
	die("no libexttextcat fpdb.conf found (install libexttextcat-data)");
}

/* ------------------------------------------------------------ report */

static const char *bucket_name[3] = {"<=5 words", "6-12 words", ">12 words"};
static int bucket_of(int words)
{
	return words <= 5 ? 0 : words <= 12 ? 1 : 2;
}

static void pct(int ok, int n)
{
	if (n)
		printf(" %11.1f%%", 100.0 * ok / n);
	else
		printf(" %12s", "-");
}

int main(int argc, char **argv)
{
	int verbose = 0;
	const char *dir = "tests/data/lang";
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			verbose = 1;
		else
			dir = argv[i];
	}
	load(dir);
	if (!nitems)
		die("no captions in '%s'", dir);

	mvl_err err;
	backend bs[] = {
		{.name = "cld2", .detect = det_cld2},
		{.name = "cld2-strict", .detect = det_cld2_strict},
		{.name = "textcat", .detect = det_textcat},
		{.name = "textcat-min1", .detect = det_textcat},
		{.name = "textcat-best", .detect = det_textcat_best},
		{.name = "langid", .detect = det_langid},
	};
	int nb = sizeof bs / sizeof bs[0];
	bs[2].h = textcat_open(0, &bs[2].n_models);
	bs[3].h = textcat_open(1, &bs[3].n_models);
	bs[4].h = textcat_open(1, &bs[4].n_models);
	for (int i = 2; i <= 4; i++)
		bs[i].cand = textcat_GetClassifyFullOutput(bs[i].h);
	if (!(bs[5].h = langid_new(&err)))
		die("%s", err.msg);

	/* accuracy */
	for (int b = 0; b < nb; b++) {
		bs[b].ok = xcalloc(nitems, sizeof(int));
		bs[b].got = xcalloc(nitems, 8);
		for (size_t i = 0; i < nitems; i++) {
			bs[b].detect(&bs[b], &items[i], bs[b].got[i]);
			bs[b].ok[i] = !strcmp(bs[b].got[i], items[i].lang);
		}
	}
	/* speed: the whole corpus, again and again, for at least 1 s */
	for (int b = 0; b < nb; b++) {
		double t0 = now_sec(), t;
		size_t n = 0;
		char code[8];
		do {
			for (size_t i = 0; i < nitems; i++)
				bs[b].detect(&bs[b], &items[i], code);
			n += nitems;
		} while ((t = now_sec() - t0) < 1.0);
		bs[b].rate = n / t;
	}

	printf("corpus: %s, %zu captions; CLD2 %s; libexttextcat %s "
	       "(%d models)\n\n", dir, nitems, langid_cld2_version(),
	       textcat_Version(), bs[2].n_models);
	printf("%-12s %5s", "language", "n");
	for (int b = 0; b < nb; b++)
		printf(" %12s", bs[b].name);
	printf("\n");
	/* languages in corpus order */
	for (size_t i = 0; i < nitems;) {
		size_t j = i;
		while (j < nitems && !strcmp(items[j].lang, items[i].lang))
			j++;
		printf("%-12s %5zu", items[i].lang, j - i);
		for (int b = 0; b < nb; b++) {
			int ok = 0;
			for (size_t k = i; k < j; k++)
				ok += bs[b].ok[k];
			pct(ok, (int)(j - i));
		}
		printf("\n");
		i = j;
	}
	for (int bu = 0; bu < 3; bu++) {
		int n = 0;
		for (size_t i = 0; i < nitems; i++)
			n += bucket_of(items[i].words) == bu;
		printf("%-12s %5d", bucket_name[bu], n);
		for (int b = 0; b < nb; b++) {
			int ok = 0;
			for (size_t i = 0; i < nitems; i++)
				if (bucket_of(items[i].words) == bu)
					ok += bs[b].ok[i];
			pct(ok, n);
		}
		printf("\n");
	}
	printf("%-12s %5zu", "overall", nitems);
	for (int b = 0; b < nb; b++) {
		int ok = 0;
		for (size_t i = 0; i < nitems; i++)
			ok += bs[b].ok[i];
		pct(ok, (int)nitems);
	}
	printf("\n%-12s %5s", "captions/s", "");
	for (int b = 0; b < nb; b++)
		printf(" %12.0f", bs[b].rate);
	printf("\n");

	/* how langid's confidence relates to being right: CLD2 without
	 * best effort answers only when sure */
	int sure_n = 0, sure_ok = 0, guess_n = 0, guess_ok = 0;
	for (size_t i = 0; i < nitems; i++) {
		if (strcmp(bs[1].got[i], "und") != 0)
			sure_n++, sure_ok += bs[5].ok[i];
		else
			guess_n++, guess_ok += bs[5].ok[i];
	}
	printf("\nlangid: CLD2 sure (cld2-strict answers) on %d captions, "
	       "%.1f%% right;\n        best-effort guess on %d, %.1f%% right\n",
	       sure_n, sure_n ? 100.0 * sure_ok / sure_n : 0, guess_n,
	       guess_n ? 100.0 * guess_ok / guess_n : 0);
	static const double th[] = {0.3, 0.5, 0.65, 0.8, 0.9};
	for (size_t t = 0; t < sizeof th / sizeof th[0]; t++) {
		int kept = 0, right = 0;
		for (size_t i = 0; i < nitems; i++) {
			char code[8];
			double conf;
			langid_detect(bs[5].h, items[i].text, items[i].len, code,
			              &conf);
			if (conf >= th[t]) {
				kept++;
				right += !strcmp(code, items[i].lang);
			}
		}
		printf("langid conf >= %.2f: %d of %zu kept, %.1f%% of them "
		       "right\n", th[t], kept, nitems,
		       kept ? 100.0 * right / kept : 0);
	}

	if (verbose)
		for (int b = 0; b < nb; b++) {
			printf("\n%s errors:\n", bs[b].name);
			for (size_t i = 0; i < nitems; i++)
				if (!bs[b].ok[i])
					printf("  %s->%s  %s\n", items[i].lang,
					       bs[b].got[i], items[i].text);
		}

	for (int i = 2; i <= 4; i++) {
		textcat_ReleaseClassifyFullOutput(bs[i].h, bs[i].cand);
		textcat_Done(bs[i].h);
	}
	langid_free(bs[5].h);
	return 0;
}
