#!/usr/bin/env bash
# Re-cutting mid-generation: `hinge generate --cut auto` through
# hinge-linkemu whose channel turns from Wi-Fi 6 into LTE (+50 ms round
# trip) 0.3 s after it starts (the first decision is made on the Wi-Fi
# prior either way). Gemma 3 270M: the partitioner first puts
# every layer on the (profiled) edge, k = 0; when the live channel estimate
# has moved, another cut wins by the margin and the session moves, between
# two tokens, to k = 18 (all here), rebuilding the KV cache of the layers
# that changed sides from the tokens it kept. Visible in --json
# (recovery.recuts, recovery.first_cut, cut); the text is still the local
# greedy text (f32 wire). Skipped (77) without HINGE_GEMMA_MODEL.
#   test_recut.sh HINGE HINGE_EDGE HINGE_LINKEMU SOURCE_DIR
set -uo pipefail
hinge=$1 edge=$2 linkemu=$3 src=$4
model=${HINGE_GEMMA_MODEL:-}
[ -n "$model" ] && [ -f "$model" ] || { echo "HINGE_GEMMA_MODEL not set: skipped"; exit 77; }
prof="$src/profiles"
. "$(dirname "$0")/lib.sh"

prompt="The capital of France is"
n=96
timeout 120 "$hinge" generate --model "$model" --prompt "$prompt" -n $n --temp 0 --threads 1 >"$tmp/local" 2>/dev/null
check "the local run" test -s "$tmp/local"
start edge "$edge" --model "$model" --listen 127.0.0.1:0 --threads 1 --no-measure --insecure-h2c || exit 1
start link "$linkemu" --upstream "127.0.0.1:$port" --channel "$prof/channels/wifi6.json" \
  --then-channel "$prof/channels/lte.json" --after-s 0.3 || exit 1
HINGE_CACHE="$tmp/cache" timeout 120 "$hinge" generate --model "$model" --prompt "$prompt" -n $n --temp 0 \
  --threads 1 --edge "http://127.0.0.1:$port" --cut auto --wire f32 \
  --device "$prof/devices/snapdragon-8-gen3.json" --edge-profile "$prof/edges/h100-sxm.json" \
  --channel "$prof/channels/wifi6.json" --json --verbose >"$tmp/recut" 2>"$tmp/recut.err"
check "exit 0" test $? -eq 0
check "the cut moved (first k=0 on the edge, then all here) and the text is the local one" python3 -c "
import json; d=json.load(open('$tmp/recut')); r=d['recovery']
assert r['first_cut'] == 0 and r['recuts'] >= 1 and d['cut'] == 18, d
assert d['text'] == open('$tmp/local').read().rstrip('\n'), (d['text'], open('$tmp/local').read())
print('moved after', r['recut_ms'], 'ms of re-cut')"
check "the move is logged" grep -q "re-cut from k=0 to k=18" "$tmp/recut.err"
[ "$fail" -eq 0 ] || { tail -20 "$tmp/recut.err"; }
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
