#!/usr/bin/env bash
# A tiny random-weight llama whose matrices are q5_1, q5_k, q3_k, q2_k and
# iq4_nl (the types the Vulkan kernels read in sub-layouts) and whose
# embedding is q3_k (tests/device/make_vk_quant_model.py): greedy text with
# all layers on the Vulkan backend equals the CPU engine's, in the default
# kernel variant and in each variant tests/device/meson.build forces
# (HINGE_VK_FORCE). The prompt's 6 tokens go through prefill (matmul), the
# rest through decode (matvec, the fused q|k|v kernel). Skipped (77)
# without the gguf package or a Vulkan device.
#   test_vk_quant_model.sh HINGE_BINARY SOURCE_DIR
set -uo pipefail
hinge=$1 src=$2
"$src/scripts/gguf-python" --installed || { echo "skip: gguf package not installed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$src/scripts/gguf-python" "$src/tests/device/make_vk_quant_model.py" "$tmp/m.gguf" || exit 1
gen() { "$hinge" generate --model "$tmp/m.gguf" --prompt "Hi" -n 10 --temp 0 --ignore-eos --threads 2 "$@"; }

gen --backend cpu >"$tmp/cpu" 2>"$tmp/cpu.err" || { cat "$tmp/cpu.err"; exit 1; }
[ -s "$tmp/cpu" ] || { echo "not ok - empty cpu text"; exit 1; }
if ! gen --backend vulkan >"$tmp/vk" 2>"$tmp/vk.err"; then
  if grep -qi "no vulkan device\|no device\|VK_ERROR_INCOMPATIBLE_DRIVER" "$tmp/vk.err"; then
    echo "skip: no Vulkan device"; cat "$tmp/vk.err"; exit 77
  fi
  cat "$tmp/vk.err"; exit 1
fi
fail=0
check() { # name file
  if cmp -s "$tmp/cpu" "$2"; then echo "ok - $1 equals cpu"; else
    echo "not ok - $1 differs from cpu:"; od -c "$tmp/cpu" | head -3; od -c "$2" | head -3; fail=1
  fi
}
check default "$tmp/vk"
# (the forced variants of tests/device/meson.build's test_vk_exec_*)
for force in matvec=subgroup matvec=subgroup,subgroup=128 matvec=shared,subgroup=0 matvec=rows,subgroup=0 \
             fuse=0 shared=8192,batch=8; do
  if HINGE_VK_FORCE=$force gen --backend vulkan >"$tmp/vkf" 2>"$tmp/vkf.err"; then
    check "HINGE_VK_FORCE=$force" "$tmp/vkf"
  else
    echo "not ok - HINGE_VK_FORCE=$force failed:"; cat "$tmp/vkf.err"; fail=1
  fi
done
exit $fail
