/* progress.h: a one-line progress display on stderr.
 *
 * Shown only when stderr is a terminal and not quieted; redrawn at most
 * four times a second, so calling progress_update() per sample is cheap.
 * Shows samples, MB read, rate and, when the input size is known, ETA. */
#ifndef MVL_PROGRESS_H
#define MVL_PROGRESS_H

#include <stdint.h>

typedef struct progress progress;

progress *progress_new(const char *cmd, int quiet, uint64_t total_bytes);
void progress_update(progress *p, uint64_t samples, uint64_t bytes);
void progress_done(progress *p); /* clears the line, frees p */

#endif
