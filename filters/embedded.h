/* embedded.h: data files compiled into the binary (filters/data/...), so
 * `mvl` needs no install step and no path to find its stopword lists.
 * The Makefile generates the table from every file under filters/data. */
#ifndef MVL_EMBEDDED_H
#define MVL_EMBEDDED_H

#include <stddef.h>

/* embedded_file() : the file at `name` relative to filters/data (e.g.
 * "stopwords/en.txt"), NUL-terminated, or NULL when absent. */
const char *embedded_file(const char *name, size_t *len);

#endif
