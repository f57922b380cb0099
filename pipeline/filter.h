/* filter.h: the filter interface, filter chains, and their commands.
 *
 * A filter is open(options) / apply(sample) -> keep or drop(reason,
 * detail) / close.  Its options are declared once (fopt table) and parsed
 * the same way from a chain spec ("capfilter:min_words=3:lang=en,de") and
 * from its own command line ("mvl capfilter --min-words 3").  apply() runs
 * on many threads at once: it may read the shared state made by open() and
 * write only its per-thread state (tls) and the sample.
 *
 * A chain runs filters in order on each sample, stopping at the first drop;
 * the drop reason becomes "FILTER.REASON" (capfilter.too_few_words).  Counts
 * in / kept / dropped per reason are kept per filter, and with stats on,
 * histograms of what each filter saw (filters/README.md).
 */
#ifndef MVL_FILTER_H
#define MVL_FILTER_H

#include <stddef.h>

#include "dist.h"
#include "opts.h"
#include "rejects.h"
#include "sample.h"
#include "stream_cmd.h"
#include "util.h"

/* One option: parsed into the filter's config struct at `off`.  Kinds as
 * opts.h; booleans are OPT_INT 0/1. */
typedef struct fopt {
	const char *name; /* with underscores: "min_words" */
	opt_kind kind;
	size_t off;
	const char *def;
	const char *arg;
	const char *help;
} fopt;

typedef struct filter_def {
	const char *name;
	const char *summary;
	const char *details;   /* rules, defaults and their sources */
	const fopt *opts;      /* terminated by {0} */
	size_t conf_size;
	/* open: checks the config and builds shared state.  @return 0/-1 */
	int (*open)(const void *conf, void **state, mvl_err *err);
	void *(*tls_new)(const void *state);
	void (*tls_free)(void *tls);
	/* apply: 0 keep (s may be rewritten), 1 drop with *rj (the reason
	 * without the filter prefix) */
	int (*apply)(const void *state, void *tls, sample *s, reject_info *rj);
	void (*close)(void *state);
	/* optional, for filters whose verdict depends on the samples before
	 * (dedup): called serially, in input order, after apply kept s; may
	 * drop it.  Such a filter must come last in a chain (so a pipe and a
	 * chain agree on what it saw).  @return 0 keep, 1 drop with *rj */
	int (*ordered)(void *state, sample *s, reject_info *rj);
	/* optional: after the whole stream (write reports, indexes).
	 * @return 0 or -1 with *err */
	int (*finish)(void *state, mvl_err *err);
	/* optional: 1 when this configuration writes no stream (an index
	 * build); the command then only reads */
	int (*no_output)(const void *state);
	/* optional, for an ordered filter that can run split across the ranks
	 * of an mpirun job, where the runner reads each rank's inputs twice:
	 * dist_start, before the first pass, makes ordered() keep everything
	 * and only record what it needs; dist_exchange, collective, between the
	 * passes, decides globally; in the second pass ordered() replays those
	 * verdicts for the same samples in the same order.  @return 0 or -1
	 * with *err (dist_exchange: the same on every rank) */
	int (*dist_start)(void *state, const dist *d, mvl_err *err);
	int (*dist_exchange)(void *state, mvl_err *err);
} filter_def;

/* The registry (filters/registry.c). */
extern const filter_def *const filter_defs[];
const filter_def *filter_find(const char *name);

typedef struct filter_chain filter_chain;
typedef struct chain_tls chain_tls;

/* filter_chain_parse() : "clean,capfilter:min_words=3,imgfilter" ->
 * configs with defaults applied and values checked (nothing opened yet).
 * @return NULL with *err on an unknown filter, option or bad value. */
filter_chain *filter_chain_parse(const char *spec, mvl_err *err);
/* filter_chain_single() : a chain of one filter configured from argv
 * ("--min-words 3 --lang=en,de ..."), for a filter's own command: fills
 * an opt_spec table (returned, malloc'd) that the command merges with its
 * stream options.  See filter_command(). */
filter_chain *filter_chain_single(const filter_def *d);
/* filter_chain_open() : opens every filter.  @return 0 or -1 with *err. */
int filter_chain_open(filter_chain *c, int want_stats, mvl_err *err);
chain_tls *chain_tls_new(filter_chain *c);
/* chain_tls_merge() : adds a thread's counts into the chain's totals and
 * frees it. */
void chain_tls_merge(filter_chain *c, chain_tls *t);
/* filter_chain_apply() : @return 0 keep, 1 drop (*rj as "FILTER.REASON"). */
int filter_chain_apply(filter_chain *c, chain_tls *t, sample *s, reject_info *rj);
/* filter_chain_ordered() : the last filter's ordered step, if it has one
 * (serial, input order).  @return 0 keep, 1 drop. */
int filter_chain_ordered(filter_chain *c, sample *s, reject_info *rj);
/* filter_chain_finish() : every filter's finish step.  @return 0 / -1. */
int filter_chain_finish(filter_chain *c, mvl_err *err);
/* filter_chain_note_rejects() : records the run's rejections by reason
 * (the reader's and every filter's: the summary line's counts) for the
 * stats JSON's "reasons"; call it before stream_run_close(). */
void filter_chain_note_rejects(filter_chain *c, const rejects *rj);
/* filter_chain_stats() : writes the stats JSON (see filters/README.md);
 * damaged: inputs that could not be read or broke mid-way. */
int filter_chain_stats(filter_chain *c, const char *path, uint64_t in, uint64_t kept, int damaged,
		       mvl_err *err);
void filter_chain_free(filter_chain *c);

/* filter_chain_run() : reads sr to the end through the chain on `threads`
 * workers (0: all cores); kept samples go to sr's writer when writes is 1.
 * @return 0, or -1 when an output failed. */
int filter_chain_run(filter_chain *c, stream_run *sr, int threads, int writes);

/* ---- split across the ranks of an mpirun job (filter_split.c) ---- */

/* filter_chain_dist_start() : readies the chain for a split run.
 * @return 2 when it needs two passes (its last filter decides globally:
 * call filter_chain_dist_exchange between them), 1 for one, -1 with *err
 * when the chain cannot run split. */
int filter_chain_dist_start(filter_chain *c, const dist *d, mvl_err *err);
/* filter_chain_dist_exchange() : collective, between the two passes.
 * @return 0 or -1 with *err (on every rank alike). */
int filter_chain_dist_exchange(filter_chain *c, mvl_err *err);
/* filter_chain_reset_counts() : forgets the counts (a pass to discard). */
void filter_chain_reset_counts(filter_chain *c);
/* filter_chain_gather_counts() : collective: every rank's counts and
 * histograms added into rank 0's chain (for filter_chain_stats there).
 * @return 0 or -1 with *err. */
int filter_chain_gather_counts(filter_chain *c, const dist *d, mvl_err *err);

/* filter_run_split() : the body of `mvl filter` / `mvl FILTER` on one rank
 * of an mpirun job (see filter_split.c for the outputs it promises).
 * @return the exit status, the same on every rank. */
int filter_run_split(filter_chain *c, const char *name, const stream_opts *so, char **args,
		     int nargs, const char *stats, int threads, const dist *d);

/* filter_command() : the body of `mvl FILTER` (d given) and `mvl filter
 * SPEC` (d NULL): options, stream in, chain on all cores, stream out. */
int filter_command(const filter_def *d, int argc, char **argv);

#endif
