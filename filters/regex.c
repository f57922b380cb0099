/* regex.c: PCRE2 helpers. */
#include "regex.h"

#include <string.h>

pcre2_code *re_compile(const char *pattern, int caseless, mvl_err *err)
{
	int ec;
	PCRE2_SIZE eo;
	uint32_t flags = PCRE2_UTF | PCRE2_UCP | (caseless ? PCRE2_CASELESS : 0);
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, flags, &ec, &eo, NULL);
	if (!re) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(ec, msg, sizeof msg);
		mvl_errf(err, "pattern '%s' at offset %zu: %s", pattern, (size_t)eo, (char *)msg);
		return NULL;
	}
	pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* interpreted if JIT is unavailable */
	return re;
}

int re_search(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n)
{
	return pcre2_match(re, (PCRE2_SPTR)s, n, 0, PCRE2_NO_UTF_CHECK, md, NULL) >= 0;
}

int re_replace_all(const pcre2_code *re, pcre2_match_data *md, const char *s, size_t n,
		   const char *repl, buf *out)
{
	/* hand-rolled rather than pcre2_substitute: a literal replacement and
	 * no output-size retry loop */
	out->len = 0;
	buf_reserve(out, n + 1);
	size_t pos = 0;
	int count = 0;
	size_t rl = strlen(repl);
	while (pos <= n) {
		int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
		if (rc < 0)
			break;
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
		buf_append(out, s + pos, ov[0] - pos);
		buf_append(out, repl, rl);
		count++;
		if (ov[1] == ov[0]) { /* empty match: step one code point */
			if (ov[1] >= n) {
				pos = n + 1;
				break;
			}
			size_t k = ov[1] + 1;
			while (k < n && ((unsigned char)s[k] & 0xC0) == 0x80)
				k++;
			buf_append(out, s + ov[1], k - ov[1]);
			pos = k;
		} else {
			pos = ov[1];
		}
	}
	if (pos <= n)
		buf_append(out, s + pos, n - pos);
	else
		buf_append(out, "", 0);
	return count;
}
