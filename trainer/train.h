/* train.h: the optimizer, the schedule and checkpoints around model.h.
 *
 * AdamW state (m, v) exists only for trainable tensors: a frozen part
 * holds no optimizer memory and computes no weight gradient.
 *
 * A checkpoint is a directory:
 *   model.safetensors   every parameter; __metadata__: format "pt",
 *                       "config" (model_config as JSON), "mvl" version
 *   optim.safetensors   "m.NAME" and "v.NAME" per trainable tensor
 *   state.json          step, data position, trainable parts, RNG, the
 *                       schedule, the loss history
 * written as DIR.tmp.PID, every file fsynced, then renamed to DIR: a
 * directory that exists is complete.
 */
#ifndef MVL_TRAIN_H
#define MVL_TRAIN_H

#include <stdint.h>

#include "model.h"

typedef struct adamw {
	float **m, **v;  /* by tensor: its part inside [lo, hi); NULL when
			  * frozen or outside the shard */
	size_t lo, hi;   /* the floats of the flat parameter buffer this
			  * optimizer updates: all of it, or one rank's shard
			  * under ZeRO-1 (ddp.h) */
	int64_t t;       /* steps taken */
} adamw;

/* adamw_init() : state for every trainable float (lo 0, hi nparams). */
void adamw_init(adamw *o, const model *md);
/* adamw_init_shard() : state for the trainable floats of [lo, hi) only. */
void adamw_init_shard(adamw *o, const model *md, size_t lo, size_t hi);
void adamw_free(adamw *o, const model *md);
/* adamw_drop() : no state for tensor i (another rank updates it: an
 * expert of another owner under expert parallelism, ddp.h). */
void adamw_drop(adamw *o, int i);
/* adamw_span() : the floats [*a, *b) of tensor i that o holds state for
 * (o->m[i][0] is float *a).  @return 0 when none (frozen, or outside). */
int adamw_span(const adamw *o, const model *md, int i, size_t *a, size_t *b);
/* adamw_bytes() : bytes of m and v this optimizer holds. */
size_t adamw_bytes(const adamw *o, const model *md);

typedef struct sched {
	double lr, min_lr, decay_fraction;
	int64_t warmup, total;
	int kind; /* SCHED_* of recipe.h: 0 cosine, 1 wsd, 2 constant */
} sched;

/* sched_lr() : the learning rate of step (0-based). */
double sched_lr(const sched *s, int64_t step);

/* model_save() / model_load() : the parameters as safetensors.  load checks
 * every tensor's name and shape against m, and refuses a file with a
 * tensor m does not have (made from the file's config when *m is NULL:
 * see model_load_new). */
int model_save(const model *m, const char *path, mvl_err *err);
int model_load(model *m, const char *path, mvl_err *err);
/* model_load_new() : a model of the config stored in path, its weights.
 * The config is checked against the file's tensors before parameter
 * memory is allocated: a config claiming huge sizes costs nothing. */
model *model_load_new(const char *path, mvl_err *err);

/* config_json() / config_parse() : model_config as a JSON string. */
char *config_json(const model_config *c);
int config_parse(const char *json, model_config *c, mvl_err *err);

#endif
