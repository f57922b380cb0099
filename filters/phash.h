/* phash.h: image signatures for near-duplicate search.
 *
 * pHash: the 64-bit DCT perceptual hash.  The image is reduced to a 32x32
 * luminance thumbnail (area average), a 2D DCT-II is taken, and the 8x8
 * lowest frequencies (the DC term included) give one bit each: above
 * their median or not (terms below half a luma level's worth count as 0,
 * so coding noise does not flip them).  dHash (option): 9x8 luminance,
 * one bit per horizontally adjacent pair (left brighter, by more than one
 * level).  Bits row-major, bit 63 = (0, 0).  Hamming distance between
 * hashes measures dissimilarity.
 *
 * A luminance hash alone confuses pictures that differ only in colour, so
 * each signature also holds a 4x4 RGB thumbnail (48 bytes, area average,
 * aligned on the whole image) for a colour-aware check of candidates.
 */
#ifndef MVL_PHASH_H
#define MVL_PHASH_H

#include <stdint.h>

#include "image.h"

enum { THUMB_SIDE = 4, THUMB_BYTES = THUMB_SIDE * THUMB_SIDE * 3 };

typedef struct img_sig {
	uint64_t phash;
	uint64_t dhash;
	uint8_t thumb[THUMB_BYTES]; /* 4x4 RGB, rows top to bottom */
} img_sig;

/* img_signature() : pHash, dHash and the RGB thumbnail of an image of any
 * size >= 1x1 (the caller decodes it, at a reduced DCT scale when large:
 * 32x32 of detail is all pHash looks at).  @return 0, or -1 on a 0-sized
 * image. */
int img_signature(const img_rgb *im, img_sig *out);

/* phash_from_luma32() : pHash of a 32x32 luminance thumbnail (row-major). */
uint64_t phash_from_luma32(const float luma[32 * 32]);

/* hamming64() : differing bits. */
static inline int hamming64(uint64_t a, uint64_t b)
{
	return __builtin_popcountll(a ^ b);
}

/* thumb_distance() : colour-aware distance of two thumbnails: the mean
 * over the 16 cells of the largest absolute channel difference (0..255). */
double thumb_distance(const uint8_t a[THUMB_BYTES], const uint8_t b[THUMB_BYTES]);

#endif
