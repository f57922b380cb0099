/* text.h: what the text filters share: words, code points, ICU scratch.
 *
 * Words (filters/README.md): for pure-ASCII text, maximal runs of
 * non-whitespace bytes, as DataComp and most Python filters split; for
 * other text, ICU word-break segments holding a letter, digit, kana or
 * ideograph, so Chinese, Japanese and Thai captions without spaces have
 * words too.  A text_ctx holds one thread's ICU iterator and buffers.
 */
#ifndef MVL_TEXT_H
#define MVL_TEXT_H

#include <stddef.h>
#include <stdint.h>

typedef struct text_ctx text_ctx;
text_ctx *text_ctx_new(void);
void text_ctx_free(text_ctx *t);

typedef struct word_span {
	uint32_t off, len; /* bytes in the UTF-8 text */
} word_span;

/* text_words() : the words of s[0..n) (UTF-8; invalid bytes are taken as
 * U+FFFD).  *out points into t and is valid until the next call.
 * @return the number of words. */
size_t text_words(text_ctx *t, const char *s, size_t n, const word_span **out);

/* text_count_words() : min(number of words, limit) (limit 0: all), by the
 * rules of text_words(); for pure-ASCII text it stops reading at the
 * limit, so "at least 3 words?" costs a few bytes, not the caption. */
size_t text_count_words(text_ctx *t, const char *s, size_t n, size_t limit);

/* text_words_icu() : like text_words() but always by ICU word break, so
 * punctuation never sticks to a word ("bad," -> "bad"), ASCII included:
 * for matching words against lists. */
size_t text_words_icu(text_ctx *t, const char *s, size_t n, const word_span **out);

/* text_is_ascii() : 1 when every byte is below 0x80. */
int text_is_ascii(const char *s, size_t n);

/* utf8_next() : decodes the code point at s[*i] (i < n) and advances *i;
 * an invalid byte yields U+FFFD and advances by one. */
uint32_t utf8_next(const char *s, size_t n, size_t *i);
/* utf8_put() : appends code point c to out as UTF-8. */
void utf8_put(uint32_t c, char **out);

/* text_to_utf16() : converts into t's UTF-16 buffer; *len16 gets its
 * length.  When map is not NULL it receives, for each UTF-16 unit and one
 * past the end, the byte offset it came from.  @return the buffer. */
uint16_t *text_to_utf16(text_ctx *t, const char *s, size_t n, int32_t *len16,
			const uint32_t **map);

#endif
