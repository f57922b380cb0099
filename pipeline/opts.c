/* opts.c: table-driven option parsing and usage. */
#include "opts.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int opts_set_value(const opt_spec *s, const char *v, mvl_err *err)
{
	char *end;
	switch (s->kind) {
	case OPT_FLAG:
		*(int *)s->dst = v ? atoi(v) : 1;
		return 0;
	case OPT_INT: {
		errno = 0;
		long x = strtol(v, &end, 10);
		if (end == v || *end || errno || x < -2147483647L || x > 2147483647L)
			return mvl_errf(err, "option '--%s': '%s' is not an integer", s->name, v);
		*(int *)s->dst = (int)x;
		return 0;
	}
	case OPT_U64: {
		errno = 0;
		if (*v == '-')
			return mvl_errf(err, "option '--%s': '%s' must not be negative", s->name, v);
		unsigned long long x = strtoull(v, &end, 10);
		if (end == v || *end || errno)
			return mvl_errf(err, "option '--%s': '%s' is not a non-negative integer", s->name, v);
		*(uint64_t *)s->dst = x;
		return 0;
	}
	case OPT_SIZE:
		if (parse_size(v, (uint64_t *)s->dst) != 0)
			return mvl_errf(err, "option '--%s': '%s' is not a size (e.g. 500M, 1GiB)", s->name, v);
		return 0;
	case OPT_DOUBLE: {
		errno = 0;
		double x = strtod(v, &end);
		if (end == v || *end || errno)
			return mvl_errf(err, "option '--%s': '%s' is not a number", s->name, v);
		*(double *)s->dst = x;
		return 0;
	}
	case OPT_STR:
		*(const char **)s->dst = v;
		return 0;
	case OPT_CHOICE: {
		size_t n = strlen(v);
		const char *c = s->arg;
		while (c && *c) {
			const char *bar = strchr(c, '|');
			size_t len = bar ? (size_t)(bar - c) : strlen(c);
			if (len == n && memcmp(c, v, n) == 0) {
				*(const char **)s->dst = v;
				return 0;
			}
			c = bar ? bar + 1 : NULL;
		}
		return mvl_errf(err, "option '--%s': '%s' is not one of %s", s->name, v, s->arg);
	}
	}
	return mvl_errf(err, "option '--%s': bad kind", s->name);
}

/* Long names match with '-' and '_' interchangeable (--min-words,
 * --min_words), so filter options read the same in specs and commands. */
static int same_name(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char x = a[i] == '_' ? '-' : a[i], y = b[i] == '_' ? '-' : b[i];
		if (x != y)
			return 0;
	}
	return 1;
}

int opts_parse(const opt_cmd *cmd, int argc, char **argv, char ***args,
	       int *nargs, int *help, mvl_err *err)
{
	const opt_spec *s;
	*help = 0;
	*nargs = 0;
	*args = xcalloc((size_t)argc + 1, sizeof(char *));
	for (s = cmd->specs; s && s->name; s++) {
		if (s->kind == OPT_FLAG)
			*(int *)s->dst = s->def ? atoi(s->def) : 0;
		else if (s->kind == OPT_STR || s->kind == OPT_CHOICE)
			*(const char **)s->dst = s->def;
		else if (s->def && opts_set_value(s, s->def, err) != 0)
			return -1;
	}
	int only_args = 0;
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (only_args || a[0] != '-' || a[1] == 0) {
			(*args)[(*nargs)++] = a;
			continue;
		}
		if (strcmp(a, "--") == 0) {
			only_args = 1;
			continue;
		}
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			*help = 1;
			return 0;
		}
		const char *val = NULL;
		const opt_spec *hit = NULL;
		if (a[1] == '-') {
			const char *name = a + 2;
			const char *eq = strchr(name, '=');
			size_t len = eq ? (size_t)(eq - name) : strlen(name);
			for (s = cmd->specs; s && s->name; s++)
				if (strlen(s->name) == len && same_name(s->name, name, len))
					hit = s;
			if (!hit)
				return mvl_errf(err, "unknown option '--%.*s'", (int)len, name);
			if (eq) {
				if (hit->kind == OPT_FLAG)
					return mvl_errf(err, "option '--%s' takes no value", hit->name);
				val = eq + 1;
			}
		} else {
			for (s = cmd->specs; s && s->name; s++)
				if (s->shortc && s->shortc == a[1])
					hit = s;
			if (!hit)
				return mvl_errf(err, "unknown option '-%c'", a[1]);
			if (a[2]) {
				if (hit->kind == OPT_FLAG)
					return mvl_errf(err, "option '-%c' takes no value", a[1]);
				val = a + 2;
			}
		}
		if (hit->kind == OPT_FLAG) {
			*(int *)hit->dst = 1;
			continue;
		}
		if (!val) {
			if (i + 1 >= argc)
				return mvl_errf(err, "option '--%s' needs a value (%s)", hit->name,
						hit->arg ? hit->arg : "VALUE");
			val = argv[++i];
		}
		if (opts_set_value(hit, val, err) != 0)
			return -1;
	}
	return 0;
}

void opts_usage(const opt_cmd *cmd, FILE *f)
{
	fprintf(f, "usage: mvl %s %s\n\n%s\n", cmd->name, cmd->synopsis, cmd->summary);
	if (cmd->specs && cmd->specs->name)
		fprintf(f, "\noptions:\n");
	for (const opt_spec *s = cmd->specs; s && s->name; s++) {
		char left[96];
		int n = snprintf(left, sizeof left, "  %s%c%s--%s", s->shortc ? "-" : "",
				 s->shortc ? s->shortc : ' ', s->shortc ? ", " : "  ", s->name);
		if (s->kind != OPT_FLAG && n > 0 && (size_t)n < sizeof left)
			snprintf(left + n, sizeof left - (size_t)n, " %s", s->arg ? s->arg : "VALUE");
		fprintf(f, "%-34s %s", left, s->help);
		if (s->def && s->kind != OPT_FLAG)
			fprintf(f, " (default: %s)", s->def);
		fputc('\n', f);
	}
	fprintf(f, "  -h, --help                       show this help\n");
	if (cmd->details)
		fprintf(f, "\n%s", cmd->details);
}

void opts_main(const opt_cmd *cmd, int argc, char **argv, char ***args,
	       int *nargs)
{
	mvl_err err;
	int help;
	if (opts_parse(cmd, argc, argv, args, nargs, &help, &err) != 0) {
		fprintf(stderr, "mvl %s: %s\n", cmd->name, err.msg);
		fprintf(stderr, "see 'mvl %s --help'\n", cmd->name);
		exit(2);
	}
	if (help) {
		opts_usage(cmd, stdout);
		exit(fflush(stdout) == 0 ? 0 : 1);
	}
}
