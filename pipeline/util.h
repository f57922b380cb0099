/* util.h: the few helpers every mvl module shares.
 *
 * Errors travel as an mvl_err filled by the function that failed and
 * returned up to the command main, which prints it (and only there dies).
 * Messages start lower-case, name the thing in quotes, end without a stop:
 *     cannot open 'shard-000003.tar': No such file or directory
 */
#ifndef MVL_UTIL_H
#define MVL_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MVL_VERSION "0.1.0"

typedef struct mvl_err {
	char msg[1024];
} mvl_err;

/* mvl_errf() : formats a message into *err (when err is not NULL).
 * @return -1, so callers can write `return mvl_errf(err, ...);` */
int mvl_errf(mvl_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* mvl_errprefix() : prepends "PREFIX: " to the message already in *err
 * (adds context on the way up).  @return -1 */
int mvl_errprefix(mvl_err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* die() : prints "mvl: MESSAGE" to stderr and exits with status 1.
 * For command mains only; library code returns errors. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* warnx_() : prints "mvl: MESSAGE" to stderr and carries on. */
void mvl_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Allocation that cannot fail: out of memory is not a recoverable state for
 * a stream filter, so these die with a message instead of returning NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* A growable byte buffer. */
typedef struct buf {
	unsigned char *data;
	size_t len, cap;
} buf;
void buf_reserve(buf *b, size_t need);   /* ensures cap >= len + need */
void buf_append(buf *b, const void *p, size_t n);
void buf_printf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_free(buf *b);

/* now_sec() : monotonic clock in seconds. */
double now_sec(void);

/* parse_size() : "123", "64k", "1.5M", "2GB", "1GiB" -> bytes (powers of
 * 1000 for k/M/G/T, of 1024 for Ki/Mi/Gi/Ti).  @return 0 or -1. */
int parse_size(const char *s, uint64_t *out);

/* fmt_bytes() : human readable size into out ("12.3 MB"). */
const char *fmt_bytes(double n, char out[32]);

/* utf8_valid() : 1 when s[0..n) is well-formed UTF-8 (no overlongs,
 * no surrogates, nothing above U+10FFFF). */
int utf8_valid(const unsigned char *s, size_t n);
/* utf8_count() : code points in s[0..n) (invalid bytes count one each). */
size_t utf8_count(const unsigned char *s, size_t n);
/* utf8_repair() : copies s to out replacing each maximal invalid
 * subsequence with U+FFFD (as the Unicode standard recommends).
 * @return the number of replacements. */
size_t utf8_repair(const unsigned char *s, size_t n, buf *out);

/* tsv_put() : writes s as one TSV field: tab, newline, carriage return
 * and backslash escaped as \t \n \r \\ (a key from a tar member name can
 * hold any of them; a listing keeps one line per record). */
void tsv_put(FILE *f, const char *s);
/* tsv_unescape() : undoes tsv_put() in place. */
void tsv_unescape(char *s);

/* Write a whole file through a temporary name renamed when complete, so a
 * killed run never leaves a file that looks whole.
 * atomic_file_open() returns a FILE* writing to "PATH.tmp.PID" (and removes
 * the "PATH.tmp.PID" a killed writer left, see remove_stale_tmp()); commit
 * flushes, fsyncs, closes and renames; abort closes and removes. */
typedef struct atomic_file {
	FILE *f;
	char *path, *tmp;
} atomic_file;
int atomic_file_open(atomic_file *af, const char *path, mvl_err *err);
int atomic_file_commit(atomic_file *af, mvl_err *err);
void atomic_file_abort(atomic_file *af);

/* writer_gone() : 1 when no process pid runs on this machine (a zombie, a
 * killed child its parent has not reaped yet, counts as gone). */
int writer_gone(long pid);

/* remove_stale_tmp() : removes the files "NAME.tmp.PID" in dir whose
 * writer no longer runs (no process PID on this machine), for each NAME
 * that keep(NAME, its length, ctx) accepts: what a killed run left beside
 * its outputs goes when they are written again, instead of piling up
 * across reruns.  A live writer's temporary is never touched. */
void remove_stale_tmp(const char *dir, int (*keep)(const char *name, size_t len, void *ctx), void *ctx);

/* remove_tree() : rm -r path (no error when it does not exist; checkpoint
 * and run directories, never followed through symlinks). */
void remove_tree(const char *path);

/* write_all() : writes n bytes to fd, retrying on EINTR/short writes.
 * @return 0 or -1 with errno set. */
int write_all(int fd, const void *p, size_t n);

/* read_file() : reads a whole (small) file; refuses files above max bytes.
 * @return 0 or -1 with *err filled. */
int read_file(const char *path, size_t max, buf *out, mvl_err *err);

#endif
