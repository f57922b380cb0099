/* recipe.h: a training recipe (YAML) read into plain structs, checked
 * whole before any work starts.  The schema is recipes/README.md.
 *
 * Every problem is reported as FILE:LINE:COLUMN: CONTEXT: MESSAGE, e.g.
 *   recipes/x.yaml:14:5: stage 'sft': unknown key 'lr_sheduler' (did you
 *   mean 'lr_scheduler'?)
 * All errors are collected (not only the first), and warnings beside them
 * (mixture weights that do not sum to 1 are normalized, a source no stage
 * uses).  A recipe with errors is never returned.
 */
#ifndef MVL_RECIPE_H
#define MVL_RECIPE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

enum { SRC_CAPTIONS, SRC_CONVERSATIONS, SRC_TEXT };
extern const char *const src_kind_names[]; /* by SRC_* */

typedef struct rsource {
	char *name;
	int kind;        /* SRC_* */
	char **shards;   /* patterns (globs, brace ranges, directories) */
	int nshards;
	char *filters;   /* a filter chain spec (mvl filter syntax) or NULL */
} rsource;

/* trainable parts of the model */
enum { PART_PROJECTOR = 1, PART_VIT = 2, PART_LLM = 4 };

enum { SCHED_COSINE, SCHED_WSD, SCHED_CONSTANT };
extern const char *const sched_names[];

enum { MAX_SEQ_LENS = 8 };

typedef struct rstage {
	char *name;
	unsigned parts;          /* PART_* */
	int seq_len[MAX_SEQ_LENS];
	int nseq;                /* > 1: train a variant per length, then average */
	uint64_t tokens;         /* token budget */
	double *weight;          /* by source index, summing to 1; 0: not mixed */
	/* optimizer and schedule */
	double lr, min_lr, weight_decay, grad_clip, beta1, beta2, eps, decay_fraction;
	int scheduler;           /* SCHED_* */
	uint64_t warmup_steps, batch_tokens;
	/* images */
	uint64_t min_pixels, max_pixels;
	int truncate;            /* 1: cut over-long text; 0: reject the sample */
	int soup;                /* several lengths: 1 greedy soup, 0 uniform average */
	/* model-based pair filtering of this stage's data (pairscore: key) */
	int score_with;          /* an earlier stage whose final model scores; -1: none */
	int *score_src;          /* source indexes scored and filtered */
	int nscore_src;
	int score_by;            /* PS_GAIN, PS_CONTRAST, PS_WITH */
	double score_min;        /* drop below this ... */
	double score_drop;       /* ... or this lowest fraction (0: use score_min) */
} rstage;

/* the pairscore metrics a stage can filter by (pairscore filter options
 * min_gain, min_contrast, min_with) */
enum { PS_GAIN, PS_CONTRAST, PS_WITH };
extern const char *const ps_metric_names[]; /* "gain", "contrast", "with_image" */

typedef struct rtokenizer {
	char *file;              /* .tiktoken or tokenizer.json; NULL: train */
	char *encoding;          /* pattern name for a .tiktoken (cl100k_base) */
	/* training (when file is NULL) */
	int vocab, min_frequency;
	char *pattern;
	int *sources;            /* source indexes to train on */
	int nsources;
	char **special;
	int nspecial;
} rtokenizer;

typedef struct reval {
	char **set_name, **set_shards; /* held-out sets: name -> pattern */
	int nsets;
	uint64_t *resolutions;   /* max_pixels values to search */
	int nres;
	char **metrics;
	int nmetrics;
	int max_samples;         /* per eval set, 0: all */
	int candidates;          /* retrieval: captions per image (default 8) */
} reval;

typedef struct recipe {
	char *path;
	uint64_t seed;
	char *model_preset;      /* model: preset (tiny, small, micro, tiny-moe, micro-moe); default tiny */
	int model_tied;
	int max_epochs;          /* warn when a stage repeats a source more */
	rsource *src;
	int nsrc;
	rtokenizer tok;
	rstage *stage;
	int nstage;
	reval eval;
} recipe;

/* recipe_load() : reads and checks path.  Warnings (and, on failure, every
 * error) are appended to *diag, one per line.  @return the recipe, or NULL
 * with *err summarising ("N errors") when anything is wrong. */
recipe *recipe_load(const char *path, buf *diag, mvl_err *err);
void recipe_free(recipe *r);

/* recipe_source() : the index of the source called name, or -1. */
int recipe_source(const recipe *r, const char *name);
/* recipe_stage() : the stage called name, or NULL. */
const rstage *recipe_stage(const recipe *r, const char *name);

/* parse_count() : "2000000", "2M", "1.5G", "512k" (powers of 1000) and
 * "64Ki"/"1Mi" (powers of 1024).  @return 0 or -1. */
int parse_count(const char *s, uint64_t *out);

#endif
