/* progress.c: terminal progress line. */
#include "progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "util.h"

struct progress {
	const char *cmd;
	int on;
	uint64_t total;
	double t0, last;
	int drawn;
};

progress *progress_new(const char *cmd, int quiet, uint64_t total_bytes)
{
	progress *p = xcalloc(1, sizeof *p);
	p->cmd = cmd;
	p->on = !quiet && isatty(2);
	p->total = total_bytes;
	p->t0 = p->last = now_sec();
	return p;
}

void progress_update(progress *p, uint64_t samples, uint64_t bytes)
{
	if (!p->on)
		return;
	double t = now_sec();
	if (t - p->last < 0.25)
		return;
	p->last = t;
	double el = t - p->t0;
	char b[32];
	fprintf(stderr, "\r\033[Kmvl %s: %llu samples, %s, %.0f samples/s", p->cmd,
		(unsigned long long)samples, fmt_bytes((double)bytes, b),
		el > 0 ? samples / el : 0.0);
	if (p->total && bytes > 0 && bytes <= p->total) {
		double eta = el * (double)(p->total - bytes) / (double)bytes;
		fprintf(stderr, ", %.0f%%, ETA %d:%02d", 100.0 * bytes / p->total,
			(int)eta / 60, (int)eta % 60);
	}
	p->drawn = 1;
}

void progress_done(progress *p)
{
	if (!p)
		return;
	if (p->drawn)
		fputs("\r\033[K", stderr);
	free(p);
}
