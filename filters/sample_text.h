/* sample_text.h: what several filters read from and write to a sample. */
#ifndef MVL_SAMPLE_TEXT_H
#define MVL_SAMPLE_TEXT_H

#include <jansson.h>
#include <stddef.h>

#include "sample.h"
#include "util.h"

/* sample_caption() : the text a sample is judged by: KEY.txt, else the
 * "value"s of KEY.json's "conversations" joined by spaces (into scratch).
 * NULL when neither exists; *bad_json (may be NULL) is set when KEY.json
 * mentions conversations but does not parse. */
const char *sample_caption(const sample *s, buf *scratch, size_t *n, int *bad_json);

/* sample_json_set() : sets KEY.json's key to v (stolen), creating KEY.json
 * when absent; a KEY.json that is not an object is left alone. */
void sample_json_set(sample *s, const char *key, json_t *v);

#endif
