/* data.h: what the trainer reads: batches of sequences from packs (or
 * synthetic ones of a preset's shape), held-out evaluation, and finding a
 * run's checkpoints.  Used by mvl train, mvl average and mvl generate. */
#ifndef MVL_DATA_H
#define MVL_DATA_H

#include <stdint.h>

#include "model.h"
#include "packfile.h"

/* B sequences of L tokens and their images (pixels owned) */
typedef struct batch_buf {
	int B, L;
	uint32_t *ids, *pos, *seg;
	uint8_t *loss;
	mimage *img;
	int nimg, imgcap;
	uint8_t **px; /* owned pixel buffers, one per image */
} batch_buf;

void batch_alloc(batch_buf *b, int B, int L);
void batch_clear_images(batch_buf *b);
void batch_free(batch_buf *b);
uint8_t *batch_add_image(batch_buf *b, int seq, int token, int h, int w);

/* synth_seq() : synthetic sequence g into slot s: one image of the preset's
 * size, then random text to the end; a function of (seed, g) only, so any
 * split of the global batch (accumulation, ranks) sees the same data. */
void synth_seq(batch_buf *b, int s, uint64_t seed, uint64_t g, const model_config *c, uint32_t pad, uint32_t vstart,
	       uint32_t vend);

/* sequences from packs, in order, wrapping */
typedef struct pack_src {
	uint32_t image_pad; /* the pad id (from the first image seen), or UINT32_MAX */
	pack_reader **r;
	int n;
	uint64_t total;
} pack_src;

int pack_src_open(pack_src *p, char **paths, int n, uint32_t L, mvl_err *err);
void pack_src_close(pack_src *p);
/* pack_fill() : sequence g (modulo the total) into slot s. */
int pack_fill(pack_src *p, batch_buf *b, int s, uint64_t g, mvl_err *err);

/* eval_pack() : the mean loss over the first max sequences of ev (0: all),
 * B at a time (bb sized B x L). */
int eval_pack(model *m, pack_src *ev, batch_buf *bb, int B, int L, uint64_t max, double *mean, mvl_err *err);

/* ckpt_latest() : the checkpoint directory a name means: itself when it
 * holds state.json, else the one its "latest" file names. */
char *ckpt_latest(const char *out, mvl_err *err);
/* ckpt_weights() : the model.safetensors a name means (a checkpoint, a
 * run directory, or the file itself). */
char *ckpt_weights(const char *name, mvl_err *err);

#endif
