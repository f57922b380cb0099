/* shard_writer.h: writes samples as WebDataset tar streams.
 *
 * Output is reproducible: the same samples give the same bytes.  Members
 * are written in sorted extension order, as ustar entries with mode 0644,
 * uid/gid 0, empty owner names and mtime 0; a name longer than ustar holds
 * gets a pax "path" record.  The archive ends with two zero blocks.
 *
 * Either one stream to stdout, or shards named by a printf pattern with one
 * integer conversion ("out/shard-%06d.tar.zst"), started anew when the
 * next sample would pass maxcount samples or maxsize bytes (tar bytes
 * before compression, as webdataset's ShardWriter counts).  Each shard is
 * written to "NAME.tmp.PID" and renamed when complete, so a file that
 * looks whole is whole.  Compression follows the name: .tar.zst / .tzst,
 * .tar.gz / .tgz, else plain; for stdout it is chosen by `compress`.
 */
#ifndef MVL_SHARD_WRITER_H
#define MVL_SHARD_WRITER_H

#include <stdint.h>

#include "sample.h"
#include "util.h"

typedef struct shard_writer shard_writer;

typedef struct writer_opts {
	const char *pattern; /* NULL: stdout */
	uint64_t maxcount;   /* 0: no limit */
	uint64_t maxsize;    /* 0: no limit */
	const char *compress;/* for stdout: "none", "zst", "gz" (NULL: none) */
	int level;           /* compression level; 0: zstd 3 / gzip 6 */
	int start;           /* first shard number */
} writer_opts;

/* shard_writer_open() : checks the pattern (exactly one %d-style
 * conversion) and creates missing output directories.
 * @return NULL with *err on a bad pattern or an unwritable directory. */
shard_writer *shard_writer_open(const writer_opts *o, mvl_err *err);

/* shard_writer_write() : @return 0 or -1 (an output error: full disk ...). */
int shard_writer_write(shard_writer *w, const sample *s, mvl_err *err);

/* shard_writer_close() : completes and renames the last shard, frees w.
 * With ok == 0 (the run failed) the unfinished shard is removed instead.
 * @return 0 or -1 with *err. */
int shard_writer_close(shard_writer *w, int ok, mvl_err *err);

/* shard_writer_pending() : shards this writer will have completed when
 * closed with ok == 1 (the completed ones and the one open now). */
int shard_writer_pending(const shard_writer *w);

/* Shards completed so far, and samples written. */
int shard_writer_shards(const shard_writer *w);
uint64_t shard_writer_samples(const shard_writer *w);

/* tar_sample_size() : bytes sample s takes in a tar (headers + padding). */
uint64_t tar_sample_size(const sample *s);

#endif
