/* mix.h: one stage's sample stream from its sources, by token weights.
 *
 * Each source is an endless stream: its shards in an order shuffled per
 * epoch, through a bounded shuffle buffer, epoch after epoch (re-read only
 * as the budget requires).  The mixer always draws from the source that is
 * furthest behind its share (tokens drawn / weight; ties to the first
 * source), so by the end every source holds its weight of the tokens to
 * within one sample.  Tokens are counted as the packer will lay the sample
 * out (layout.h: chat template and image pads at the stage's pixel bounds).
 * Everything random comes from the recipe's seed: the same recipe and seed
 * give the same stream, byte for byte.
 *
 * Samples leave with the key SOURCE/EPOCH/KEY (unique across sources and
 * epochs) and KEY.json "mix": {"source", "kind", "epoch", "tokens"}.
 */
#ifndef MVL_MIX_H
#define MVL_MIX_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "layout.h"
#include "recipe.h"
#include "rejects.h"
#include "sample.h"

typedef struct mixer mixer;

typedef struct mix_opts {
	const char *from;       /* DIR: source NAME's shards are DIR/NAME/;
				 * NULL: the recipe's shard patterns */
	int shuffle_buffer;     /* samples held per source (memory bound) */
	uint64_t budget;        /* tokens; 0: the stage's */
} mix_opts;

/* mixer_new() : expands every mixed source's shards.  @return NULL + *err
 * (a pattern that matches nothing, a source with no shard). */
mixer *mixer_new(const recipe *r, const rstage *st, const mix_opts *o, layout *L, mvl_err *err);

/* mixer_next() : the next sample of the stream into *s.  Samples the
 * layout rejects (and unreadable members) go to rj_log with their reason
 * and are not counted.  @return 1 a sample, 0 the budget is reached, -1
 * *err (a source that has no usable sample at all). */
int mixer_next(mixer *m, sample *s, rejects *rj_log, mvl_err *err);

/* mixer_report() : the consumption record (a new JSON object):
 * {"stage", "seed", "budget", "emitted", "tokens", "sources": [{"name",
 *  "weight", "share", "tokens", "samples", "epochs", "samples_per_epoch",
 *  "shards_opened", "rejected"}]}.  With table, also prints the requested
 * and realized mixture to it. */
json_t *mixer_report(const mixer *m, FILE *table);

/* mixer_emitted() : samples returned so far (0 for NULL). */
uint64_t mixer_emitted(const mixer *m);

/* mixer_damaged() : source inputs that broke mid-way or could not be read
 * (each reported on stderr when met, in the first epoch). */
int mixer_damaged(const mixer *m);

void mixer_free(mixer *m);

/* splitmix64: the one generator mixing and packing use */
static inline uint64_t mix_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

#endif
