/* pack.h: samples into fixed-length sequences with little padding.
 *
 * Best-fit decreasing over a bounded window, so it streams: samples wait
 * in a window of W; while the window is full, its longest sample goes into
 * the open sequence ("bin") with the least room that still fits it, or
 * opens a new one; with B bins open, the fullest is written out first.  At
 * the end the window drains longest first and every bin is written.  The
 * greedy packer (one open bin, in arrival order) is kept for comparison.
 * Deterministic: output depends only on the input order.
 *
 * In a written sequence each sample is one segment (ids 1..k, 0 for the
 * padding), positions restart at 0, and a segment's first token never
 * carries loss (nothing before it in the segment predicts it).
 */
#ifndef MVL_PACK_H
#define MVL_PACK_H

#include <stdint.h>

#include "packfile.h"

/* One sample, laid out (layout.h), at most seq_len tokens. */
typedef struct pack_item {
	char *key;
	uint32_t n;
	uint32_t *ids;
	uint8_t *loss;
	uint32_t img_h, img_w;   /* 0 x 0: no image */
	uint32_t img_token;      /* index of its first image pad */
	uint8_t *px;             /* img_h * img_w * 3 RGB */
	int truncated;
} pack_item;
void pack_item_free(pack_item *it); /* frees what it owns, and it */

typedef struct packer packer;

/* called with each finished sequence, in output order */
typedef int (*pack_emit_fn)(void *ctx, const pack_seq *s, mvl_err *err);

typedef struct packer_opts {
	uint32_t seq_len;
	int window;     /* samples waiting to be placed (1: no lookahead) */
	int open_bins;  /* sequences open at once */
	int greedy;     /* 1: the sequential packer instead */
	uint32_t pad_id;
} packer_opts;

packer *packer_new(const packer_opts *o, pack_emit_fn emit, void *ctx);
/* packer_add() : takes it (freed by the packer).  @return 0 or -1 from emit. */
int packer_add(packer *p, pack_item *it, mvl_err *err);
/* packer_finish() : places and writes everything left.  @return 0 / -1. */
int packer_finish(packer *p, mvl_err *err);

typedef struct pack_stats {
	uint64_t sequences, samples, tokens, truncated, images;
} pack_stats;
pack_stats packer_stats(const packer *p);
void packer_free(packer *p);

#endif
