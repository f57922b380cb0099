/* parallel.c: reader / workers / in-order writer over sample batches. */
#include "parallel.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { NBATCH = 4, BATCH_SAMPLES = 256, MAX_CLAIM = 64 };
static const uint64_t BATCH_BYTES = 64ull << 20;

/* per-sample state */
enum { S_READ = 0, S_PRE_REJECTED, S_KEPT, S_DROPPED };

typedef struct batch {
	sample s[BATCH_SAMPLES];
	reject_info rj[BATCH_SAMPLES];
	unsigned char state[BATCH_SAMPLES];
	int n;
	int claimed, done; /* under the lock */
	int last;          /* the reader's final batch (may be empty) */
} batch;

typedef struct pipe_state {
	stream_run *sr;
	const parallel_work *w;
	batch b[NBATCH];
	pthread_mutex_t mu;
	/* separate wake-ups, so a signal reaches only the thread it concerns */
	pthread_cond_t space; /* reader: a batch slot was freed */
	pthread_cond_t work;  /* workers: a batch was filled, or the end */
	pthread_cond_t done;  /* writer: a batch was fully worked */
	/* samples per claim: sized so a claim takes about a millisecond, from
	 * the measured cost per sample (cheap caption rules claim many at a
	 * time and rarely touch the lock; images claim one or two) */
	double ns_per_sample;
	/* batches are used round-robin; sequence numbers say where each is */
	uint64_t filled;   /* batches the reader has completed */
	uint64_t written;  /* batches the writer has finished with */
	int reader_done;
	int stop;          /* the writer failed: everyone winds down */
} pipe_state;

/* Reads one batch; stream rejections are kept in order as S_PRE_REJECTED. */
static int fill_batch(stream_run *sr, batch *b)
{
	mvl_err err;
	uint64_t bytes = 0;
	b->n = 0;
	b->claimed = b->done = 0;
	while (b->n < BATCH_SAMPLES && bytes < BATCH_BYTES) {
		sample *s = &b->s[b->n];
		int k = sr->src.next(sr->src.self, s, &b->rj[b->n], &err);
		progress_update(sr->p, sr->nin, sr->src.bytes(sr->src.self));
		if (k == READ_END)
			return 1;
		if (k == READ_INPUT_ERROR || k == READ_BROKEN) {
			sr->input_errors++;
			fprintf(stderr, "mvl %s: %s\n", sr->cmd, err.msg);
			if (k == READ_INPUT_ERROR)
				continue;
		}
		sr->nin++;
		b->state[b->n] = (k == READ_SAMPLE) ? S_READ : S_PRE_REJECTED;
		for (int i = 0; i < s->n; i++)
			bytes += s->m[i].size;
		b->n++;
	}
	return 0;
}

/* Writes or records one batch in order.  @return 0 or -1. */
static int drain_batch(stream_run *sr, const parallel_work *w, batch *b)
{
	mvl_err err;
	for (int i = 0; i < b->n; i++) {
		if (b->state[i] == S_KEPT && w->ordered && w->ordered(w->ctx, &b->s[i], &b->rj[i]))
			b->state[i] = S_DROPPED;
		if (b->state[i] == S_PRE_REJECTED || b->state[i] == S_DROPPED) {
			stream_run_reject(sr, &b->s[i], &b->rj[i]);
			continue;
		}
		int rc = w->writes ? stream_run_write(sr, &b->s[i], &err)
				   : w->sink(w->ctx, &b->s[i], &err);
		if (rc != 0) {
			fprintf(stderr, "mvl %s: %s\n", sr->cmd, err.msg);
			sr->output_failed = 1;
			return -1;
		}
		if (!w->writes)
			sr->nkept++;
	}
	return 0;
}

static void work_one(const parallel_work *w, void *tls, batch *b, int i)
{
	if (b->state[i] != S_READ)
		return;
	b->state[i] = w->fn(w->ctx, tls, &b->s[i], &b->rj[i]) ? S_DROPPED : S_KEPT;
}

static void *reader_main(void *arg)
{
	pipe_state *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		/* wait for a free slot: at most NBATCH batches in flight */
		while (!p->stop && p->filled - p->written >= NBATCH)
			pthread_cond_wait(&p->space, &p->mu);
		int stop = p->stop;
		batch *b = &p->b[p->filled % NBATCH];
		pthread_mutex_unlock(&p->mu);
		if (stop)
			break;
		int end = fill_batch(p->sr, b);
		pthread_mutex_lock(&p->mu);
		b->last = end;
		p->filled++;
		if (end)
			p->reader_done = 1;
		pthread_cond_broadcast(&p->work);
		if (b->n == 0)
			pthread_cond_signal(&p->done); /* an empty last batch */
		pthread_mutex_unlock(&p->mu);
		if (end)
			break;
	}
	return NULL;
}

static int claim_size(const pipe_state *p)
{
	if (p->ns_per_sample <= 0)
		return 1;
	double k = 1e6 / p->ns_per_sample;
	return k < 1 ? 1 : k > MAX_CLAIM ? MAX_CLAIM : (int)k;
}

static void *worker_main(void *arg)
{
	pipe_state *p = arg;
	void *tls = p->w->tls_new ? p->w->tls_new(p->w->ctx) : NULL;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		/* the oldest filled batch with unclaimed samples */
		batch *b = NULL;
		for (uint64_t q = p->written; q < p->filled; q++) {
			batch *c = &p->b[q % NBATCH];
			if (c->claimed < c->n) {
				b = c;
				break;
			}
		}
		if (!b) {
			if (p->stop || p->reader_done)
				break; /* nothing left to claim, ever */
			pthread_cond_wait(&p->work, &p->mu);
			continue;
		}
		int from = b->claimed;
		int k = claim_size(p);
		int to = from + k < b->n ? from + k : b->n;
		b->claimed = to;
		pthread_mutex_unlock(&p->mu);
		double t0 = now_sec();
		for (int i = from; i < to; i++)
			work_one(p->w, tls, b, i);
		double ns = (now_sec() - t0) * 1e9 / (to - from);
		pthread_mutex_lock(&p->mu);
		/* a running average: adapts when the stream's content changes */
		p->ns_per_sample = p->ns_per_sample > 0 ? 0.8 * p->ns_per_sample + 0.2 * ns : ns;
		b->done += to - from;
		if (b->done == b->n)
			pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->mu);
	if (p->w->tls_free)
		p->w->tls_free(tls);
	return NULL;
}

static int run_inline(stream_run *sr, const parallel_work *w)
{
	batch *b = xcalloc(1, sizeof *b);
	for (int i = 0; i < BATCH_SAMPLES; i++)
		sample_init(&b->s[i]);
	void *tls = w->tls_new ? w->tls_new(w->ctx) : NULL;
	int rc = 0, end = 0;
	while (!end && rc == 0) {
		end = fill_batch(sr, b);
		for (int i = 0; i < b->n; i++)
			work_one(w, tls, b, i);
		rc = drain_batch(sr, w, b);
	}
	if (w->tls_free)
		w->tls_free(tls);
	for (int i = 0; i < BATCH_SAMPLES; i++)
		sample_free(&b->s[i]);
	free(b);
	return rc;
}

int stream_run_parallel(stream_run *sr, const parallel_work *w)
{
	int threads = w->threads > 0 ? w->threads : omp_get_num_procs();
	if (threads <= 1)
		return run_inline(sr, w);
	pipe_state *p = xcalloc(1, sizeof *p);
	p->sr = sr;
	p->w = w;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->space, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	for (int k = 0; k < NBATCH; k++)
		for (int i = 0; i < BATCH_SAMPLES; i++)
			sample_init(&p->b[k].s[i]);
	pthread_t reader, *workers = xcalloc((size_t)threads, sizeof *workers);
	pthread_create(&reader, NULL, reader_main, p);
	for (int t = 0; t < threads; t++)
		pthread_create(&workers[t], NULL, worker_main, p);
	int rc = 0;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		/* the next batch in order, once it is filled and fully worked */
		while (p->written == p->filled && !p->reader_done)
			pthread_cond_wait(&p->done, &p->mu);
		if (p->written == p->filled)
			break; /* reader done, everything written */
		batch *b = &p->b[p->written % NBATCH];
		while (b->done < b->n)
			pthread_cond_wait(&p->done, &p->mu);
		pthread_mutex_unlock(&p->mu);
		int drc = drain_batch(sr, w, b);
		pthread_mutex_lock(&p->mu);
		p->written++;
		if (drc != 0) {
			rc = -1;
			p->stop = 1;
		}
		pthread_cond_signal(&p->space);
		if (rc)
			break;
	}
	p->stop = 1;
	pthread_cond_broadcast(&p->space);
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->mu);
	pthread_join(reader, NULL);
	for (int t = 0; t < threads; t++)
		pthread_join(workers[t], NULL);
	for (int k = 0; k < NBATCH; k++)
		for (int i = 0; i < BATCH_SAMPLES; i++)
			sample_free(&p->b[k].s[i]);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->space);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->done);
	free(workers);
	free(p);
	return rc;
}
