/* filter_split.c: `mpirun -np N mvl filter|FILTER ...`: one filter run
 * split across the ranks, with the outputs of a single run.
 *
 * Inputs: the expanded input list is cut into N contiguous blocks, rank r
 * reading block r, so "rank order, then input order within a rank" is the
 * input order of a single process.
 *
 * Passes: a chain of per-sample filters runs once.  A chain ending in an
 * ordered filter (dedup) that can decide globally runs twice: pass 1
 * computes the filter's keys and writes nothing; the ranks exchange them
 * and decide (filter_chain_dist_exchange, dedup_dist.h); pass 2 reads the
 * block again, runs the chain with the decisions, and writes.  Reading
 * twice costs one more read and the cheap filters again, and holds no
 * sample in memory between the passes.
 *
 * Outputs, the same as one process would write:
 *   - shards: rank r writes its kept samples, in order, to
 *     DIR/.mvl-rankR-NAME (its own shard numbers from 0), each shard
 *     completed under a temporary name as usual; when every rank is done,
 *     rank r renames its k-th shard to PATTERN % (shards of the ranks
 *     before r + k).  Shard numbers are contiguous and the shards read in
 *     number order give the samples of a single run in the same order; the
 *     shard boundaries differ (each rank starts a new shard).
 *   - --rejects FILE: each rank lists its rejections in FILE.rankR; rank 0
 *     joins them in rank order (so in input order) into FILE, written
 *     under a temporary name and renamed when complete.
 *   - --stats FILE and the summary line: counts added up on rank 0 and
 *     written once, by rank 0.
 * The exit status is the worst of the ranks'.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filter.h"

/* "out/%06d.tar" -> "out/.mvl-rank2-%06d.tar": same folder, same suffix
 * (so the same compression), a name no other rank or run pattern takes */
static char *rank_pattern(const char *pattern, int rank)
{
	const char *slash = strrchr(pattern, '/');
	size_t dir = slash ? (size_t)(slash - pattern) + 1 : 0;
	buf b = {0};
	buf_append(&b, pattern, dir);
	buf_printf(&b, ".mvl-rank%d-%s", rank, pattern + dir);
	return (char *)b.data;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
/* the pattern was checked by shard_writer_open: one %d-style conversion */
static void shard_name(char *out, size_t n, const char *pattern, int k)
{
	snprintf(out, n, pattern, k);
}
#pragma GCC diagnostic pop

/* every rank renames its shards into the common numbering */
static int rename_shards(const dist *d, const char *pattern, const char *mine, int nshards,
			 mvl_err *err)
{
	uint64_t *all = xmalloc((size_t)d->size * sizeof *all);
	dist_allgather_u64(d, (uint64_t)nshards, all);
	int first = 0, rc = 0;
	for (int r = 0; r < d->rank; r++)
		first += (int)all[r];
	free(all);
	for (int k = 0; k < nshards && rc == 0; k++) {
		char from[4096], to[4096];
		shard_name(from, sizeof from, mine, k);
		shard_name(to, sizeof to, pattern, first + k);
		if (rename(from, to) != 0)
			rc = mvl_errf(err, "cannot rename '%s' to '%s': %s", from, to, strerror(errno));
	}
	return rc;
}

/* rank 0: FILE.rank0, FILE.rank1, ... -> FILE (one header) */
static int join_rejects(const dist *d, const char *path, mvl_err *err)
{
	atomic_file af;
	if (atomic_file_open(&af, path, err) != 0)
		return -1;
	int rc = 0;
	for (int r = 0; r < d->size && rc == 0; r++) {
		char part[4096];
		snprintf(part, sizeof part, "%s.rank%d", path, r);
		FILE *f = fopen(part, "r");
		if (!f) {
			rc = mvl_errf(err, "cannot read '%s': %s", part, strerror(errno));
			break;
		}
		char *line = NULL;
		size_t cap = 0;
		ssize_t len;
		for (int no = 0; (len = getline(&line, &cap, f)) >= 0; no++)
			if (no > 0 || r == 0) /* the header once */
				fwrite(line, 1, (size_t)len, af.f);
		free(line);
		fclose(f);
	}
	if (rc != 0) {
		atomic_file_abort(&af);
		return rc;
	}
	rc = atomic_file_commit(&af, err);
	for (int r = 0; r < d->size; r++) {
		char part[4096];
		snprintf(part, sizeof part, "%s.rank%d", path, r);
		unlink(part);
	}
	return rc;
}

/* rank 0's summary counts the whole job: the others' reasons and totals
 * are added into its own */
static int gather_summary(stream_run *sr, const dist *d, mvl_err *err)
{
	buf text = {0};
	buf_printf(&text, "%llu\t%llu\t%d\n", (unsigned long long)sr->nin, (unsigned long long)sr->nkept,
		   sr->input_errors);
	for (int i = 0; i < rejects_reasons(sr->rj); i++) {
		uint64_t n;
		const char *reason = rejects_reason(sr->rj, i, &n);
		buf_printf(&text, "%s\t%llu\n", reason, (unsigned long long)n);
	}
	void *got = NULL;
	size_t *counts = xcalloc((size_t)d->size, sizeof *counts);
	int rc = dist_gatherv(d, text.data, text.len, &got, counts, err);
	if (rc == 0 && d->rank == 0) {
		const char *p = got;
		for (int r = 0; r < d->size; r++) {
			char *block = xstrndup(p, counts[r]), *save = NULL;
			p += counts[r];
			if (r == 0) { /* its own counts are there already */
				free(block);
				continue;
			}
			char *line = strtok_r(block, "\n", &save);
			unsigned long long in = 0, kept = 0;
			int damaged = 0;
			if (line && sscanf(line, "%llu\t%llu\t%d", &in, &kept, &damaged) == 3) {
				sr->nin += in;
				sr->nkept += kept;
				sr->input_errors += damaged;
			}
			while ((line = strtok_r(NULL, "\n", &save))) {
				char *tab = strrchr(line, '\t');
				if (!tab)
					continue;
				*tab = 0;
				rejects_add_count(sr->rj, line, strtoull(tab + 1, NULL, 10));
			}
			free(block);
		}
	}
	free(got);
	free(counts);
	buf_free(&text);
	return rc;
}

/* Opens this rank's part; every rank learns whether all could. */
static int open_part(stream_run *sr, const char *name, const stream_opts *o, char **args, int nargs,
		     int flags, const dist *d)
{
	mvl_err err;
	int bad = stream_run_open_part(sr, name, o, args, nargs, flags, d->rank, d->size, &err) != 0;
	if (bad)
		fprintf(stderr, "mvl %s: rank %d: %s\n", name, d->rank, err.msg);
	if (dist_max_int(d, bad)) {
		if (!bad)
			stream_run_close(sr);
		return -1;
	}
	sr->no_summary = 1;
	return 0;
}

int filter_run_split(filter_chain *c, const char *name, const stream_opts *so, char **args,
		     int nargs, const char *stats, int threads, const dist *d)
{
	mvl_err err;
	if (!so->output) {
		if (d->rank == 0)
			fprintf(stderr, "mvl %s: a run split across ranks writes shards: give -o PATTERN\n",
				name);
		return 2;
	}
	int passes = filter_chain_dist_start(c, d, &err);
	if (passes < 0) {
		if (d->rank == 0)
			fprintf(stderr, "mvl %s: %s\n", name, err.msg);
		return 2;
	}
	int status = 0;
	stream_run sr;
	if (passes == 2) {
		stream_opts o1 = *so;
		o1.output = NULL;
		o1.rejects = NULL;
		if (open_part(&sr, name, &o1, args, nargs, RUN_SHARDS, d) != 0)
			return 1;
		filter_chain_run(c, &sr, threads, 0);
		/* damaged inputs are reported (and counted) by pass 2 */
		stream_run_close(&sr);
		if (filter_chain_dist_exchange(c, &err) != 0) {
			fprintf(stderr, "mvl %s: rank %d: %s\n", name, d->rank, err.msg);
			return 1;
		}
		filter_chain_reset_counts(c);
	}
	stream_opts o2 = *so;
	char *pattern = rank_pattern(so->output, d->rank);
	buf rpath = {0};
	o2.output = pattern;
	if (so->rejects) {
		buf_printf(&rpath, "%s.rank%d", so->rejects, d->rank);
		o2.rejects = (char *)rpath.data;
	}
	if (open_part(&sr, name, &o2, args, nargs, RUN_WRITES, d) != 0) {
		free(pattern);
		buf_free(&rpath);
		return 1;
	}
	filter_chain_run(c, &sr, threads, 1);
	uint64_t in = sr.nin, kept = sr.nkept;
	if (filter_chain_finish(c, &err) != 0) {
		fprintf(stderr, "mvl %s: rank %d: %s\n", name, d->rank, err.msg);
		sr.output_failed = 1;
	}
	int nshards = shard_writer_pending(sr.w);
	if (gather_summary(&sr, d, &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", name, err.msg);
		status = 1;
	}
	sr.no_summary = d->rank != 0;
	filter_chain_note_rejects(c, sr.rj); /* rank 0's: the job's totals */
	/* as one process: damaged inputs fail the run (status 1) but their
	 * other samples' outputs stand; a failed output discards its shard */
	if (stream_run_close(&sr) != 0)
		status = 1;
	int out_failed = sr.output_failed, damaged = sr.input_errors; /* rank 0: the job's */
	if (rename_shards(d, so->output, pattern, out_failed ? 0 : nshards, &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", name, err.msg);
		out_failed = status = 1;
	}
	/* every part of the rejects list is complete before rank 0 joins them */
	int failed = dist_max_int(d, out_failed);
	if (so->rejects && d->rank == 0) {
		if (failed) {
			for (int r = 0; r < d->size; r++) {
				char part[4096];
				snprintf(part, sizeof part, "%s.rank%d", so->rejects, r);
				unlink(part);
			}
		} else if (join_rejects(d, so->rejects, &err) != 0) {
			fprintf(stderr, "mvl %s: %s\n", name, err.msg);
			status = 1;
		}
	}
	if (stats) {
		if (filter_chain_gather_counts(c, d, &err) != 0) {
			fprintf(stderr, "mvl %s: %s\n", name, err.msg);
			status = 1;
		}
		uint64_t totals[2] = {in, kept}, *all = xmalloc(2 * (size_t)d->size * sizeof *all);
		dist_allgather_u64(d, totals[0], all);
		dist_allgather_u64(d, totals[1], all + d->size);
		in = kept = 0;
		for (int r = 0; r < d->size; r++) {
			in += all[r];
			kept += all[d->size + r];
		}
		free(all);
		if (d->rank == 0 && filter_chain_stats(c, stats, in, kept, damaged, &err) != 0) {
			fprintf(stderr, "mvl %s: %s\n", name, err.msg);
			status = 1;
		}
	}
	free(pattern);
	buf_free(&rpath);
	return dist_max_int(d, status);
}
