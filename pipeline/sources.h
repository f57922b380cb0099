/* sources.h: where ingest finds samples besides tar streams.
 *
 * A sample_source is anything that yields samples with the READ_* results
 * of shard_reader.h.  ingest_source_new() classifies each input:
 *   - "-" or a file whose content is tar / zstd / gzip: WebDataset shards;
 *   - a directory holding shards (*.tar, *.tar.zst, *.tar.gz, *.tgz) at its
 *     top level: img2dataset's webdataset output.  Its NNNNN_stats.json
 *     files are read and their "successes" compared with what was read;
 *   - any other directory: walked recursively in sorted order, files grouped
 *     by key (relative path up to the first dot of the file name) as
 *     img2dataset's "files" output and plain image + caption folders are;
 *     dot-files, *_stats.json and *.parquet are not samples and are skipped;
 *   - a file whose content starts with '{': JSONL, one object per line with
 *     the image path in "image" (or "image_path", "path", "file_name"),
 *     relative to the JSONL's folder, the caption in "caption" (or "text",
 *     "txt"), the key in "key" (or "id"; else the line number as %09d);
 *     every other field (e.g. "conversations") is kept in KEY.json.
 * Reading is streaming: memory is bounded by one directory listing and one
 * sample, whatever the dataset size.
 */
#ifndef MVL_SOURCES_H
#define MVL_SOURCES_H

#include "rejects.h"
#include "sample.h"
#include "shard_reader.h"
#include "util.h"

typedef struct sample_source {
	void *self;
	int (*next)(void *self, sample *s, reject_info *rj, mvl_err *err);
	uint64_t (*bytes)(const void *self);
	uint64_t (*total)(const void *self);
	void (*free)(void *self);
} sample_source;

/* shard_source() : a sample_source over shard_reader (paths borrowed). */
sample_source shard_source(char **paths, int n, const reader_opts *o);

/* ingest_source() : the classifying source above (paths borrowed; n == 0
 * reads a stream from stdin).  Notes (img2dataset count mismatches) go to
 * stderr prefixed "mvl CMD: ". */
sample_source ingest_source(char **paths, int n, const reader_opts *o,
			    const char *cmd);

#endif
