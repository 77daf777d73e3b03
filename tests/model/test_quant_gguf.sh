#!/usr/bin/env bash
# Writes the random-block GGUF with the gguf package and checks hinge's
# decoders against its dequantisation (test_quant_gguf.c). Skipped (77) when
# the gguf package is not installed (scripts/setup installs it).
#   test_quant_gguf.sh TEST_BINARY SOURCE_DIR
set -euo pipefail
bin=$1 src=$2
"$src/scripts/gguf-python" --installed || { echo "gguf package not installed: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$src/scripts/gguf-python" "$src/tests/model/make_quant_gguf.py" "$tmp/quant.gguf"
"$bin" "$tmp/quant.gguf"
