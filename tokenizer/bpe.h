/* bpe.h: byte-level BPE as tiktoken defines it: load rank files, split
 * text into pieces with the encoding's pre-tokenizer pattern (PCRE2, JIT),
 * merge each piece's bytes by rank, decode ids back to bytes.
 *
 * A piece is merged by always joining the adjacent pair whose joined bytes
 * have the lowest rank, leftmost first, as tiktoken's byte_pair_merge
 * does; pairs sit in a heap, so a piece costs O(n log n) instead of
 * tiktoken's O(n^2) rescans (a 1 MB piece without any pre-token boundary
 * is the worst case that matters).
 */
#ifndef MVL_BPE_H
#define MVL_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct bpe bpe;
typedef struct bpe_ctx bpe_ctx; /* per-thread scratch */

/* The pre-tokenizer patterns tiktoken publishes, by encoding name
 * ("gpt2" / "r50k_base", "cl100k_base", "o200k_base"); NULL if unknown. */
const char *bpe_pattern(const char *encoding);

/* bpe_compile_pattern() : a tiktoken (Rust regex) pattern compiled for
 * PCRE2 as the encoder reads it (White_Space for \\s, Unicode 16 classes,
 * invalid UTF-8 tolerated, JIT): a pcre2_code * (8-bit), or NULL + *err.
 * The trainer uses it too, so both split text identically. */
void *bpe_compile_pattern(const char *pattern, mvl_err *err);

/* bpe_load_tiktoken() : a .tiktoken file (base64 token, space, rank per
 * line) with the pre-tokenizer pattern.  Duplicate tokens or ranks and
 * malformed lines are errors naming file and line. */
bpe *bpe_load_tiktoken(const char *path, const char *pattern, mvl_err *err);
/* bpe_load_hf() : a Hugging Face tokenizer.json of model type BPE with a
 * byte-level pre-tokenizer (ByteLevel, or Split(Regex) + ByteLevel), in
 * either merges format ("a b" or ["a", "b"]); the i-th merge's token gets
 * rank i, added_tokens become special tokens.  A normalizer that is one
 * Unicode normal form (NFC as Qwen2's, NFD, NFKC, NFKD; alone or as a
 * one-step Sequence) is applied to the text between special tokens before
 * pre-tokenization, invalid UTF-8 becoming U+FFFD first; other normalizers
 * and pre-tokenizers are refused with a message naming them. */
bpe *bpe_load_hf(const char *path, mvl_err *err);

/* bpe_open() : a tokenizer file by its name: PATH.tiktoken (with the
 * pattern and special tokens of PATH.json beside it, as `mvl tok train`
 * writes them ("pattern") or tiktoken's exports ("pat_str"); else
 * encoding's pattern and tiktoken's specials), anything
 * else a tokenizer.json. */
bpe *bpe_open(const char *path, const char *encoding, mvl_err *err);

void bpe_free(bpe *b);

/* Token ids (ranks, vocab ids, special ids) are below BPE_MAX_ID: the id
 * tables are as long as the largest id, so a file naming id 4e9 would
 * otherwise cost gigabytes.  2^22 is 16 times the largest published
 * vocabulary (~262k); loaders refuse larger ids with an error. */
enum { BPE_MAX_ID = 1 << 22 };

/* bpe_add_special() : a special token (matched before pre-tokenization
 * when allowed; never produced by ordinary encoding).  @return 0, or -1
 * when id is an ordinary token's or not below BPE_MAX_ID. */
int bpe_add_special(bpe *b, const char *text, uint32_t id, mvl_err *err);
size_t bpe_vocab_size(const bpe *b); /* largest id + 1 */
/* bpe_special_id() : the id of special token text, or -1. */
int64_t bpe_special_id(const bpe *b, const char *text);

bpe_ctx *bpe_ctx_new(const bpe *b);
void bpe_ctx_free(bpe_ctx *c);

/* bpe_encode_ordinary() : ids of text (special tokens are plain text),
 * appended to *ids (grown as needed).  Invalid UTF-8 is encoded byte by
 * byte like any other bytes (the byte-level vocabulary covers them).
 * @return the number of ids appended. */
size_t bpe_encode_ordinary(const bpe *b, bpe_ctx *c, const char *text, size_t n, uint32_t **ids,
			   size_t *cap, size_t *len);

/* bpe_add_preset_specials() : the special tokens tiktoken defines for
 * encoding ("<|endoftext|>" ...).  @return 0 or -1. */
int bpe_add_preset_specials(bpe *b, const char *encoding, mvl_err *err);

/* How bpe_encode() treats special tokens found in the text, as tiktoken's
 * allowed_special / disallowed_special do:
 *   ALLOW     each becomes its id
 *   DISALLOW  an error (tiktoken's default: text from the web must not be
 *             able to inject control tokens)
 *   ORDINARY  encoded as the plain text it is (encode_ordinary) */
enum { BPE_SPECIAL_ALLOW, BPE_SPECIAL_DISALLOW, BPE_SPECIAL_ORDINARY };

/* bpe_encode() : like bpe_encode_ordinary() with special tokens handled
 * per mode (leftmost first, then longest).  @return 0, or -1 with *err
 * when a disallowed special token occurs. */
int bpe_encode(const bpe *b, bpe_ctx *c, const char *text, size_t n, int specials_mode, uint32_t **ids,
	       size_t *cap, size_t *len, mvl_err *err);

/* bpe_decode() : the bytes of ids appended to out.  @return 0, or -1 on an
 * id outside the vocabulary. */
int bpe_decode(const bpe *b, const uint32_t *ids, size_t n, buf *out, mvl_err *err);

#endif
