/* tar_read.h: a streaming tar parser, the read side of WebDataset I/O.
 *
 * Reads ustar, pax (path, size, linkpath records) and GNU (long names,
 * base-256 sizes) archives from a file or stdin, plain or compressed:
 * zstd and gzip are decoded here (libzstd, zlib); any other compression
 * libarchive knows (bzip2, xz, lz4, ...) is decoded through its raw
 * reader.  The format is recognised from the content, never the name.
 *
 * Every header's checksum is verified; a bad one, a malformed pax record,
 * or data that ends early is an error naming the offset.  The end is the
 * end of the input: end-of-archive blocks are read past (GNU tar's
 * --ignore-zeros), so archives joined by `cat` are read whole, and
 * anything but zeros or another archive after them is an error.  Reading is
 * streaming with one 1 MiB window: memory does not grow with the input.
 * Why not libarchive for the tar layer too: mvl reads millions of small
 * members, and libarchive's per-entry work (locale conversion of every
 * name, entry objects) cost more than the rest of a `cat` together.
 */
#ifndef MVL_TAR_READ_H
#define MVL_TAR_READ_H

#include <stdint.h>

#include "util.h"

typedef struct tar_in tar_in;

typedef struct tar_entry {
	const char *name; /* full path; valid until the next tar_next() */
	char type;        /* '0' file, '5' dir, '1' hard link, '2' symlink,
			   * '3' '4' '6' devices and fifo, 'S' sparse, '?' other */
	uint64_t size;    /* data bytes of this entry */
} tar_entry;

/* tar_open() : "-" reads stdin.  @return NULL with *err. */
tar_in *tar_open(const char *path, mvl_err *err);

/* tar_next() : the next entry's header (data of the previous entry that
 * was not read is skipped).  @return 1 an entry, 0 the end, -1 an error
 * (truncated or corrupt archive, with offset in *err). */
int tar_next(tar_in *t, tar_entry *e, mvl_err *err);

/* tar_read() : reads the next n bytes of the current entry's data (n no
 * more than what is left).  @return 0 or -1 with *err. */
int tar_read(tar_in *t, void *dst, uint64_t n, mvl_err *err);

/* Bytes consumed from the file (compressed), for progress. */
uint64_t tar_bytes_in(const tar_in *t);

void tar_close(tar_in *t);

#endif
