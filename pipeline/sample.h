/* sample.h: one WebDataset sample, the unit that flows through mvl.
 *
 * A sample is the group of consecutive tar members sharing a key: the key
 * is the member path up to the first dot of its file name, the extension
 * the rest, lower-cased ("a/b/x01.JPG" -> key "a/b/x01", ext "jpg";
 * "x.seg.png" -> "x", "seg.png").  Members keep stream order; writers sort
 * them by extension.  Buffers are reused across samples: sample_clear()
 * empties a sample but keeps its memory.
 */
#ifndef MVL_SAMPLE_H
#define MVL_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct member {
	char ext[64];     /* lower-cased, NUL-terminated */
	uint8_t *data;
	size_t size, cap;
} member;

typedef struct sample {
	char *key;
	size_t keycap;
	member *m;
	int n, cap;          /* members in use, allocated */
	const char *source;  /* input file it came from ("-": stdin); borrowed */
	uint64_t index;      /* ordinal among the samples read */
	/* scratch a filter's parallel step leaves for its ordered step (dedup
	 * signatures); never written out */
	unsigned char aux[2048];
	int aux_len;
} sample;

void sample_init(sample *s);
void sample_clear(sample *s);       /* n = 0, key = "", buffers kept */
void sample_free(sample *s);
void sample_set_key(sample *s, const char *key, size_t len);

/* sample_get() : the member with this extension, or NULL. */
member *sample_get(const sample *s, const char *ext);
/* sample_add() : appends a member of `size` bytes (data uninitialised). */
member *sample_add(sample *s, const char *ext, size_t size);
/* sample_put() : replaces or appends the member ext with a copy of data. */
member *sample_put(sample *s, const char *ext, const void *data, size_t n);
/* sample_remove() : drops the member ext if present. */
void sample_remove(sample *s, const char *ext);
/* sample_copy() : deep copy of src into dst (dst's buffers reused). */
void sample_copy(sample *dst, const sample *src);

/* is_image_ext() : 1 for jpg, jpeg, png, webp. */
int is_image_ext(const char *ext);
/* sample_image() : the first image member, or NULL; *count gets how many
 * image members the sample has (when count is not NULL). */
member *sample_image(const sample *s, int *count);

/* split_member_name() : WebDataset's rule.  Splits name into key and
 * extension (lower-cased into ext, at most extcap-1 bytes).
 * @return 0, or -1 when there is no extension, the file name starts with
 * a dot, or the extension does not fit. */
int split_member_name(const char *name, size_t *keylen, char *ext, size_t extcap);

/* unsafe_member_name() : why a member name must not be used ("absolute
 * path", "'..' component", "empty name") or NULL when it is safe. */
const char *unsafe_member_name(const char *name);

#endif
