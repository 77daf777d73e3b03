#!/usr/bin/env bash
# llama, llama3 (GQA, rope_freqs), qwen2 (q/k/v biases), qwen3 (q/k norms)
# and phi3 (fused q/k/v and gate/up): a tiny random-weight GGUF of each (scripts/make-synthetic), hinge's
# logits for 12 tokens (dump_logits: 6 as a prefill, then one at a time)
# against ref_forward.py's numpy forward pass. Skipped (77) without the gguf
# package (scripts/setup installs it).
#   test_synthetic_arch.sh DUMP_LOGITS SOURCE_DIR
set -uo pipefail
bin=$1 src=$2
"$src/scripts/gguf-python" --installed || { echo "gguf package not installed: skipped"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tokens="1 17 200 45 299 3 88 150 260 9 120 271"
fail=0
for arch in llama llama3 qwen2 qwen3 phi3; do
  if "$src/scripts/make-synthetic" "$arch" "$tmp/$arch.gguf" 7 && "$bin" "$tmp/$arch.gguf" "$tmp/$arch.f32" $tokens &&
     "$src/scripts/gguf-python" "$src/tests/model/ref_forward.py" "$tmp/$arch.gguf" "$tmp/$arch.f32" $tokens; then
    echo "ok - $arch"
  else
    echo "not ok - $arch"
    fail=1
  fi
done
exit $fail
