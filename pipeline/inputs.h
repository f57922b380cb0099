/* inputs.h: turning command-line input names into a list of files.
 *
 * Brace expansion as webdataset and the shell do it: numeric ranges keep
 * their zero padding ("shard-{000..012}.tar"), lists "{a,b}" expand in
 * order, and braces nest.  Each result with a wildcard (* ? [) goes through
 * glob(3), matches sorted; a name without wildcards is kept as given (so a
 * missing file is reported when it is opened, naming it).  "-" is stdin.
 */
#ifndef MVL_INPUTS_H
#define MVL_INPUTS_H

#include "util.h"

typedef struct inputs {
	char **path;
	int n, cap;
} inputs;

/* inputs_expand() : appends the expansion of pattern to *in.
 * @return 0, or -1 (unbalanced braces, a range above 1,000,000 names, a
 * wildcard that matches nothing) with *err naming the pattern. */
int inputs_expand(inputs *in, const char *pattern, mvl_err *err);
void inputs_free(inputs *in);

/* inputs_shard_dirs() : replaces each directory in *in by the shards at its
 * top level (*.tar, *.tar.zst, *.tzst, *.tar.gz, *.tgz), sorted, as
 * img2dataset and `mvl shard` lay them out.  @return 0, or -1 when a
 * directory cannot be read or holds no shard. */
int inputs_shard_dirs(inputs *in, mvl_err *err);

/* is_shard_name() : 1 when name ends like a shard (see above). */
int is_shard_name(const char *name);

#endif
