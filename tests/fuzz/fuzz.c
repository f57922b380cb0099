/* fuzz.c: helpers for the fuzz harnesses (fuzz.h). */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One file per process and suffix is enough: a harness parses one file at
 * a time.  Kept in a static because LLVMFuzzerTestOneInput() has no place
 * to carry state, and the name must be removed by an atexit handler. */
static char fuzz_path[4096];

volatile uint64_t fuzz_sink;

static void fuzz_remove(void)
{
	if (fuzz_path[0])
		unlink(fuzz_path);
}

const char *fuzz_file(const char *suffix, const uint8_t *data, size_t size)
{
	if (!fuzz_path[0]) {
		const char *dir = getenv("TMPDIR");
		snprintf(fuzz_path, sizeof fuzz_path, "%s/mvl-fuzz-%ld%s", dir && *dir ? dir : "/tmp",
			 (long)getpid(), suffix);
		atexit(fuzz_remove);
	}
	FILE *f = fopen(fuzz_path, "wb");
	if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
		perror(fuzz_path);
		abort();
	}
	return fuzz_path;
}

char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		abort();
	if (size)
		memcpy(s, data, size);
	s[size] = 0;
	return s;
}
