/* stream_cmd.c: the shared body of stream commands. */
#include "stream_cmd.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the source of a part with no inputs */
static int empty_next(void *self, sample *s, reject_info *rj, mvl_err *err)
{
	return READ_END;
}
static uint64_t empty_bytes(const void *self)
{
	return 0;
}
static void empty_free(void *self)
{
}

/* keeps block `part` of in's paths: floor(n * part / nparts) onwards */
static int keep_part(inputs *in, int part, int nparts, mvl_err *err)
{
	if (in->n == 0)
		return mvl_errf(err, "a run split across %d ranks reads files: stdin cannot be split", nparts);
	for (int i = 0; i < in->n; i++)
		if (strcmp(in->path[i], "-") == 0)
			return mvl_errf(err, "a run split across %d ranks reads files: stdin ('-') cannot be split",
					nparts);
	int lo = (int)((int64_t)in->n * part / nparts), hi = (int)((int64_t)in->n * (part + 1) / nparts);
	for (int i = 0; i < in->n; i++)
		if (i < lo || i >= hi)
			free(in->path[i]);
	memmove(in->path, in->path + lo, (size_t)(hi - lo) * sizeof *in->path);
	in->n = hi - lo;
	return 0;
}

int stream_run_open(stream_run *sr, const char *cmd, const stream_opts *o,
		    char **args, int nargs, int flags, mvl_err *err)
{
	return stream_run_open_part(sr, cmd, o, args, nargs, flags, 0, 1, err);
}

int stream_run_open_part(stream_run *sr, const char *cmd, const stream_opts *o,
			 char **args, int nargs, int flags, int part, int nparts, mvl_err *err)
{
	int with_output = flags & RUN_WRITES;
	memset(sr, 0, sizeof *sr);
	sr->cmd = cmd;
	sr->o = o;
	for (int i = 0; i < nargs; i++)
		if (inputs_expand(&sr->in, args[i], err) != 0)
			goto fail;
	if (!(flags & RUN_INGEST) && inputs_shard_dirs(&sr->in, err) != 0)
		goto fail;
	if (nparts > 1 && keep_part(&sr->in, part, nparts, err) != 0)
		goto fail;
	if (with_output && !o->output && isatty(1)) {
		mvl_errf(err, "refusing to write a tar stream to a terminal; redirect stdout or use -o");
		goto fail;
	}
	if (!with_output && o->output) {
		mvl_errf(err, "this command writes no stream; -o is not used");
		goto fail;
	}
	if (o->rejects && !(sr->rj = rejects_open(o->rejects, err)))
		goto fail;
	if (!sr->rj)
		sr->rj = rejects_open(NULL, err);
	if (with_output) {
		writer_opts wo = {o->output, o->maxcount, o->maxsize, o->compress, o->level, 0};
		if (!(sr->w = shard_writer_open(&wo, err)))
			goto fail;
	}
	reader_opts ro = {o->max_member};
	if (nparts > 1 && sr->in.n == 0)
		sr->src = (sample_source){NULL, empty_next, empty_bytes, empty_bytes, empty_free};
	else if (flags & RUN_INGEST)
		sr->src = ingest_source(sr->in.path, sr->in.n, &ro, cmd);
	else
		sr->src = shard_source(sr->in.path, sr->in.n, &ro);
	sr->p = progress_new(cmd, o->quiet || part > 0, sr->src.total(sr->src.self));
	return 0;
fail:
	if (sr->rj)
		rejects_close(sr->rj, 0, NULL);
	inputs_free(&sr->in);
	sr->rj = NULL;
	return -1;
}

int stream_run_read(stream_run *sr, sample *s)
{
	reject_info rj;
	mvl_err err;
	for (;;) {
		int k = sr->src.next(sr->src.self, s, &rj, &err);
		progress_update(sr->p, sr->nin, sr->src.bytes(sr->src.self));
		switch (k) {
		case READ_END:
			return 0;
		case READ_SAMPLE:
			sr->nin++;
			return 1;
		case READ_BROKEN:
			sr->input_errors++;
			fprintf(stderr, "mvl %s: %s\n", sr->cmd, err.msg);
			/* the broken group is a rejected sample */
			__attribute__((fallthrough));
		case READ_REJECT:
			sr->nin++;
			rejects_add(sr->rj, s->key, s->source, &rj);
			continue;
		case READ_INPUT_ERROR:
			sr->input_errors++;
			fprintf(stderr, "mvl %s: %s\n", sr->cmd, err.msg);
			continue;
		}
	}
}

void stream_run_reject(stream_run *sr, const sample *s, const reject_info *rj)
{
	rejects_add(sr->rj, s->key, s->source, rj);
}

int stream_run_write(stream_run *sr, const sample *s, mvl_err *err)
{
	if (shard_writer_write(sr->w, s, err) != 0) {
		sr->output_failed = 1;
		return -1;
	}
	sr->nkept++;
	return 0;
}

int stream_run_close(stream_run *sr)
{
	mvl_err err;
	int status = 0;
	progress_done(sr->p);
	if (sr->w && shard_writer_close(sr->w, !sr->output_failed, &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", sr->cmd, err.msg);
		sr->output_failed = 1;
	}
	uint64_t nrej = rejects_total(sr->rj);
	if (!sr->no_summary && (!sr->o->quiet || nrej || sr->input_errors))
		rejects_summary(sr->rj, sr->cmd, sr->nin, sr->nkept, stderr);
	if (rejects_close(sr->rj, !sr->output_failed, &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", sr->cmd, err.msg);
		status = 1;
	}
	if (sr->input_errors && sr->o->allow_damaged && !sr->no_summary)
		fprintf(stderr, "mvl %s: %d damaged input%s passed over (--allow-damaged)\n", sr->cmd,
			sr->input_errors, sr->input_errors == 1 ? "" : "s");
	if ((sr->input_errors && !sr->o->allow_damaged) || sr->output_failed)
		status = 1;
	if (sr->o->strict && nrej) {
		fprintf(stderr, "mvl %s: --strict: %llu samples rejected\n", sr->cmd,
			(unsigned long long)nrej);
		status = 1;
	}
	sr->src.free(sr->src.self);
	inputs_free(&sr->in);
	return status;
}
