/* minhash.h: MinHash sketches of captions and LSH banding.
 *
 * A caption's shingles are its word n-grams (words as text_words_icu()
 * gives them, lower-cased; a caption with fewer than n words is one
 * shingle).  Each shingle is hashed once (xxh3 64) and permuted by
 * num_perm universal hash functions h_i(x) = (a_i * x + b_i) mod p
 * (p = 2^61 - 1, a_i, b_i from the seed); the sketch keeps each minimum
 * (low 32 bits).  The share of equal sketch slots estimates the Jaccard
 * similarity of the shingle sets.
 *
 * LSH: the sketch is cut into `bands` bands of `rows` slots; two captions
 * become candidates when any band is equal.  The probability of that, for
 * Jaccard s, is 1 - (1 - s^rows)^bands (the S-curve); lsh_params() picks
 * bands x rows <= num_perm minimising the false-positive area below the
 * threshold plus the false-negative area above it (equal weights), as
 * datasketch does.
 */
#ifndef MVL_MINHASH_H
#define MVL_MINHASH_H

#include <stddef.h>
#include <stdint.h>

#include "text.h"

typedef struct minhash minhash;

/* minhash_new() : num_perm 1..1024, ngram >= 1.  NULL on bad values. */
minhash *minhash_new(int num_perm, int ngram, uint64_t seed);
void minhash_free(minhash *m);
int minhash_num_perm(const minhash *m);

/* minhash_sketch() : the sketch of text (UTF-8) into sig[num_perm]; uses
 * t for word segmentation and lower-casing scratch.  An empty text (no
 * words) gets a sketch of all 0xFFFFFFFF.  @return the number of shingles. */
size_t minhash_sketch(const minhash *m, text_ctx *t, const char *text, size_t n, uint32_t *sig);

/* minhash_jaccard() : estimated Jaccard similarity of two sketches. */
double minhash_jaccard(const uint32_t *a, const uint32_t *b, int num_perm);

/* lsh_params() : bands and rows for a target Jaccard threshold. */
void lsh_params(double threshold, int num_perm, int *bands, int *rows);

/* lsh_probability() : 1 - (1 - s^rows)^bands. */
double lsh_probability(double s, int bands, int rows);

/* lsh_band_key() : a 64-bit key of band b of sig (rows slots). */
uint64_t lsh_band_key(const uint32_t *sig, int band, int rows);

#endif
