#!/usr/bin/env bash
# Resume: the connection to the edge is cut mid-generation (hinge-linkemu
# cuts every connection on SIGUSR1, as a handover would) while the edge
# lives on. The client takes the same edge session up over a new
# connection: nothing replayed (no recoveries), the text the oracle's, and
# the edge counts the resumed session in /metrics.
#   test_resume.sh HINGE HINGE_EDGE HINGE_LINKEMU SHARED_DIR
set -uo pipefail
hinge=$1 edge=$2 linkemu=$3 shared=$4
stories="$shared/models/stories260K.gguf"
oracle="$shared/oracles/stories260K-greedy-200.txt"
. "$(dirname "$0")/lib.sh"

start edge "$edge" --model "$stories" --listen 127.0.0.1:0 --threads 1 --no-measure --insecure-h2c || exit 1
edge_port=$port
start link "$linkemu" --upstream "127.0.0.1:$edge_port" --rtt-ms 10 || exit 1
link_pid=${pids[-1]}
timeout 60 "$hinge" generate --model "$stories" --prompt "" -n 200 --temp 0 --edge "http://127.0.0.1:$port" \
  --cut 2 --wire f32 --no-local-fallback --json >"$tmp/out" 2>"$tmp/err" &
gen=$!
sleep 0.8
kill -USR1 "$link_pid"
wait $gen
check "exit 0" test $? -eq 0
check "resumed on the same edge session: no replay, the oracle's text" python3 -c "
import json; d=json.load(open('$tmp/out')); r=d['recovery']
assert r['recoveries'] == 0 and r['replayed_positions'] == 0, r
assert d['text'] == open('$oracle').read(), d['text']"
# a step in flight when the link is cut fails and the session resumes it
# (recovery.resumes); a cut between two steps may instead be met by
# libcurl's own retry on a fresh connection: either way the same session
# goes on over a new connection, which the edge counts
curl -s --http2-prior-knowledge "http://127.0.0.1:$edge_port/metrics" >"$tmp/metrics"
check "the edge counts it" grep -Eq '^hinge_edge_sessions_resumed_total [1-9]' "$tmp/metrics"
[ "$fail" -eq 0 ] || { cat "$tmp/err"; grep resumed "$tmp/metrics"; }
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
