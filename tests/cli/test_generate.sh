#!/usr/bin/env bash
# End-to-end tests of the `hinge` command line.
#   test_generate.sh HINGE_BINARY SHARED_DIR SOURCE_DIR
set -uo pipefail
hinge=$1 shared=$2 src=$3
stories="$shared/models/stories260K.gguf"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0

check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok - $name"; else fail=$((fail + 1)); echo "not ok - $name"; fi
}

# stories260K, temperature 0, BOS alone, 200 positions: the oracle text,
# byte for byte, and nothing else on stdout.
"$hinge" generate --model "$stories" --prompt "" -n 200 --temp 0 >"$tmp/out" 2>"$tmp/err"
check "greedy stories260K equals the oracle" cmp "$tmp/out" "$shared/oracles/stories260K-greedy-200.txt"
check "1 thread gives the same text" bash -c "'$hinge' generate --model '$stories' --prompt '' -n 200 --temp 0 --threads 1 2>/dev/null | cmp - '$shared/oracles/stories260K-greedy-200.txt'"

# --json: one object with the documented fields.
"$hinge" generate --model "$stories" --prompt "Once upon a time" -n 20 --temp 0.8 --seed 7 --json >"$tmp/j" 2>/dev/null
check "--json prints one summary object" python3 -c "
import json,sys; d=json.load(open('$tmp/j'))
for k in ('prompt_tokens','generated_tokens','text','load_ms','prefill_tokens_per_s','decode_tokens_per_s'): assert k in d, k
assert d['generated_tokens']==20 and d['prompt_tokens']==5, d"

# seeded sampling is reproducible
a=$("$hinge" generate --model "$stories" --prompt "Lily" -n 30 --temp 1 --seed 3 2>/dev/null)
b=$("$hinge" generate --model "$stories" --prompt "Lily" -n 30 --temp 1 --seed 3 2>/dev/null)
c=$("$hinge" generate --model "$stories" --prompt "Lily" -n 30 --temp 1 --seed 4 2>/dev/null)
check "same seed, same text" test "$a" = "$b"
check "other seed, other text" test "$a" != "$c"

# perplexity over the fixed passage
"$hinge" perplexity --model "$stories" --file "$src/tests/data/passage.txt" --json >"$tmp/p" 2>/dev/null
check "perplexity reports a finite value" python3 -c "
import json,math; d=json.load(open('$tmp/p')); assert d['tokens']>100 and 1<d['perplexity']<1e4 and math.isfinite(d['perplexity']), d"

# bad input: clear errors, non-zero exit, nothing on stdout
"$hinge" generate --model "$tmp/missing.gguf" --prompt x >"$tmp/o1" 2>"$tmp/e1"
check "missing model is an error" test $? -ne 0 -a ! -s "$tmp/o1"
check "missing model names the file" grep -q "missing.gguf" "$tmp/e1"
head -c 1000 "$stories" >"$tmp/trunc.gguf"
"$hinge" generate --model "$tmp/trunc.gguf" --prompt x >"$tmp/o2" 2>"$tmp/e2"
check "truncated model is an error" test $? -ne 0 -a ! -s "$tmp/o2" -a -s "$tmp/e2"
"$hinge" generate --model "$stories" --prompt x -n abc >/dev/null 2>"$tmp/e3"
check "bad -n is a usage error" test $? -eq 2
"$hinge" generate --model "$stories" --prompt x --top-p 2 >/dev/null 2>&1
check "bad --top-p is a usage error" test $? -eq 2
"$hinge" generate --model "$stories" --prompt x -n 10 --ctx 4 >/dev/null 2>&1
check "context too small is an error" test $? -ne 0
"$hinge" frobnicate >/dev/null 2>&1
check "unknown command is a usage error" test $? -eq 2
"$hinge" generate --model "$stories" --prompt x --edge https://127.0.0.1:1 >/dev/null 2>"$tmp/e4"
check "--edge without --cut is a usage error" test $? -eq 2

# --version, and each command's own --help
check "--version names the library's version" bash -c "'$hinge' --version | grep -qx 'hinge [0-9]*\.[0-9]*\.[0-9]*'"
for cmd in generate perplexity profile partition; do
  "$hinge" $cmd --help >"$tmp/help" 2>/dev/null
  check "hinge $cmd --help: exit 0, its own usage" bash -c "test \$? -eq 0 && grep -q 'usage: hinge $cmd' '$tmp/help'"
done
check "generate --help lists --edge and --cut" bash -c "'$hinge' generate --help | grep -q -- '--edge URL' && '$hinge' generate --help | grep -q -- '--cut K|auto'"
check "perplexity does not take generate's options" bash -c "! '$hinge' perplexity --file x --edge y >/dev/null 2>&1"

# hinge bench-device runs the tool hinge-bench-device (built with Vulkan)
if [ -x "$(dirname "$hinge")/../tools/hinge-bench-device" ]; then
  check "hinge bench-device runs hinge-bench-device" bash -c "'$hinge' bench-device --help | grep -q 'usage: hinge-bench-device'"
fi

# the stop reason is in --json
"$hinge" generate --model "$stories" --prompt "" -n 5 --temp 0 --json >"$tmp/j2" 2>/dev/null
check "--json says why the generation stopped" python3 -c "
import json; d=json.load(open('$tmp/j2')); assert d['stop']=='length' and d['generated_tokens']==5, d"

# --chat: stories260K has no chat template (an error naming the overrides);
# --system without --chat is a usage error; SmolLM2 (when fetched) answers
# in its ChatML template and stops at its end of turn.
"$hinge" generate --model "$stories" --chat --prompt "Hi" -n 4 >/dev/null 2>"$tmp/e3"
check "--chat without a template is an error" test $? -eq 1
check "--chat without a template names the overrides" grep -q "chatml, llama3, gemma, phi3" "$tmp/e3"
"$hinge" generate --model "$stories" --system "x" --prompt "Hi" -n 4 >/dev/null 2>&1
check "--system without --chat is a usage error" test $? -eq 2
if [ -n "${HINGE_SMOLLM2_MODEL:-}" ] && [ -r "$HINGE_SMOLLM2_MODEL" ]; then
  "$hinge" generate --model "$HINGE_SMOLLM2_MODEL" --chat --prompt "What is the capital of France?" -n 24 --temp 0 \
    --json >"$tmp/j3" 2>/dev/null
  check "--chat: SmolLM2 answers and stops at its end of turn" python3 -c "
import json; d=json.load(open('$tmp/j3')); assert 'Paris' in d['text'] and d['stop']=='eog', d"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
