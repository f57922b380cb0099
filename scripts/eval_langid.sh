#!/bin/sh
# eval_langid.sh: builds scripts/eval_langid.c twice (CLD2 with its default
# tables, as langid.c links it, and with the larger libcld2_full tables)
# and runs both on tests/data/lang.  Run from anywhere; needs
# libcld2-dev and libexttextcat-dev.  Usage: scripts/eval_langid.sh [-v]
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
CFLAGS="-std=c11 -D_GNU_SOURCE -O2 -Ipipeline -Ifilters $(pkg-config --cflags libexttextcat)"
g++ -O2 -Ipipeline -Ifilters -c filters/langid_cld2.cc -o "$tmp/lc.o"
# shellcheck disable=SC2086
gcc $CFLAGS scripts/eval_langid.c filters/langid.c pipeline/util.c \
	"$tmp/lc.o" -o "$tmp/eval" \
	$(pkg-config --libs libexttextcat) -lcld2 -lstdc++ -lm
# libcld2_full.so holds only tables; linked first, they replace the
# default ones inside libcld2.so
# shellcheck disable=SC2086
gcc $CFLAGS scripts/eval_langid.c filters/langid.c pipeline/util.c \
	"$tmp/lc.o" -o "$tmp/eval_full" $(pkg-config --libs libexttextcat) \
	-Wl,--no-as-needed -lcld2_full -Wl,--as-needed -lcld2 -lstdc++ -lm
echo "== CLD2 default tables (what langid.c uses)"
"$tmp/eval" "$@" tests/data/lang
echo
echo "== CLD2 full tables (libcld2_full)"
"$tmp/eval_full" "$@" tests/data/lang
