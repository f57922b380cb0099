/* registry.c: the filters `mvl filter` knows, and their commands. */
#include "commands.h"
#include "filter.h"

extern const filter_def filter_clean, filter_capfilter, filter_imgfilter, filter_dedup, filter_pairscore;

const filter_def *const filter_defs[] = {
	&filter_clean,
	&filter_capfilter,
	&filter_imgfilter,
	&filter_dedup,
	&filter_pairscore,
	NULL,
};

int cmd_clean(int argc, char **argv)
{
	return filter_command(&filter_clean, argc, argv);
}

int cmd_capfilter(int argc, char **argv)
{
	return filter_command(&filter_capfilter, argc, argv);
}

int cmd_imgfilter(int argc, char **argv)
{
	return filter_command(&filter_imgfilter, argc, argv);
}

int cmd_filter(int argc, char **argv)
{
	return filter_command(NULL, argc, argv);
}

int cmd_dedup(int argc, char **argv)
{
	return filter_command(&filter_dedup, argc, argv);
}
