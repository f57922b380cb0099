/* langid.h: language identification of short texts (placeholder until
 * the measured backend lands). */
#ifndef MVL_LANGID_H
#define MVL_LANGID_H
#include <stddef.h>
#include "util.h"
typedef struct langid langid;
langid *langid_new(mvl_err *err);
void langid_free(langid *l);
int langid_detect(langid *l, const char *text, size_t n, char code[8], double *conf);
const char *langid_backend(void);
#endif
