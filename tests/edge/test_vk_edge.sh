#!/usr/bin/env bash
# hinge-edge --backend vulkan against --backend cpu, both real processes on
# 127.0.0.1 (h2c):
#   - stories260K, every cut 0..5, f32 wire: greedy from BOS for 200
#     positions through the Vulkan edge equals the CPU edge's text and the
#     oracle, byte for byte;
#   - the six cuts as concurrent sessions (their steps batched on the
#     device) give the same texts;
#   - seeded sampling with the prompt in chunks of 3 positions (NO_SAMPLE
#     steps: the head skipped on the device) equals the CPU edge's text;
#   - a private head (--private-head J: the edge runs [cut, N - J) and
#     sends rows back) at (k, J) in {(1,1), (2,2), (0,3), (2,3): no layer on
#     the edge}: the Vulkan edge's text equals the CPU edge's and the oracle;
#   - speculative decoding (hinge generate --speculate: verify steps, every
#     row's logits from the device's batch head): greedy from BOS the
#     oracle and the CPU edge's text, with more than one token per round
#     trip; greedy with a prompt at another cut the CPU edge's text and
#     the Vulkan edge's without --speculate (sampled speculation is left
#     out: its text varies from run to run on the CPU edge too);
#   - a speculative, a private-head and a plain session at once (verify
#     rows, rows out and logits in the same device batches): each the text
#     it gives alone;
#   - the device KV cache counts against --kv-budget: a session that does
#     not fit is refused 503 with Retry-After; the device weights and batch
#     buffers count with the model's memory under --model-memory (the
#     default model's at start-up, another's with a 503 model_memory_full
#     when they do not fit); a wrong head or batch head kernel fails the
#     start-up self-test;
#   - a thin client's /v1/completions (cut 0) gives the CPU edge's text;
#     a bad --backend is a usage error (exit 2);
#   - /metrics names the backend and the device; /v1/profile's costs were
#     timed on the backend's device;
#   - Gemma 3 270M (HINGE_GEMMA_MODEL, skipped when absent) at cut 6: 24
#     greedy tokens of a prompt equal the CPU edge's, with a private head
#     of 4 layers too (run beside a speculative session); --speculate at
#     cut 3: the CPU edge's text.
# Exits 77 (skipped) where there is no Vulkan device.
#   test_vk_edge.sh HINGE_EDGE SPLIT_GENERATE HINGE SHARED_DIR
set -uo pipefail
edge=$1 gen=$2 hinge=$3 shared=$4
source "$(dirname "$0")/../cli/lib.sh"
stories="$shared/models/stories260K.gguf"
oracle="$shared/oracles/stories260K-greedy-200.txt"
sha=$(sha256sum "$stories" | cut -d' ' -f1)

if ! start vk "$edge" --model "$stories" --listen 127.0.0.1:0 --insecure-h2c --threads 1 --backend vulkan; then
  if grep -q "no usable Vulkan device\|built without Vulkan" "$tmp/vk.err"; then
    echo "skipped: no Vulkan device"; exit 77
  fi
  echo "the Vulkan edge did not start"; exit 1
fi
vk="http://127.0.0.1:$port"
start cpu "$edge" --model "$stories" --listen 127.0.0.1:0 --insecure-h2c --threads 1 --backend cpu || exit 1
cpu="http://127.0.0.1:$port"
check "the Vulkan edge logs its device and self-test" grep -q "backend vulkan: .*self-test passed" "$tmp/vk.err"

for k in 0 1 2 3 4 5; do
  for b in vk cpu; do
    url=$vk; [ $b = cpu ] && url=$cpu
    "$gen" --model "$stories" --edge "$url" --cut $k --wire f32 --prompt "" -n 200 >"$tmp/$b-$k.txt" 2>"$tmp/$b-$k.err"
  done
  check "k=$k: the Vulkan edge's 200 positions equal the CPU edge's" cmp "$tmp/vk-$k.txt" "$tmp/cpu-$k.txt"
  check "k=$k: ... and the oracle" cmp "$tmp/vk-$k.txt" "$oracle"
done

# every cut at once: the sessions' steps share device batches (mixed cuts,
# one submit), and each still gives the CPU edge's text
for k in 0 1 2 3 4 5; do
  "$gen" --model "$stories" --edge "$vk" --cut $k --wire f32 --prompt "" -n 200 >"$tmp/vkb-$k.txt" \
    2>"$tmp/vkb-$k.err" &
done
wait
for k in 0 1 2 3 4 5; do
  check "k=$k among six concurrent sessions: the CPU edge's text" cmp "$tmp/vkb-$k.txt" "$tmp/cpu-$k.txt"
done
check "... and they were batched (a step with more than one session)" bash -c \
  "curl -s --http2-prior-knowledge '$vk/metrics' | python3 -c '
import sys
v = {l.split()[0]: float(l.split()[1]) for l in sys.stdin if l.startswith(\"hinge_edge_batch_size_\")}
assert v[\"hinge_edge_batch_size_sum\"] > v[\"hinge_edge_batch_size_count\"], v'"

sampled=(--prompt "Once upon a time, Lily and Ben went to the park" -n 40 --temp 0.9 --top-k 40 --top-p 0.95 --seed 5
         --max-step 3 --cut 2)
"$gen" --model "$stories" --edge "$vk" "${sampled[@]}" >"$tmp/s-vk.txt" 2>"$tmp/s-vk.err"
"$gen" --model "$stories" --edge "$cpu" "${sampled[@]}" >"$tmp/s-cpu.txt" 2>"$tmp/s-cpu.err"
check "seeded sampling, prompt in chunks of 3: Vulkan edge = CPU edge" cmp "$tmp/s-vk.txt" "$tmp/s-cpu.txt"
check "... and it is text" test -s "$tmp/s-vk.txt"

c() { curl -s --http2-prior-knowledge --max-time 10 "$@"; }
# a thin client (cut 0: the edge embeds on the CPU, every layer on the device)
oa='{"model":"stories260K","prompt":"Once upon a time","max_tokens":30,"temperature":0}'
c -d "$oa" "$vk/v1/completions" >"$tmp/oa-vk.json"
c -d "$oa" "$cpu/v1/completions" >"$tmp/oa-cpu.json"
check "/v1/completions (thin client): the Vulkan edge's text equals the CPU edge's" python3 -c "
import json; a, b = (json.load(open('$tmp/oa-%s.json' % n))['choices'][0]['text'] for n in ('vk', 'cpu'))
assert a == b and len(a) > 20, (a, b)"
check "/metrics names the backend and the device" bash -c \
  "curl -s --http2-prior-knowledge '$vk/metrics' | grep -q '^hinge_edge_backend_info{backend=\"vulkan\",device=\".\+\"} 1$'"
check "/metrics of the CPU edge says cpu" bash -c \
  "curl -s --http2-prior-knowledge '$cpu/metrics' | grep -q '^hinge_edge_backend_info{backend=\"cpu\",device=\"cpu\"} 1$'"
# /v1/profile's costs are the backend's own: timed on the device at start-up
for b in vulkan cpu; do
  url=$vk; [ $b = cpu ] && url=$cpu
  check "/v1/profile of the $b edge: its layers and head timed on $b" bash -c \
    "curl -s --http2-prior-knowledge '$url/v1/profile' | python3 -c '
import json, sys
c = json.load(sys.stdin)[\"costs\"]
ok = c[\"backend\"] == \"$b\" and c[\"measured_at_start\"] and len(c[\"layer_decode_us\"]) == 5
sys.exit(0 if ok and all(x > 0 for x in c[\"layer_decode_us\"]) and c[\"head_decode_us\"] > 0 else 1)'"
done
for kj in "1 1" "2 2" "0 3" "2 3"; do
  set -- $kj
  for b in vk cpu; do
    url=$vk; [ $b = cpu ] && url=$cpu
    "$gen" --model "$stories" --edge "$url" --cut "$1" --private-head "$2" --wire f32 --prompt "" -n 200 \
      >"$tmp/ph-$b-$1-$2.txt" 2>"$tmp/ph-$b-$1-$2.err"
  done
  check "private head k=$1 J=$2: the Vulkan edge's text equals the CPU edge's" \
    cmp "$tmp/ph-vk-$1-$2.txt" "$tmp/ph-cpu-$1-$2.txt"
  check "... and the oracle" cmp "$tmp/ph-vk-$1-$2.txt" "$oracle"
done

for b in vk cpu; do
  url=$vk; [ $b = cpu ] && url=$cpu
  timeout 60 "$hinge" generate --model "$stories" --edge "$url" --cut 2 --prompt "" -n 200 --temp 0 --speculate \
    --json >"$tmp/spec-$b.json" 2>"$tmp/spec-$b.err"
  timeout 60 "$hinge" generate --model "$stories" --edge "$url" --cut 3 --prompt "Once upon a time, Lily" -n 60 \
    --temp 0 --speculate --json >"$tmp/spec-p-$b.json" 2>"$tmp/spec-p-$b.err"
done
timeout 60 "$hinge" generate --model "$stories" --edge "$vk" --cut 3 --prompt "Once upon a time, Lily" -n 60 \
  --temp 0 --json >"$tmp/plain-p-vk.json" 2>"$tmp/plain-p-vk.err"
check "--speculate (verify steps) greedy on the Vulkan edge: the oracle and the CPU edge's text, > 1 token a trip" \
  python3 -c "
import json; v, c = (json.load(open('$tmp/spec-%s.json' % n)) for n in ('vk', 'cpu'))
assert v['text'] == c['text'] == open('$oracle').read(), (v['text'], c['text'])
assert v['tokens_per_round_trip'] > 1.0, v"
check "--speculate with a prompt at cut 3: the CPU edge's text and the Vulkan edge's plain run's" python3 -c "
import json; v, c, p = (json.load(open('$tmp/%s.json' % n)) for n in ('spec-p-vk', 'spec-p-cpu', 'plain-p-vk'))
assert v['text'] == c['text'] == p['text'] and len(v['text']) > 20, (v['text'], c['text'], p['text'])"

# all three kinds at once on the Vulkan edge: verify rows, rows out and a
# plain session's logits in the same device batches
timeout 60 "$hinge" generate --model "$stories" --edge "$vk" --cut 2 --prompt "" -n 200 --temp 0 --speculate \
  --json >"$tmp/mix-spec.json" 2>"$tmp/mix-spec.err" &
"$gen" --model "$stories" --edge "$vk" --cut 1 --private-head 1 --wire f32 --prompt "" -n 200 \
  >"$tmp/mix-ph.txt" 2>"$tmp/mix-ph.err" &
"$gen" --model "$stories" --edge "$vk" --cut 4 --wire f32 --prompt "" -n 200 >"$tmp/mix-plain.txt" \
  2>"$tmp/mix-plain.err" &
wait
check "speculative, private-head and plain sessions at once: each its text alone" bash -c "
  cmp '$tmp/mix-ph.txt' '$oracle' && cmp '$tmp/mix-plain.txt' '$oracle' &&
  python3 -c \"import json; assert json.load(open('$tmp/mix-spec.json'))['text'] == open('$oracle').read()\""

# The device KV cache of one session at cut 1, ctx 256: 4 layers x 256
# positions x (32 + 32) floats = 256 KiB; a budget of 128 KiB refuses it.
start small "$edge" --model "$stories" --listen 127.0.0.1:0 --insecure-h2c --threads 1 --backend vulkan \
  --kv-budget 128K || exit 1
c -D "$tmp/kv.hdr" -o "$tmp/kv.json" -d "{\"model_sha256\":\"$sha\",\"cut\":1,\"codec\":\"f32\",\"ctx\":256}" \
  "http://127.0.0.1:$port/v1/sessions"
check "a session whose device KV cache is over --kv-budget: 503 with Retry-After" bash -c \
  "grep -q '^HTTP/2 503' '$tmp/kv.hdr' && grep -qi '^retry-after: 1' '$tmp/kv.hdr' &&
   grep -q 'kv_budget' '$tmp/kv.json'"
c -o /dev/null -D "$tmp/kv2.hdr" -d "{\"model_sha256\":\"$sha\",\"cut\":4,\"codec\":\"f32\",\"ctx\":256}" \
  "http://127.0.0.1:$port/v1/sessions"
check "... one that fits (cut 4: 64 KiB) opens" grep -q '^HTTP/2 201' "$tmp/kv2.hdr"

# The device half of a model (its weights and the batch executor's buffers)
# counts with the model's memory under --model-memory: the Vulkan edge holds
# more than the CPU edge (same options). The default model's is counted at
# start-up (before its host half): an edge whose budget is under it does not
# start, saying why. Another model's is counted when its first session opens:
# 503 model_memory_full when it does not fit, logged, and none of it (nor the
# session's KV cache) is kept. The second model: stories260K with 64 bytes
# appended (another sha256, the same weights and sizes).
metric() { c "$1/metrics" | sed -n "s/^$2 \([0-9.e+]*\)$/\1/p"; }
host=$(metric "$cpu" hinge_edge_model_memory_bytes) both=$(metric "$vk" hinge_edge_model_memory_bytes)
check "the Vulkan edge counts its device weights and batch buffers in the model's memory" \
  python3 -c "assert float('$both') > float('$host') > 0, ('$both', '$host')"
check "... and logs them" grep -q "device weights and batch buffers, [0-9.]* MiB" "$tmp/vk.err"
budget() { python3 -c "h, d = float('$host'), float('$both') - float('$host'); print(int($1))"; }
timeout 60 "$edge" --model "$stories" --listen 127.0.0.1:0 --insecure-h2c --threads 1 --backend vulkan \
  --model-memory "$(budget "d / 2")" >/dev/null 2>"$tmp/mm0.err"
check "the default model's device half over --model-memory: the edge does not start, saying why" bash -c \
  "test $? -eq 1 && grep -q 'device weights and batch buffers need .* of --model-memory' '$tmp/mm0.err'"
cp "$stories" "$tmp/stories-b.gguf" && head -c 64 /dev/zero >>"$tmp/stories-b.gguf"
sha_b=$(sha256sum "$tmp/stories-b.gguf" | cut -d' ' -f1)
start mm "$edge" --model "$stories" --model "$tmp/stories-b.gguf" --listen 127.0.0.1:0 --insecure-h2c --threads 1 \
  --backend vulkan --model-memory "$(budget "2 * h + 1.5 * d")" || exit 1
mm="http://127.0.0.1:$port"
c -D "$tmp/mm.hdr" -o "$tmp/mm.json" -d "{\"model_sha256\":\"$sha_b\",\"cut\":1,\"codec\":\"f32\",\"ctx\":64}" \
  "$mm/v1/sessions"
check "another model's device half over --model-memory: 503 model_memory_full" bash -c \
  "grep -q '^HTTP/2 503' '$tmp/mm.hdr' && grep -q 'model_memory_full' '$tmp/mm.json' &&
   grep -q 'device weights and batch buffers need' '$tmp/mm.json'"
check "... logged" grep -q "hinge-edge warn: model .*device weights and batch buffers need .* of --model-memory" \
  "$tmp/mm.err"
kvu=$(metric "$mm" hinge_edge_kv_bytes_used) held=$(metric "$mm" hinge_edge_model_memory_bytes)
check "... and none of it nor the session's KV cache is held (the two host halves and one device half are)" \
  python3 -c "assert float('$kvu') == 0 and float('$held') == float('$host') + float('$both'), ('$kvu', '$held')"
c -o /dev/null -D "$tmp/mm2.hdr" -d "{\"model_sha256\":\"$sha\",\"cut\":1,\"codec\":\"f32\",\"ctx\":64}" \
  "$mm/v1/sessions"
check "... while the default model's sessions open" grep -q '^HTTP/2 201' "$tmp/mm2.hdr"

# The start-up self-test covers the head's kernels: a head (one row) or a
# batch head (several) computed wrongly on purpose stops the edge, naming it.
for op in head batch_head; do
  HINGE_VK_SELFTEST_BREAK=$op timeout 60 "$edge" --model "$stories" --listen 127.0.0.1:0 --insecure-h2c \
    --threads 1 --backend vulkan >/dev/null 2>"$tmp/brk.err"
  check "a wrong $op kernel: the edge does not start, naming it" bash -c \
    "test $? -eq 1 && grep -q 'self-test: $op (layer 5, .*disagrees with the CPU' '$tmp/brk.err'"
done

"$edge" --model "$stories" --insecure-h2c --backend gpu >/dev/null 2>"$tmp/bad.err"
check "--backend gpu: exit 2 naming the choices" bash -c "test $? -eq 2 && grep -q 'not cpu or vulkan' '$tmp/bad.err'"

gemma=${HINGE_GEMMA_MODEL:-$HOME/.cache/hinge/models/gemma-3-270m-q4_k_m.gguf}
if [ -f "$gemma" ]; then
  start gvk "$edge" --model "$gemma" --listen 127.0.0.1:0 --insecure-h2c --backend vulkan --no-measure || exit 1
  gvk="http://127.0.0.1:$port"
  start gcpu "$edge" --model "$gemma" --listen 127.0.0.1:0 --insecure-h2c --backend cpu --no-measure || exit 1
  gcpu="http://127.0.0.1:$port"
  for b in gvk gcpu; do
    url=$gvk; [ $b = gcpu ] && url=$gcpu
    "$gen" --model "$gemma" --edge "$url" --cut 6 --wire f32 --prompt "The capital of France is" -n 24 \
      >"$tmp/$b.txt" 2>"$tmp/$b.err"
  done
  check "Gemma cut 6: the Vulkan edge's 24 tokens equal the CPU edge's" cmp "$tmp/gvk.txt" "$tmp/gcpu.txt"
  check "... and are text" test -s "$tmp/gvk.txt"
  # a private head and verify steps where sessions join with their input
  # norm and a private head leaves mid-batch (Gemma's post-norms)
  for b in gvk gcpu; do
    url=$gvk; [ $b = gcpu ] && url=$gcpu
    "$gen" --model "$gemma" --edge "$url" --cut 6 --private-head 4 --wire f32 --prompt "The capital of France is" \
      -n 24 >"$tmp/$b-ph.txt" 2>"$tmp/$b-ph.err" &
    timeout 120 "$hinge" generate --model "$gemma" --edge "$url" --cut 3 --prompt "1, 2, 3, 4, 5, 6," -n 24 --temp 0 \
      --speculate --json >"$tmp/$b-spec.json" 2>"$tmp/$b-spec.err" &
    wait
  done
  check "Gemma cut 6, private head 4: the Vulkan edge's tokens equal the CPU edge's" \
    bash -c "test -s '$tmp/gvk-ph.txt' && cmp '$tmp/gvk-ph.txt' '$tmp/gcpu-ph.txt'"
  check "Gemma cut 3, --speculate: the Vulkan edge's text equals the CPU edge's" python3 -c "
import json; v, c = (json.load(open('$tmp/%s-spec.json' % n)) for n in ('gvk', 'gcpu'))
assert v['text'] == c['text'] and len(v['text']) > 10, (v['text'], c['text'])
assert v['tokens_per_round_trip'] > 1.0, v"
else
  echo "# Gemma skipped: $gemma absent"
fi

echo "# $pass passed, $fail failed"
[ "$fail" -eq 0 ]
