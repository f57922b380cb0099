#!/bin/sh
# have_libfuzzer.sh: exits 0 when clang can link a libFuzzer target with
# ASan and UBSan (clang alone is not enough: libFuzzer's runtime is its own
# package), so `make fuzz` knows whether scripts/deps.sh --fuzz must run.
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
	'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return d && n; }' > "$tmp/t.c"
clang -fsanitize=fuzzer,address,undefined -fopenmp "$tmp/t.c" -o "$tmp/t" 2>/dev/null
