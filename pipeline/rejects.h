/* rejects.h: reject accounting, so that no sample is ever lost silently.
 *
 * Every sample a command reads is either written or rejected with a reason
 * (a short snake_case word, counted) and a detail (free text).  Counts per
 * reason are printed to stderr at the end; with --rejects FILE every
 * rejected sample is also listed as TSV with the header
 *     key  source  reason  detail
 * (tabs, newlines and backslashes inside fields escaped as \t \n \\),
 * written to a temporary name and renamed when the run completes.
 */
#ifndef MVL_REJECTS_H
#define MVL_REJECTS_H

#include <stdint.h>
#include <stdio.h>

#include "util.h"

/* What a stage says about a sample it drops. */
typedef struct reject_info {
	char reason[64];
	char detail[400];
} reject_info;

/* reject_set() : fills *rj; @return 1 (handy as "rejected" result). */
int reject_set(reject_info *rj, const char *reason, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* reject_from_err() : splits "reason: detail" messages (as img_decode
 * makes them) into *rj; messages without a reason word get `fallback`. */
int reject_from_err(reject_info *rj, const char *fallback, const char *msg);

typedef struct rejects rejects;

/* rejects_open() : path may be NULL (counts only).  @return NULL + *err. */
rejects *rejects_open(const char *path, mvl_err *err);
void rejects_add(rejects *r, const char *key, const char *source,
		 const reject_info *rj);
uint64_t rejects_total(const rejects *r);
/* rejects_count() : how many were rejected for reason (0 if never). */
uint64_t rejects_count(const rejects *r, const char *reason);

/* rejects_reasons() : how many reasons were counted; rejects_reason()
 * the i-th (0 <= i < rejects_reasons) and its count in *n. */
int rejects_reasons(const rejects *r);
const char *rejects_reason(const rejects *r, int i, uint64_t *n);
/* rejects_add_count() : counts n rejections for reason without listing
 * them (totals merged from elsewhere: the other ranks of a split run). */
void rejects_add_count(rejects *r, const char *reason, uint64_t n);

/* rejects_summary() : "N in, N kept, N rejected (reason N, ...)" on f,
 * prefixed "mvl CMD: ". */
void rejects_summary(const rejects *r, const char *cmd, uint64_t in,
		     uint64_t kept, FILE *f);
/* rejects_close() : commits the TSV file (when complete is 1) or removes
 * it, frees r.  @return 0 or -1 with *err. */
int rejects_close(rejects *r, int complete, mvl_err *err);

#endif
