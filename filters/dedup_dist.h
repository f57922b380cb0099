/* dedup_dist.h: deduplication across the ranks of an mpirun job, with the
 * same verdicts as one process reading all the inputs in order.
 *
 * One process keeps the first of a cluster greedily: a sample is dropped
 * when it matches a sample *kept* before it (the best match by the index's
 * own rule), so A~B~C keeps A and C when B was dropped for A and C is not
 * close to A.  No per-owner rule can decide that alone (whether B counts
 * depends on B's own fate), so the work is split in two:
 *
 *   1. find the candidate matches, distributed: every rank sends each of
 *      its samples' index keys (exact hashes; pHash bands with the hash
 *      and thumbnail; MinHash LSH band keys with the sketch) to the rank
 *      that owns that key (a hash of it mod ranks), with MPI_Alltoallv.
 *      An owner sees every sample holding its keys, groups equal exact
 *      hashes, and verifies near pairs sharing a band (Hamming, thumbnail,
 *      Jaccard: the single-process thresholds) class by class (samples
 *      with the same hash and thumbnail, or the same sketch, match alike),
 *      and reports the groups, the classes' members and the matching
 *      class pairs to rank 0.
 *   2. resolve, on rank 0: walk the samples in the global order once,
 *      applying the single-process lookup to the samples kept so far,
 *      each group and class standing for its first kept member (exact
 *      kinds in their order, then the nearest image, then the most
 *      similar caption; ties to the earliest kept).
 *      Only samples with a match cost anything there.  The verdicts go back
 *      to their ranks (MPI_Scatterv).
 *
 * Samples are numbered per rank in input order; the ranks' inputs are
 * contiguous blocks of the full input list, so (rank, number) is the input
 * order of a single run.
 */
#ifndef MVL_DEDUP_DIST_H
#define MVL_DEDUP_DIST_H

#include <stdint.h>

#include "dist.h"
#include "phash.h"

/* the kinds of match, in the order a single process tries them */
enum { DD_EXACT_IMAGE, DD_EXACT_PIXELS, DD_EXACT_PAIR, DD_EXACT_CAPTION, DD_NEAR_IMAGE,
       DD_NEAR_CAPTION, DD_KINDS };

typedef struct dd_conf {
	int img_bands, max_hamming;
	double max_thumb;
	int num_perm, lsh_bands, lsh_rows;
	double jaccard;
} dd_conf;

/* One sample's keys: bit k of `has` says kind k is present (exact[k] for
 * the four exact kinds; hash + thumb for near images; a sketch of
 * num_perm slots for near captions). */
typedef struct dd_item {
	uint32_t has;
	uint64_t exact[4][2];
	uint64_t hash;
	uint8_t thumb[THUMB_BYTES];
} dd_item;

typedef struct dedup_dist dedup_dist;

dedup_dist *dedup_dist_new(const dd_conf *c);
void dedup_dist_free(dedup_dist *x);

/* dedup_dist_add() : the next sample of this rank, in input order (sketch
 * may be NULL without DD_NEAR_CAPTION).  @return its number. */
uint32_t dedup_dist_add(dedup_dist *x, const dd_item *it, const uint32_t *sketch);

/* dedup_dist_decide() : collective, after every rank added all its
 * samples.  @return 0 or -1 with *err (the same on every rank). */
int dedup_dist_decide(dedup_dist *x, const dist *d, mvl_err *err);

/* dedup_dist_verdict() : after decide: -1 when sample i is kept, else the
 * kind that dropped it, with *kept the global number of the kept sample it
 * duplicates (as single-process dedup numbers its kept samples) and *dist
 * the distance reported (Hamming bits, 1 - Jaccard, 0 when exact). */
int dedup_dist_verdict(const dedup_dist *x, uint32_t i, uint64_t *kept, double *dist);

#endif
