#!/bin/sh
# test_tok_exact.sh: mvl's ids against tiktoken's on the full generated
# corpus (every category, Unicode 15/16 letters and digits in the contexts
# where their class changes the ids), three encodings, lines and documents.
exec sh "$(dirname "$0")/../../scripts/tok/exactness.sh" -m "$MVL"
