/* json_file.c: see json_file.h. */
#include "json_file.h"

#include <stdio.h>
#include <stdlib.h>

int json_save(const char *path, const json_t *j, mvl_err *err)
{
	atomic_file af;
	if (atomic_file_open(&af, path, err) != 0)
		return -1;
	char *s = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	fprintf(af.f, "%s\n", s ? s : "null");
	free(s);
	return atomic_file_commit(&af, err);
}
