/* langid.h: language identification of short texts (captions, alt-texts).
 *
 * Backend: CLD2, the Compact Language Detector 2 (Debian libcld2, the
 * detector Dolma uses), chosen over libexttextcat by measured accuracy on
 * 560 short captions in 14 languages (scripts/eval_langid.c): 96.8% top-1
 * against 84.6%, and 70x faster.  langid adds a Han/kana rule (97.7%).
 *
 *     mvl_err err;
 *     langid *l = langid_new(&err);
 *     char code[8]; double conf;
 *     langid_detect(l, "a brown dog on the beach", 24, code, &conf);
 *     // code = "en", conf = 0.96
 *     langid_free(l);
 */
#ifndef MVL_LANGID_H
#define MVL_LANGID_H

#include <stddef.h>

#include "util.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct langid langid;    /* one per thread; not shared */

/* langid_new() : a detector (CLD2's tables are compiled in: nothing to load).
 * @return the handle, or NULL with *err set (out of memory). */
langid *langid_new(mvl_err *err);

/* langid_free() : releases l (NULL is fine). */
void langid_free(langid *l);

/* langid_detect() : the language of text[0..n).  Text is UTF-8; invalid
 * bytes, control characters and noncharacters are read as spaces (never a
 * crash); only the first LANGID_MAX_BYTES bytes are read.
 * code[8] receives an ISO 639-1 code ("en", "zh", ...; ISO 639-3 where
 * 639-1 has none: "haw", "ceb"), or "und" when there is nothing to judge
 * (no letters: empty, digits, punctuation, emoji).  Traditional Chinese is
 * "zh"; CLD2's legacy codes are mapped ("iw" -> "he", "jw" -> "jv");
 * Han text without any kana is "zh" even where CLD2 guesses "ja".
 * *conf receives a confidence 0..1:
 *     CLD2 sure (it answers without its best-effort flag, is_reliable):
 *       the percent of the text in the top language / 100: 0.9-1.0 for a
 *       one-language caption (98.7% right on tests/data/lang), lower for
 *       mixed-language text;
 *     otherwise (short or ambiguous text) CLD2's best-effort guess, at
 *       0.45 x that percent: at most 0.45 (83% right there);
 *     "und": 0.
 * So a threshold of 0.5 drops every guess and every sure answer whose
 * language covers less than half the text.
 * @return 0, or -1 on error (NULL l, code or conf; NULL text with n > 0):
 * code is then "und" and conf 0. */
int langid_detect(langid *l, const char *text, size_t n, char code[8],
                  double *conf);

/* langid_backend() : "cld2" (for reports). */
const char *langid_backend(void);

#define LANGID_MAX_BYTES 16384

/* ----------------------------------------------- internal: the CLD2 shim
 * langid_cld2.cc wraps CLD2's C++ API; langid.c and scripts/eval_langid.c
 * call it.  Not for other modules. */
typedef struct langid_cld2_result {
	const char *code[3]; /* CLD2 LanguageCode() of the top 3 ("un": none) */
	int percent[3];      /* percent of the text bytes in each */
	double score[3];     /* CLD2's normalized score per language */
	int text_bytes;      /* letter bytes scored */
	int reliable;        /* CLD2's is_reliable */
	int valid_prefix;    /* leading bytes that are valid UTF-8 */
} langid_cld2_result;

/* langid_normalize() : a detector's language name as an ISO 639-1 code in
 * code[8]: the subtag before the first '-' ("zh-Hant" -> "zh", textcat's
 * "en--utf8" -> "en"), legacy codes mapped ("iw" -> "he"), "und" for
 * CLD2's unknown / script-only / joke languages and anything malformed. */
void langid_normalize(const char *raw, char code[8]);
/* langid_cld2_detect() : CLD2's ExtDetectLanguageSummaryCheckUTF8 on plain
 * text; best_effort sets kCLDFlagBestEffort (a guess even on short text).
 * Thread-safe (CLD2 keeps no state).  @return 0, or -1 on error. */
int langid_cld2_detect(const char *text, int len, int best_effort,
                       langid_cld2_result *r);
/* langid_cld2_version() : CLD2's version and table date. */
const char *langid_cld2_version(void);
#ifdef __cplusplus
}
#endif

#endif
