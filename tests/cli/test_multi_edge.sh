#!/usr/bin/env bash
# Several edges: `hinge generate --edge A --edge B --cut auto` weighs every
# edge (its served profile and load, and a round trip timed on its
# connection) and runs on the best one, keeping the others as fall-backs.
# Two real hinge-edge processes on 127.0.0.1, one of them behind
# hinge-linkemu adding 20 ms of round trip: whichever order they are listed
# in, the near edge is chosen, and the text is the oracle's.
#   test_multi_edge.sh HINGE HINGE_EDGE HINGE_LINKEMU SHARED_DIR SOURCE_DIR
set -uo pipefail
hinge=$1 edge=$2 linkemu=$3 shared=$4 src=$5
stories="$shared/models/stories260K.gguf"
oracle="$shared/oracles/stories260K-greedy-200.txt"
prof="$src/profiles"
. "$(dirname "$0")/lib.sh"

edge_args=(--model "$stories" --listen 127.0.0.1:0 --threads 1 --no-measure --insecure-h2c)
start near "$edge" "${edge_args[@]}" || exit 1
near="http://127.0.0.1:$port"
start far_edge "$edge" "${edge_args[@]}" || exit 1
start far "$linkemu" --upstream "127.0.0.1:$port" --rtt-ms 20 || exit 1
far="http://127.0.0.1:$port"

run() { # out, edges...
  local out=$1; shift
  local args=()
  for e in "$@"; do args+=(--edge "$e"); done
  timeout 60 "$hinge" generate --model "$stories" --prompt "" -n 200 --temp 0 "${args[@]}" --cut auto \
    --device "$prof/devices/snapdragon-8-gen3.json" --edge-profile "$prof/edges/h100-sxm.json" \
    --channel "$prof/channels/5g-midband-good.json" --mem-cap 400000 \
    --json --verbose >"$tmp/$out" 2>"$tmp/$out.err"
}
for order in far-first near-first; do
  if [ $order = far-first ]; then run $order "$far" "$near"; else run $order "$near" "$far"; fi
  check "$order: exit 0" test $? -eq 0
  check "$order: the near edge is chosen, the text is the oracle's" python3 -c "
import json; d=json.load(open('$tmp/$order'))
assert d['edge'] == '$near', (d['edge'], '$near')
assert d['text'] == open('$oracle').read(), d['text']
assert d['cut'] < 5, d"
  check "$order: the log weighs both edges" test "$(grep -c 'round trip' "$tmp/$order.err")" -eq 2
done
# the chosen edge dies: the far one, kept as a fall-back, finishes the text
kill -KILL "${pids[0]}"
run dead "$near" "$far" || cat "$tmp/dead.err"
check "the near edge gone: the far one is used, exact" python3 -c "
import json; d=json.load(open('$tmp/dead'))
assert d['edge'] == '$far' and d['text'] == open('$oracle').read(), d"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
