/* shard_reader.h: reads samples from WebDataset tar streams.
 *
 * Inputs are files (or "-" / nothing: stdin), read in order; plain tar,
 * zstd and gzip (also bzip2, xz) are recognised from the content, never
 * from the name.  Members are grouped into samples by key (sample.h).
 *
 * Nothing is dropped without a word.  A group that cannot be a safe sample
 * is returned as a rejection with a reason:
 *   unsafe_path       absolute member name or a '..' component
 *   not_regular_file  symlink, hard link, device, fifo (directories are
 *                     skipped: they are not samples)
 *   bad_name          no extension, or a file name starting with a dot
 *   duplicate_member  the same extension twice in one sample
 *   member_too_large  a member above max_member bytes (data is skipped
 *                     without being read into memory)
 *   truncated_shard   the archive broke (truncated or corrupt) while this
 *                     sample was being read
 * A damaged or unreadable input is reported as an input error naming the
 * file and the last good key; reading then goes on with the next input.
 */
#ifndef MVL_SHARD_READER_H
#define MVL_SHARD_READER_H

#include <stdint.h>

#include "rejects.h"
#include "sample.h"
#include "util.h"

typedef struct shard_reader shard_reader;

typedef struct reader_opts {
	uint64_t max_member; /* bytes; 0 = 1 GiB */
} reader_opts;

enum {
	READ_END = 0,         /* all inputs done */
	READ_SAMPLE = 1,      /* *s holds a sample */
	READ_REJECT = 2,      /* *s holds the key (and source) of a rejected
			       * group, *rj why */
	READ_INPUT_ERROR = 3, /* *err says which input failed and how; the
			       * reader has moved on to the next input */
	READ_BROKEN = 4,      /* both: *s is the group that was being read
			       * when its input broke, rejected as
			       * truncated_shard in *rj, and *err describes the
			       * input failure; reading goes on with the next
			       * input */
};

/* shard_reader_new() : paths are borrowed and must outlive the reader;
 * n == 0 reads stdin. */
shard_reader *shard_reader_new(char **paths, int n, const reader_opts *o);

/* shard_reader_next() : @return one of READ_*. */
int shard_reader_next(shard_reader *r, sample *s, reject_info *rj, mvl_err *err);

/* Bytes consumed from the inputs so far (compressed), and the total of the
 * inputs' sizes where known (0 when any input is a pipe). */
uint64_t shard_reader_bytes(const shard_reader *r);
uint64_t shard_reader_total_bytes(const shard_reader *r);
/* Index of the input currently being read, and its name. */
const char *shard_reader_source(const shard_reader *r);

void shard_reader_free(shard_reader *r);

#endif
