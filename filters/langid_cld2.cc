// langid_cld2.cc: the C face of CLD2 (Compact Language Detector 2), for
// langid.c and scripts/eval_langid.c.  CLD2's API is C++ only; this file is
// the only C++ in mvl and exports plain C functions (see langid.h).
//
// Build: g++ -O2 -c langid_cld2.cc (no exceptions escape; the C++ runtime
// is needed at link time: -lcld2 -lstdc++).

#include <cstdio> // before CLD2's header, which uses FILE without it
#include <cstring>

#include <cld2/public/compact_lang_det.h>
#include <cld2/public/encodings.h>

#include "langid.h"

extern "C" int langid_cld2_detect(const char *text, int len, int best_effort,
                                  langid_cld2_result *r)
{
	std::memset(r, 0, sizeof *r);
	for (int i = 0; i < 3; i++)
		r->code[i] = "un";
	if (text == NULL || len < 0)
		return -1;
	try {
		CLD2::CLDHints hints = {NULL, NULL, CLD2::UNKNOWN_ENCODING,
		                        CLD2::UNKNOWN_LANGUAGE};
		CLD2::Language lang3[3];
		int percent3[3];
		double score3[3];
		int text_bytes = 0, valid_prefix = 0;
		bool reliable = false;
		int flags = best_effort ? CLD2::kCLDFlagBestEffort : 0;

		// is_plain_text = true: captions are not HTML; the CheckUTF8 form
		// stops at the first invalid byte instead of reading past it.
		CLD2::ExtDetectLanguageSummaryCheckUTF8(
			text, len, true, &hints, flags, lang3, percent3, score3,
			NULL, &text_bytes, &reliable, &valid_prefix);
		for (int i = 0; i < 3; i++) {
			r->code[i] = CLD2::LanguageCode(lang3[i]);
			r->percent[i] = percent3[i];
			r->score[i] = score3[i];
		}
		r->text_bytes = text_bytes;
		r->reliable = reliable ? 1 : 0;
		r->valid_prefix = valid_prefix;
		return 0;
	} catch (...) {
		return -1;
	}
}

extern "C" const char *langid_cld2_version(void)
{
	return CLD2::DetectLanguageVersion();
}
