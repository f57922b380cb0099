/* placeholder: replaced by the measured backend */
#include "langid.h"
#include <string.h>
langid *langid_new(mvl_err *err) { mvl_errf(err, "no language identification backend"); return NULL; }
void langid_free(langid *l) { (void)l; }
int langid_detect(langid *l, const char *t, size_t n, char code[8], double *conf) { (void)l; (void)t; (void)n; strcpy(code, "und"); *conf = 0; return 0; }
const char *langid_backend(void) { return "none"; }
