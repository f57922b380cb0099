/* json_file.h: a JSON document written whole through atomic_file (the
 * manifests, stats and reports every command leaves beside its outputs). */
#ifndef MVL_JSON_FILE_H
#define MVL_JSON_FILE_H

#include <jansson.h>

#include "util.h"

/* json_save() : j, indented, key order kept, to path via "path.tmp.PID"
 * renamed when complete.  @return 0 or -1 with *err. */
int json_save(const char *path, const json_t *j, mvl_err *err);

#endif
