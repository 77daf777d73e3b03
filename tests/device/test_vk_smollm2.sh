#!/usr/bin/env bash
# SmolLM2-135M-Instruct Q4_1 (q4_1 and q8_0 weights) on the Vulkan backend:
# greedy text with the first 6 layers on the device, and with all of them,
# equals the CPU engine's. Skipped (77) without the model
# (HINGE_SMOLLM2_MODEL) or without a Vulkan device.
#   test_vk_smollm2.sh HINGE_BINARY
set -uo pipefail
hinge=$1
model=${HINGE_SMOLLM2_MODEL:-}
if [ -z "$model" ] || [ ! -r "$model" ]; then
  echo "skip: HINGE_SMOLLM2_MODEL unset or not readable"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gen() { "$hinge" generate --model "$model" --prompt "The capital of France is" -n 16 --temp 0 --ignore-eos "$@"; }

gen --backend cpu >"$tmp/cpu" 2>"$tmp/cpu.err" || { cat "$tmp/cpu.err"; exit 1; }
if ! gen --backend vulkan --layers 6 >"$tmp/vk6" 2>"$tmp/vk6.err"; then
  if grep -qi "no vulkan driver\|no vulkan device\|VK_ERROR_INCOMPATIBLE_DRIVER" "$tmp/vk6.err"; then
    echo "skip: no Vulkan device"; cat "$tmp/vk6.err"; exit 77
  fi
  cat "$tmp/vk6.err"; exit 1
fi
gen --backend vulkan >"$tmp/vk" 2>"$tmp/vk.err" || { cat "$tmp/vk.err"; exit 1; }
fail=0
for f in vk6 vk; do
  if cmp -s "$tmp/cpu" "$tmp/$f"; then echo "ok - $f equals cpu"; else
    echo "not ok - $f differs from cpu:"; echo "cpu: $(cat "$tmp/cpu")"; echo "$f: $(cat "$tmp/$f")"; fail=1
  fi
done
[ -s "$tmp/cpu" ] || { echo "not ok - empty cpu text"; fail=1; }
exit $fail
