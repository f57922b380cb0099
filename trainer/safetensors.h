/* safetensors.h: reading and writing .safetensors files (float32).
 *
 * The format (huggingface/safetensors): an 8-byte little-endian header
 * length N, N bytes of JSON {"NAME": {"dtype": "F32", "shape": [...],
 * "data_offsets": [BEGIN, END]}, ..., "__metadata__": {"k": "v"}} (offsets
 * relative to the byte after the header, tensors packed in order, the
 * header padded with spaces to a multiple of 8), then the data.  Files are
 * written to a temporary name, fsynced and renamed; the reader checks that
 * every tensor's offsets lie inside the file and match its shape, that the
 * tensors tile the data exactly (no overlap, no hole, nothing after), and
 * that every value is finite (a NaN weight is refused where it is read,
 * not found later as a NaN loss).
 */
#ifndef MVL_SAFETENSORS_H
#define MVL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct st_tensor {
	const char *name;
	int ndim;
	int64_t shape[4];
	const float *data;
} st_tensor;

/* st_write() : writes n tensors (F32) and metadata pairs (meta[2i] key,
 * meta[2i+1] value; nmeta pairs) to path.  @return 0 or -1 + *err. */
int st_write(const char *path, const st_tensor *t, int n, const char *const *meta, int nmeta, mvl_err *err);

typedef struct st_file st_file;
/* st_open() : reads the whole file (a regular file only) and checks it as
 * above.  @return NULL + *err naming the file and what is wrong. */
st_file *st_open(const char *path, mvl_err *err);
/* st_get() : the tensor called name (F32 only), or NULL. */
const st_tensor *st_get(const st_file *f, const char *name);
int st_count(const st_file *f);
const st_tensor *st_at(const st_file *f, int i);
/* st_meta() : a __metadata__ value, or NULL. */
const char *st_meta(const st_file *f, const char *key);
void st_close(st_file *f);

#endif
