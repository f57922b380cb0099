/* fuzz_recipe.c: recipe YAML (libyaml) through recipe_load's schema
 * checks, with every diagnostic it collects. */
#include "fuzz.h"
#include "recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	buf diag = {0};
	mvl_err err;
	recipe *r = recipe_load(fuzz_file(".yaml", data, size), &diag, &err);
	recipe_free(r);
	buf_free(&diag);
	return 0;
}
