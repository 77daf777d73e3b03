#!/usr/bin/env bash
# Several models on one hinge-edge under --model-memory, on 127.0.0.1 (h2c):
# stories260K (the default, always loaded), SmolLM2-135M and Gemma 3 270M,
# with a budget that holds the default and one of the other two:
#   - /v1/models lists all three (file name, sha256), only the default loaded;
#   - SmolLM2 named by a thin client loads on first use; its greedy text
#     equals hinge generate's local one;
#   - a split session naming Gemma by sha256 (hinge generate --edge, cut 9)
#     loads it, evicting SmolLM2, and equals the local greedy text;
#   - while a Gemma session is open (pinned), SmolLM2 does not fit: 503 with
#     Retry-After; once it is closed, SmolLM2 loads again, evicting Gemma;
#   - an unknown sha256 is 422 naming the served models;
#   - the default model's and SmolLM2's requests at once, all exact;
#   - the default model's sessions run through it all.
# Prints the load and switch times it saw. Skipped (77) when SmolLM2 or
# Gemma is not fetched (scripts/fetch-model [smollm2]).
#   test_models.sh HINGE_EDGE HINGE SHARED_DIR
set -uo pipefail
edge=$1 hinge=$2 shared=$3
cache=${HINGE_CACHE:-$HOME/.cache/hinge}/models
stories="$shared/models/stories260K.gguf"
smol=${HINGE_SMOLLM2_MODEL:-$cache/SmolLM2-135M-Instruct.Q4_1.gguf}
gemma=${HINGE_GEMMA_MODEL:-$cache/gemma-3-270m-q4_k_m.gguf}
for f in "$smol" "$gemma"; do
  [ -f "$f" ] || { echo "skip: $f not fetched (scripts/fetch-model [smollm2])"; exit 77; }
done
tmp=$(mktemp -d /tmp/hinge-models-test-XXXXXX)
pass=0 fail=0 pid=""
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok - $name"; else fail=$((fail + 1)); echo "not ok - $name"; fi
}

# The budget: the default (~1.4 MiB) and Gemma (~255 MiB with its batch buffers), not Gemma and SmolLM2.
"$edge" --model "$stories" --model "$smol" --model "$gemma" --model-memory 300M --listen 127.0.0.1:0 \
  --insecure-h2c --no-measure --threads 2 >"$tmp/edge.out" 2>"$tmp/edge.err" &
pid=$!
port=""
for _ in $(seq 300); do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/edge.out")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "edge did not start"; cat "$tmp/edge.err"; exit 1; }
url=http://127.0.0.1:$port
c() { curl -s --max-time 120 --http2-prior-knowledge "$@"; }
metric() { c "$url/metrics" | sed -n "s/^$1 //p"; }
complete() { # MODEL PROMPT N: the answer's body into $tmp/r.json, the status and seconds on stdout
  c -o "$tmp/r.json" -w '%{http_code} %{time_total}' "$url/v1/completions" \
    -d "{\"model\": \"$1\", \"prompt\": \"$2\", \"max_tokens\": $3, \"temperature\": 0}"
}
text() { python3 -c "import json; print(json.load(open('$tmp/r.json'))['choices'][0]['text'], end='')"; }
loaded() { c "$url/metrics" | sed -n "s/^hinge_edge_model_loaded{model=\"$1\"} //p"; }

c "$url/v1/models" >"$tmp/models.json"
check "/v1/models: the three files with their sha256, only the default loaded" python3 -c "
import json, subprocess, sys
d = json.load(open('$tmp/models.json'))['data']
want = [(p.split('/')[-1], subprocess.run(['sha256sum', p], capture_output=True, text=True).stdout.split()[0])
        for p in ('$stories', '$smol', '$gemma')]
ok = [(m['id'], m['sha256']) for m in d] == want and [m['loaded'] for m in d] == [True, False, False]
sys.exit(0 if ok else 1)"

smol_want=$("$hinge" generate --model "$smol" --prompt "Once upon a time" -n 32 --temp 0 --threads 2 2>/dev/null)
read -r code t_first < <(complete SmolLM2-135M-Instruct.Q4_1 "Once upon a time" 32)
check "SmolLM2 loads on first use; greedy equals hinge generate locally" \
  test "$code $(text)" = "200 $smol_want"
read -r code t_again < <(complete SmolLM2-135M-Instruct.Q4_1 "Once upon a time" 32)
check "SmolLM2 again, loaded: the same" test "$code $(text)" = "200 $smol_want"
check "two models loaded" test "$(metric hinge_edge_models_loaded)" = 2

# Two models at once: batches hold one model's steps each, every text exact.
printf '%s' "$smol_want" >"$tmp/smol-want.txt"
mix=()
for i in 0 1 2 3 4 5; do
  m=stories260K p="" n=200
  [ $((i % 3)) = 0 ] && m=SmolLM2-135M-Instruct.Q4_1 p="Once upon a time" n=32
  c -o "$tmp/mix-$i.json" "$url/v1/completions" \
    -d "{\"model\": \"$m\", \"prompt\": \"$p\", \"max_tokens\": $n, \"temperature\": 0}" &
  mix+=($!)
done
for p in "${mix[@]}"; do wait "$p"; done
check "stories260K and SmolLM2 concurrently: all six exact" python3 -c "
import json, sys
want = [open('$tmp/smol-want.txt').read(), open('$shared/oracles/stories260K-greedy-200.txt').read()]
got = [json.load(open('$tmp/mix-%d.json' % i))['choices'][0]['text'] for i in range(6)]
sys.exit(0 if all(g == want[0 if i % 3 == 0 else 1] for i, g in enumerate(got)) else 1)"

prompt="The capital of France is"
"$hinge" generate --model "$gemma" --prompt "$prompt" -n 6 --temp 0 --threads 2 >"$tmp/gemma-local.txt" 2>/dev/null
s0=$(date +%s.%N)
"$hinge" generate --model "$gemma" --edge "$url" --cut 9 --wire f32 --prompt "$prompt" -n 6 --temp 0 --threads 2 \
  --no-local-fallback >"$tmp/gemma-split.txt" 2>"$tmp/gemma-split.err"
s1=$(date +%s.%N)
check "a split session names Gemma by sha256: loaded, equal to the local text" \
  cmp "$tmp/gemma-split.txt" "$tmp/gemma-local.txt"
check "Gemma's load evicted SmolLM2 (budget 300M)" \
  test "$(loaded gemma-3-270m-q4_k_m.gguf) $(loaded SmolLM2-135M-Instruct.Q4_1.gguf) $(metric hinge_edge_model_evictions_total)" = "1 0 1"

# A Gemma session left open pins it.
gsha=$(sha256sum "$gemma" | cut -d' ' -f1)
c "$url/v1/sessions" -d "{\"model_sha256\": \"$gsha\", \"cut\": 9, \"codec\": \"f32\", \"ctx\": 16}" >"$tmp/s.json"
sid=$(python3 -c "import json; print(json.load(open('$tmp/s.json'))['id'])")
c -D "$tmp/h.txt" -o "$tmp/r.json" "$url/v1/completions" \
  -d '{"model": "SmolLM2-135M-Instruct.Q4_1.gguf", "prompt": "Hi", "max_tokens": 2}'
check "while a Gemma session is open, SmolLM2 does not fit: 503 model_memory_full, Retry-After" \
  grep -q '"model_memory_full"' "$tmp/r.json"
check "... with Retry-After" grep -qi '^retry-after:' "$tmp/h.txt"
check "the default model still serves" test "$(complete stories260K "" 200 | cut -d' ' -f1) $(text)" = \
  "200 $(cat "$shared/oracles/stories260K-greedy-200.txt")"
c -X DELETE "$url/v1/sessions/$sid"
read -r code t_switch < <(complete SmolLM2-135M-Instruct.Q4_1 "Once upon a time" 32)
check "the Gemma session closed: SmolLM2 loads again (Gemma evicted), the same text" \
  test "$code $(text) $(metric hinge_edge_model_evictions_total)" = "200 $smol_want 2"

bad=$(printf '%064d' 0)
c -o "$tmp/r.json" -w '%{http_code}' "$url/v1/sessions" \
  -d "{\"model_sha256\": \"$bad\", \"cut\": 1, \"codec\": \"f32\", \"ctx\": 16}" >"$tmp/code"
check "an unknown sha256: 422 naming the served models" \
  python3 -c "import json, sys; d = json.load(open('$tmp/r.json')); sys.exit(0 if open('$tmp/code').read() == '422' and 'gemma-3-270m' in d['detail'] else 1)"
check "no session left open" test "$(metric hinge_edge_sessions)" = 0

loads=$(metric hinge_edge_model_load_seconds_count) sum=$(metric hinge_edge_model_load_seconds_sum)
echo "# loads $loads, $sum s in all (default included); SmolLM2 32 tokens: ${t_first} s with its load, ${t_again} s loaded, ${t_switch} s switching back from Gemma; Gemma split 6 tokens with its load: $(python3 -c "print('%.3f' % ($s1 - $s0))") s"
grep -o 'model [^ ]* loaded in [0-9.]* s' "$tmp/edge.err" | sed 's/^/# /'
kill -TERM "$pid"
wait "$pid"
check "the edge exits 0 on SIGTERM (models unloaded)" test $? = 0
pid=""
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
