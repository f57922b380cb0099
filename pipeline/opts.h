/* opts.h: declarative command-line options.
 *
 * A command lists its options once, in a table; the same table parses argv
 * and prints the usage (every option with its default), so the two never
 * disagree.  Syntax: --name VALUE, --name=VALUE, -x VALUE, -xVALUE, flags
 * as --name / -x, "--" ends options.  Non-options are collected in order.
 *
 *     static const opt_spec specs[] = {
 *         {"output", 'o', OPT_STR, &o.out, NULL, "PATTERN", "write shards ..."},
 *         {"maxcount", 0, OPT_U64, &o.maxcount, "0", "N", "samples per shard"},
 *         {0}
 *     };
 */
#ifndef MVL_OPTS_H
#define MVL_OPTS_H

#include <stdint.h>
#include <stdio.h>

#include "util.h"

typedef enum opt_kind {
	OPT_FLAG,   /* int, set to 1 */
	OPT_INT,    /* int */
	OPT_U64,    /* uint64_t */
	OPT_SIZE,   /* uint64_t, with k/M/G suffixes */
	OPT_DOUBLE, /* double */
	OPT_STR,    /* const char * (points into argv or the default) */
	OPT_CHOICE, /* const char *, one of the '|'-separated words in arg */
} opt_kind;

typedef struct opt_spec {
	const char *name;  /* long name without dashes */
	char shortc;       /* 0 when none */
	opt_kind kind;
	void *dst;
	const char *def;   /* default as text (NULL: none / off) */
	const char *arg;   /* metavar; for OPT_CHOICE the choices "a|b|c" */
	const char *help;
} opt_spec;

typedef struct opt_cmd {
	const char *name;      /* "cat" */
	const char *synopsis;  /* "[OPTIONS] [INPUT...]" */
	const char *summary;   /* one line */
	const char *details;   /* paragraphs after the options, or NULL */
	const opt_spec *specs; /* terminated by {0} */
} opt_cmd;

/* opts_parse() : applies defaults, then parses argv[1..argc).  Non-option
 * arguments are stored in *args (argv pointers, *nargs of them; the array
 * is malloc'd).  "--help"/"-h" prints the usage to stdout and sets *help.
 * @return 0, or -1 with *err naming the bad option or value (the caller
 * prints it with the usage hint and exits 2). */
int opts_parse(const opt_cmd *cmd, int argc, char **argv, char ***args,
	       int *nargs, int *help, mvl_err *err);

/* opts_set_value() : parses text v as option s's kind into s->dst.
 * @return 0, or -1 with *err naming the option and the value. */
int opts_set_value(const opt_spec *s, const char *v, mvl_err *err);

/* opts_usage() : prints "usage: mvl NAME SYNOPSIS", the summary, and every
 * option with its argument, help and default. */
void opts_usage(const opt_cmd *cmd, FILE *f);

/* opts_main() : parse-or-exit for command mains: on --help prints usage and
 * exits 0; on error prints "mvl NAME: MESSAGE" and a hint and exits 2. */
void opts_main(const opt_cmd *cmd, int argc, char **argv, char ***args,
	       int *nargs);

#endif
