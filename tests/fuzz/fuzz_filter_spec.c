/* fuzz_filter_spec.c: filter chain specs ("clean,capfilter:min_words=3")
 * as `mvl filter` and recipes give them: names, options, values. */
#include <stdlib.h>

#include "filter.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *spec = fuzz_cstr(data, size);
	mvl_err err;
	filter_chain *c = filter_chain_parse(spec, &err);
	if (c)
		filter_chain_free(c);
	free(spec);
	return 0;
}
