/* parallel.h: runs a per-sample function over a stream on all cores, in a
 * pipeline, with output in input order.
 *
 *   reader thread --batches--> worker threads --batches--> writer (caller)
 *
 * A batch holds up to 256 samples (and at most 64 MB); four batches
 * circulate, so memory is bounded whatever the stream's length.  The reader
 * also queues the rejections the stream itself makes, so the writer records
 * every rejection, and writes every kept sample, in input order: output and
 * rejects file do not depend on the thread count.  With threads == 1
 * everything runs inline on the calling thread (a true one-core run).
 */
#ifndef MVL_PARALLEL_H
#define MVL_PARALLEL_H

#include "stream_cmd.h"

/* The work: @return 0 to keep s (which fn may rewrite), 1 to drop it with
 * *rj filled.  tls is the calling worker's own state (NULL without
 * tls_new). */
typedef int (*sample_fn)(void *ctx, void *tls, sample *s, reject_info *rj);

typedef struct parallel_work {
	sample_fn fn;
	void *ctx;
	void *(*tls_new)(void *ctx);
	void (*tls_free)(void *tls);
	int threads; /* workers; 0: one per core */
	int writes;  /* 1: kept samples go to sr's writer; 0: to `sink` */
	/* for commands that print rather than write (writes == 0): called on
	 * the writer side, in order, for each kept sample */
	int (*sink)(void *ctx, const sample *s, mvl_err *err);
	/* optional: a serial step after fn, on the writer side, in input
	 * order, for each sample fn kept (deduplication decides here):
	 * @return 0 keep, 1 drop with *rj */
	int (*ordered)(void *ctx, sample *s, reject_info *rj);
} parallel_work;

/* stream_run_parallel() : reads sr to the end.  @return 0, or -1 when an
 * output failed (the message was printed; sr->output_failed is set). */
int stream_run_parallel(stream_run *sr, const parallel_work *w);

#endif
