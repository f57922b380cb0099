/* dedup_index.h: the in-memory indexes behind `mvl dedup`, each bounded by
 * a fixed number of bytes per entry (no per-entry allocation).
 *
 *   hset128   exact: 128-bit hashes -> entry number (open addressing)
 *   img_index near images: pHash split into `bands` equal bands; an entry
 *             is chained under each band's value, so a query visits only
 *             entries sharing at least one band (pigeonhole: every pair
 *             within Hamming distance bands-1 does); candidates are then
 *             verified on the full hash and the RGB thumbnail
 *   cap_index near captions: MinHash LSH, one hash table per band, the
 *             sketches kept for verification
 */
#ifndef MVL_DEDUP_INDEX_H
#define MVL_DEDUP_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "phash.h"

/* ---- exact ---- */
typedef struct hset128 hset128;
hset128 *hset128_new(void);
void hset128_free(hset128 *h);
/* hset128_find() : the value stored for (lo, hi), or -1. */
int64_t hset128_find(const hset128 *h, uint64_t lo, uint64_t hi);
void hset128_put(hset128 *h, uint64_t lo, uint64_t hi, uint32_t value);
size_t hset128_bytes(const hset128 *h);

/* ---- near images ---- */
enum { IMG_MAX_BANDS = 16 };
typedef struct img_index img_index;
/* bands 2..16 (widths 64/bands bits; at most 16 bits each, so >= 4). */
img_index *img_index_new(int bands);
void img_index_free(img_index *x);
/* img_index_add() : @return the entry number. */
uint32_t img_index_add(img_index *x, uint64_t hash, const uint8_t thumb[THUMB_BYTES], uint32_t value);
/* img_index_query() : the best verified match (smallest Hamming distance,
 * then thumbnail distance, then entry number) with hamming <= max_hamming
 * and thumb_distance <= max_thumb; @return its value, or -1.  *dist and
 * *tdist get the distances. */
int64_t img_index_query(const img_index *x, uint64_t hash, const uint8_t thumb[THUMB_BYTES],
			int max_hamming, double max_thumb, int *dist, double *tdist);
size_t img_index_bytes(const img_index *x);
/* img_band_value() : band b of hash in an index of `bands` bands (the
 * value entries are chained under); pairs sharing one are candidates. */
uint32_t img_band_value(int bands, uint64_t hash, int b);
uint32_t img_index_size(const img_index *x);

/* ---- near captions ---- */
typedef struct cap_index cap_index;
cap_index *cap_index_new(int num_perm, int bands, int rows);
void cap_index_free(cap_index *x);
uint32_t cap_index_add(cap_index *x, const uint32_t *sig, uint32_t value);
/* cap_index_query() : the best candidate sharing a band whose estimated
 * Jaccard is >= threshold (highest similarity, then entry number);
 * @return its value, or -1; *sim gets the similarity. */
int64_t cap_index_query(const cap_index *x, const uint32_t *sig, double threshold, double *sim);
size_t cap_index_bytes(const cap_index *x);

#endif
