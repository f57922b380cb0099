/* replay.c: runs a fuzz harness over files, without libFuzzer.
 *
 * Linked with one tests/fuzz/fuzz_NAME.c, it calls LLVMFuzzerTestOneInput()
 * on every regular file of the directories given, so `make test` replays
 * the seed corpus and every crash ever found (tests/fuzz/regress/NAME)
 * with whatever compiler and sanitizers the build uses.
 *
 *   replay NAME DIR...   prints "ok NAME: N inputs"; a missing DIR is no
 *                        error (a harness may have no regressions yet).
 * Each file's name goes to stderr before it runs, so when an input
 * crashes the process the last line names it.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	size_t cap = 4096, n = 0;
	uint8_t *p = malloc(cap);
	size_t got;
	while (p && (got = fread(p + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap)
			p = realloc(p, cap *= 2);
	}
	int bad = ferror(f) || !p;
	fclose(f);
	if (bad) {
		free(p);
		return -1;
	}
	fprintf(stderr, "replay: %s\n", path);
	/* an exact-size copy, so ASan sees a read past the input's end */
	uint8_t *exact = malloc(n ? n : 1);
	memcpy(exact, p, n);
	free(p);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

/* @return inputs replayed, or -1 when a file could not be read. */
static long replay_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap)
			names = realloc(names, (cap = cap ? 2 * cap : 64) * sizeof *names);
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof *names, by_name);
	long count = 0;
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		struct stat st;
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (replay_file(path) < 0) {
				printf("not ok cannot read '%s'\n", path);
				count = -1;
				break;
			}
			count++;
		}
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return count;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: replay NAME DIR...\n");
		return 2;
	}
	long total = 0;
	for (int i = 2; i < argc; i++) {
		long n = replay_dir(argv[i]);
		if (n < 0)
			return 1;
		total += n;
	}
	printf("ok %s: %ld inputs\n", argv[1], total);
	return 0;
}
