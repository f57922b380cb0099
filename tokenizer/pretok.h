/* pretok.h: the published gpt2 (= r50k_base) and cl100k_base pre-tokenizer
 * patterns as hand-written scanners.
 *
 * PCRE2's JIT spent about a third of encoding time on these two patterns
 * (an alternation tried branch by branch, classes of thousands of ranges).
 * A scanner decides each piece from one or two character classes instead.
 * It is the same regex, not an approximation:
 *   - the classes (\p{L}, \p{N}, \s as White_Space, with the Unicode 15/16
 *     additions) are asked of PCRE2 itself, compiled exactly as the regex
 *     path compiles them, once per code point seen, and remembered;
 *   - invalid UTF-8 is treated as PCRE2_MATCH_INVALID_UTF does: no match
 *     spans it, lookaheads see it as "not \S", and the invalid bytes
 *     between two matches are returned as a gap;
 *   - tests/unit/test_pretok.c compares every piece boundary with PCRE2's
 *     on random text from an adversarial alphabet.
 * Any other pattern (o200k_base, a tokenizer.json's own) keeps PCRE2.
 */
#ifndef MVL_PRETOK_H
#define MVL_PRETOK_H

#include <stddef.h>
#include <stdint.h>

typedef struct pretok pretok;

/* pretok_new() : a scanner equal to pattern (a tiktoken pattern, as
 * bpe_pattern() spells it), or NULL when pattern is not one it knows. */
pretok *pretok_new(const char *pattern);
void pretok_free(pretok *pt);

/* pretok_next() : the piece the pattern matches at or after t[pos..n):
 * sets *start (bytes pos..*start are invalid UTF-8 no piece covers, usually
 * none) and returns its end.  *start == end == n when no piece is left.
 * Safe to call from several threads on one scanner. */
size_t pretok_next(const pretok *pt, const uint8_t *t, size_t n, size_t pos, size_t *start);

#endif
