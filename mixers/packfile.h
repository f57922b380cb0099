/* packfile.h: the pack file the packer writes and the trainer reads.
 *
 * A pack holds fixed-length sequences of seq_len tokens: ids, positions
 * (restarting at 0 for every sample), segment ids (1..n per sample, 0 for
 * padding: attention never crosses segments), the loss mask, the samples'
 * keys, and the images' RGB pixels at their packed resolution.  The byte
 * layout is mixers/PACK_FORMAT.md; files are written under a temporary
 * name and renamed when complete, and the reader checks every offset and
 * count against the file's size before trusting it.
 */
#ifndef MVL_PACKFILE_H
#define MVL_PACKFILE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define PACK_MAGIC "MVLPACK1"
enum { PACK_VERSION = 1, PACK_HEADER = 64 };
enum { PACK_SEG_TRUNCATED = 1 }; /* segment flags */

typedef struct pack_segment {
	uint32_t start, len, flags;
	const char *key; /* not NUL-terminated */
	uint32_t keylen;
} pack_segment;

typedef struct pack_image {
	uint32_t segment;  /* 1-based, as seg[] */
	uint32_t token;    /* index of its first image pad token */
	uint32_t h, w;     /* pixels; multiples of 28 */
	const uint8_t *px; /* h * w * 3, RGB rows */
} pack_image;

/* One sequence.  Writers fill the arrays; readers get pointers into the
 * record they read (valid until the next read). */
typedef struct pack_seq {
	uint32_t seq_len, ntok;  /* ntok: tokens before the padding */
	uint32_t *ids, *pos;
	uint32_t *seg;
	uint8_t *loss;           /* 1: ids[i] is a target (never a segment's first) */
	pack_segment *segs;
	uint32_t nseg;
	pack_image *img;
	uint32_t nimg;
} pack_seq;

typedef struct pack_writer pack_writer;
/* pack_writer_open() : writes path via "path.tmp.PID".  @return NULL + *err. */
pack_writer *pack_writer_open(const char *path, uint32_t seq_len, mvl_err *err);
/* pack_writer_add() : appends one sequence.  @return 0 or -1 (disk). */
int pack_writer_add(pack_writer *w, const pack_seq *s, mvl_err *err);
uint64_t pack_writer_count(const pack_writer *w);
/* pack_writer_close() : ok: writes the index and renames into place;
 * else removes the temporary file.  Frees w.  @return 0 or -1. */
int pack_writer_close(pack_writer *w, int ok, mvl_err *err);

typedef struct pack_reader pack_reader;
/* pack_open() : reads and checks the header and index.  @return NULL + *err
 * ("not a pack", "truncated", "index out of range" ...). */
pack_reader *pack_open(const char *path, mvl_err *err);
uint64_t pack_count(const pack_reader *r);
uint32_t pack_seq_len(const pack_reader *r);
/* pack_read() : sequence i into *s, every count and offset checked.
 * @return 0 or -1 with *err naming the file and sequence. */
int pack_read(pack_reader *r, uint64_t i, pack_seq *s, mvl_err *err);
void pack_close(pack_reader *r);

/* is_pack_file() : 1 when path starts with the pack magic. */
int is_pack_file(const char *path);

#endif
