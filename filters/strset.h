/* strset.h: a set of byte strings (open addressing on xxh3), built once
 * and then read from many threads. */
#ifndef MVL_STRSET_H
#define MVL_STRSET_H

#include <stddef.h>

typedef struct strset strset;
strset *strset_new(void);
void strset_free(strset *s);
void strset_add(strset *s, const char *p, size_t n);
int strset_has(const strset *s, const char *p, size_t n);
size_t strset_size(const strset *s);

/* strset_add_lines() : adds each line of text (trimmed of spaces, tabs and
 * CR; blank lines and lines starting with '#' skipped).  @return count. */
size_t strset_add_lines(strset *s, const char *text, size_t n);

#endif
