/* check.h: the unit-test harness.  Each test binary prints one line per
 * check, "ok NAME" or "not ok NAME: WHY", and tests/run.sh counts them.
 *
 *     CHECK(cond, "name");            one check
 *     CHECKF(cond, "name", fmt, ...)  with a formatted reason on failure
 *     return check_done();            exit status 1 when anything failed
 */
#ifndef MVL_CHECK_H
#define MVL_CHECK_H
#include <stdio.h>

static int check_failed_;

#define CHECK(cond, name) CHECKF(cond, name, "%s", #cond)
#define CHECKF(cond, name, ...)                                          \
	do {                                                             \
		if (cond) {                                              \
			printf("ok %s\n", name);                         \
		} else {                                                 \
			check_failed_++;                                 \
			printf("not ok %s: %s:%d: ", name, __FILE__, __LINE__); \
			printf(__VA_ARGS__);                             \
			printf("\n");                                    \
		}                                                        \
		fflush(stdout);                                          \
	} while (0)

static inline int check_done(void)
{
	return check_failed_ ? 1 : 0;
}
#endif
