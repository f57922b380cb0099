/* bpe_train.h: byte-level BPE training that writes a tiktoken rank file.
 *
 * Text is split with the encoding's pre-tokenizer pattern exactly as
 * bpe_encode_ordinary() splits it (same PCRE2 flags, same handling of
 * bytes no match covers and of empty matches), and the distinct pieces are
 * counted in a hash map: memory follows the number of distinct pieces, not
 * the size of the text.
 *
 * Training then repeatedly takes the adjacent pair of tokens with the
 * highest count over all pieces (count = occurrences x piece frequency)
 * and makes its bytes the next token.  Ties: higher count, then the
 * lexicographically smaller bytes of the joined token, then the shorter
 * left part.  Counts are updated incrementally (a max-heap of pairs with
 * lazy invalidation, and per pair the list of pieces that contain it).
 *
 * tiktoken semantics, by construction.  The tiktoken encoder merges by the
 * rank of the joined *bytes* (any adjacent pair whose bytes form a token),
 * not by the learned pair.  So after adding a token T the trainer does not
 * just join the pair it picked: in every piece that holds an adjacent pair
 * whose bytes make T (whatever the split), it continues tiktoken's merge
 * loop from the piece's current parts (joining T, and then any pair whose
 * bytes form an older token -- a cascade).  A piece's parts are therefore
 * always exactly what bpe_encode_ordinary() gives with the ranks so far
 * (tokens are only ever added at the highest rank, so the encoder's merge
 * sequence with the new vocabulary is the old one continued).  It follows
 * that no adjacent pair's bytes ever form an existing token, so a merge can
 * never produce bytes that are already a token: ranks stay unique, and the
 * rank of a token is its merge order.  (Should it ever happen anyway, the
 * pair is dropped and training goes on: see bpe_trainer_train.)
 *
 * The rank file: ranks 0..255 are the single bytes in byte order, then the
 * merged tokens in merge order; special tokens are not in it (the caller
 * numbers them from bpe_trainer_ntokens() on).
 *
 * Deterministic: the same pieces with the same counts give the same file,
 * whatever the order of bpe_trainer_add() calls or of absorbed trainers.
 */
#ifndef MVL_BPE_TRAIN_H
#define MVL_BPE_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct bpe_trainer bpe_trainer;

/* bpe_trainer_new() : a trainer for the PCRE2 pattern, as bpe_pattern()
 * returns it (\s and \S read as Unicode White_Space, like bpe.c).
 * @return NULL with *err filled when the pattern does not compile. */
bpe_trainer *bpe_trainer_new(const char *pattern, mvl_err *err);
void bpe_trainer_free(bpe_trainer *t);

/* bpe_trainer_add() : pre-tokenizes text[0..n) and counts its pieces.
 * Streaming: call once per document or chunk; pieces never cross calls
 * (split at document boundaries).  Any bytes are accepted; invalid UTF-8 is
 * split the way bpe_encode_ordinary() splits it.  Not thread-safe on one
 * trainer: give each thread its own and bpe_trainer_absorb() them. */
void bpe_trainer_add(bpe_trainer *t, const char *text, size_t n);

/* bpe_trainer_add_piece() : counts one already split piece count times
 * (for callers that keep their own piece counts). */
void bpe_trainer_add_piece(bpe_trainer *t, const void *piece, size_t n, uint64_t count);

/* bpe_trainer_absorb() : adds src's piece counts to dst (both untrained,
 * same pattern); src is left as it was.  For per-thread trainers. */
void bpe_trainer_absorb(bpe_trainer *dst, const bpe_trainer *src);

/* bpe_trainer_npieces() : distinct pieces counted so far. */
size_t bpe_trainer_npieces(const bpe_trainer *t);

/* bpe_trainer_train() : learns merges until the vocabulary holds
 * vocab_size ordinary tokens (>= 256: the 256 bytes plus the merges;
 * special tokens are counted separately by the caller), or no pair occurs
 * min_frequency (>= 1) times, whichever comes first, then writes the rank
 * file to out_tiktoken through a temporary name renamed when complete
 * (out_tiktoken NULL: write nothing).  Once per trainer.
 * @return 0, or -1 with *err filled. */
int bpe_trainer_train(bpe_trainer *t, int vocab_size, int min_frequency, const char *out_tiktoken,
		      mvl_err *err);

/* After training: */

/* bpe_trainer_ntokens() : ordinary tokens learned (256 + merges). */
size_t bpe_trainer_ntokens(const bpe_trainer *t);
/* bpe_trainer_token() : the bytes of token `rank` (*len set); NULL when
 * rank >= ntokens. */
const uint8_t *bpe_trainer_token(const bpe_trainer *t, uint32_t rank, size_t *len);
/* bpe_trainer_merge() : the pair (left, right) whose count picked token
 * `rank` (>= 256) and that count.  @return 0, or -1 for a byte token. */
int bpe_trainer_merge(const bpe_trainer *t, uint32_t rank, uint32_t *left, uint32_t *right,
		      uint64_t *count);

/* bpe_trainer_encode() : ids of text under the trained vocabulary, by the
 * trainer's own bookkeeping (a piece seen in training gives the parts the
 * trainer ended with; an unseen piece is merged from its bytes with the
 * same rules).  Appends to *ids like bpe_encode_ordinary(); the two must
 * agree on every input (that is what the unit test checks).
 * @return the number of ids appended. */
size_t bpe_trainer_encode(bpe_trainer *t, const char *text, size_t n, uint32_t **ids, size_t *cap,
			  size_t *len);

#endif
