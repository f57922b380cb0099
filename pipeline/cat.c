/* cat.c: `mvl cat` and `mvl shard`: copy sample streams, re-shard. */
#include <stdio.h>
#include <stdlib.h>

#include "commands.h"
#include "stream_cmd.h"

static int copy_stream(const char *cmd, const stream_opts *o, char **args, int nargs)
{
	stream_run sr;
	mvl_err err;
	if (stream_run_open(&sr, cmd, o, args, nargs, RUN_WRITES, &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", cmd, err.msg);
		free(args);
		return 1;
	}
	sample s;
	sample_init(&s);
	while (stream_run_read(&sr, &s)) {
		if (stream_run_write(&sr, &s, &err) != 0) {
			fprintf(stderr, "mvl %s: %s\n", cmd, err.msg);
			break;
		}
	}
	sample_free(&s);
	free(args);
	return stream_run_close(&sr);
}

int cmd_cat(int argc, char **argv)
{
	stream_opts o;
	const opt_spec specs[] = {
		STREAM_OUTPUT_SPECS(o, "0", "0"),
		STREAM_INPUT_SPECS(o),
		{0},
	};
	const opt_cmd cmd = {
		"cat", "[OPTIONS] [INPUT...]",
		"Concatenate WebDataset streams (tar, .tar.zst, .tar.gz, detected from the\n"
		"content) from INPUTs (files, globs, brace ranges like shard-{000..009}.tar,\n"
		"directories of shards; stdin when none) to stdout or to shards.  Samples\n"
		"are copied byte for byte;"
		" members come out in sorted extension order with fixed\n"
		"metadata.",
		"Unsafe samples (absolute or '..' member names, links, devices, duplicate\n"
		"extensions, oversized members, a sample cut by a broken input) are rejected\n"
		"with a reason, never copied.  Exit status: 0 when the run completed (even\n"
		"with rejections), 1 when an input was unreadable or broken, an output\n"
		"failed, or --strict saw a rejection, 2 on bad usage.\n",
		specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	return copy_stream("cat", &o, args, nargs);
}

int cmd_shard(int argc, char **argv)
{
	stream_opts o;
	const opt_spec specs[] = {
		STREAM_OUTPUT_SPECS(o, "10000", "3GB"),
		STREAM_INPUT_SPECS(o),
		{0},
	};
	const opt_cmd cmd = {
		"shard", "-o PATTERN [OPTIONS] [INPUT...]",
		"Re-shard WebDataset streams into shards of at most --maxcount samples and\n"
		"--maxsize bytes, named by PATTERN (e.g. out/shard-%06d.tar.zst; the\n"
		"extension picks the compression).  Each shard is written under a temporary\n"
		"name and renamed when complete.",
		NULL,
		specs,
	};
	char **args;
	int nargs;
	opts_main(&cmd, argc, argv, &args, &nargs);
	if (!o.output) {
		fprintf(stderr, "mvl shard: -o PATTERN is required\nsee 'mvl shard --help'\n");
		free(args);
		return 2;
	}
	return copy_stream("shard", &o, args, nargs);
}
