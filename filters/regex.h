/* regex.h: PCRE2 (JIT) patterns the filters share: compile once, match and
 * substitute from many threads, each with its own match data. */
#ifndef MVL_REGEX_H
#define MVL_REGEX_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>

#include "util.h"

/* re_compile() : UTF + UCP, JIT-compiled when the platform allows.
 * @return NULL with *err quoting the pattern and PCRE2's message. */
pcre2_code *re_compile(const char *pattern, int caseless, mvl_err *err);

/* re_search() : 1 when re matches somewhere in s[0..n) (valid UTF-8). */
int re_search(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n);

/* re_replace_all() : out = s with every match replaced by repl (literal
 * text, no $ references).  @return the number of replacements, or -1. */
int re_replace_all(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n,
		   const char *repl, buf *out);

#endif
