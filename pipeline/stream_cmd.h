/* stream_cmd.h: what every stream command shares.
 *
 * The input list (globs, brace ranges, stdin), the reader, the writer, the
 * reject accounting, progress, and the exit status rule:
 *   0  the run completed, even with rejected samples
 *   1  an input could not be read or broke mid-way (its other samples are
 *      still processed; not with --allow-damaged), an output error (full
 *      disk ...), or, with --strict, any rejection
 *   2  bad usage (handled by opts_main)
 */
#ifndef MVL_STREAM_CMD_H
#define MVL_STREAM_CMD_H

#include "inputs.h"
#include "opts.h"
#include "progress.h"
#include "rejects.h"
#include "sample.h"
#include "shard_reader.h"
#include "shard_writer.h"
#include "sources.h"

typedef struct stream_opts {
	const char *output;  /* -o PATTERN, NULL: stdout */
	uint64_t maxcount, maxsize;
	const char *compress;
	int level;
	const char *rejects;
	int strict, quiet;
	int allow_damaged; /* --allow-damaged: damaged inputs do not fail the run */
	uint64_t max_member;
} stream_opts;

/* The input-side options (every stream command). */
#define STREAM_INPUT_SPECS(o)                                                   \
	{"rejects", 0, OPT_STR, &(o).rejects, NULL, "FILE",                     \
	 "write rejected samples as TSV (key, source, reason, detail)"},        \
	{"strict", 0, OPT_FLAG, &(o).strict, NULL, NULL,                        \
	 "fail the run (exit 1) when any sample is rejected"},                  \
	{"allow-damaged", 0, OPT_FLAG, &(o).allow_damaged, NULL, NULL,          \
	 "exit 0 when an input was unreadable or broke mid-way (still reported, its lost samples counted)"}, \
	{"max-member-size", 0, OPT_SIZE, &(o).max_member, "1GiB", "SIZE",       \
	 "reject samples with a member larger than this"},                      \
	{"quiet", 'q', OPT_FLAG, &(o).quiet, NULL, NULL,                        \
	 "no progress line and no summary unless something was rejected"}

/* The output-side options (commands that write a stream), with the
 * default shard limits as text. */
#define STREAM_OUTPUT_SPECS(o, dcount, dsize)                                                \
	{"output", 'o', OPT_STR, &(o).output, NULL, "PATTERN",                  \
	 "write shards named by PATTERN (one %d, e.g. out/shard-%06d.tar.zst) instead of stdout"}, \
	{"maxcount", 0, OPT_U64, &(o).maxcount, dcount, "N",                   \
	 "start a new shard after N samples (0: no limit)"},                    \
	{"maxsize", 0, OPT_SIZE, &(o).maxsize, dsize, "SIZE",                  \
	 "start a new shard before SIZE bytes of tar (0: no limit)"},           \
	{"compress", 0, OPT_CHOICE, &(o).compress, "none", "none|zst|gz",       \
	 "compression of the stdout stream (-o follows the file name)"},        \
	{"level", 0, OPT_INT, &(o).level, "0", "N",                             \
	 "compression level (0: zstd 3, gzip 6)"}

typedef struct stream_run {
	const char *cmd;
	const stream_opts *o;
	inputs in;
	sample_source src;
	shard_writer *w;     /* NULL for commands without stream output */
	rejects *rj;
	progress *p;
	uint64_t nin, nkept;
	int input_errors;
	int output_failed;
	int no_summary;      /* 1: stream_run_close prints no counts (a rank
			      * of a split run: rank 0 prints the totals) */
} stream_run;

enum { RUN_SHARDS = 0, RUN_INGEST = 1, RUN_WRITES = 2 };

/* stream_run_open() : expands the inputs and opens everything.  flags:
 * RUN_INGEST reads folders and JSONL too (sources.h), not only shards;
 * RUN_WRITES: the command writes a stream (never to a terminal).
 * @return 0 or -1 with *err. */
int stream_run_open(stream_run *sr, const char *cmd, const stream_opts *o,
		    char **args, int nargs, int flags, mvl_err *err);

/* stream_run_open_part() : the same, reading only part `part` of `nparts`
 * of the expanded input list: a contiguous block, so that the parts in
 * order read the inputs in order (a rank of an mpirun job).  A part may
 * be empty; stdin cannot be split (an error when nparts > 1).  Progress
 * is shown by part 0 only. */
int stream_run_open_part(stream_run *sr, const char *cmd, const stream_opts *o,
			 char **args, int nargs, int flags, int part, int nparts, mvl_err *err);

/* stream_run_read() : the next readable sample.  Rejections made by the
 * reader are recorded and damaged inputs reported on stderr here.
 * @return 1 with a sample, 0 at the end. */
int stream_run_read(stream_run *sr, sample *s);

/* stream_run_reject() : records that the command dropped s. */
void stream_run_reject(stream_run *sr, const sample *s, const reject_info *rj);

/* stream_run_write() : writes s and counts it as kept.  @return 0 or -1. */
int stream_run_write(stream_run *sr, const sample *s, mvl_err *err);

/* stream_run_close() : finishes outputs, prints the summary, frees.
 * @return the exit status. */
int stream_run_close(stream_run *sr);

#endif
