#!/usr/bin/env bash
# `hinge generate --edge` against a real hinge-edge on 127.0.0.1: the split
# through the user's command line. stories260K, f32 wire, every cut: the
# oracle text; one TLS handshake per generation; h2c when asked; the
# per-request breakdown in --json; a clear error when no edge answers;
# --cut auto with profiles from files and with the profile an edge serves
# (hinge-edge --profile), and running locally when no edge answers.
#   test_split_cli.sh HINGE HINGE_EDGE SHARED_DIR SOURCE_DIR
set -uo pipefail
hinge=$1 edge=$2 shared=$3 src=$4
stories="$shared/models/stories260K.gguf"
oracle="$shared/oracles/stories260K-greedy-200.txt"
. "$(dirname "$0")/lib.sh"

start_edge() { # name, args...; sets port
  local name=$1; shift
  start "$name" "$edge" --model "$stories" --listen 127.0.0.1:0 --threads 1 --no-measure "$@"
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" -subj /CN=127.0.0.1 \
  -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
start_edge tls --cert "$tmp/cert.pem" --key "$tmp/key.pem" || exit 1
url="https://127.0.0.1:$port"

for k in 0 1 2 3 4 5; do
  timeout 60 "$hinge" generate --model "$stories" --prompt "" -n 200 --temp 0 \
    --edge "$url" --cut "$k" --cacert "$tmp/cert.pem" >"$tmp/out$k" 2>"$tmp/err$k"
  check "split at k=$k over TLS equals the oracle" cmp "$tmp/out$k" "$oracle"
done

timeout 60 "$hinge" generate --model "$stories" --prompt "Once upon a time" -n 50 --temp 0 \
  --edge "$url" --cut 2 --wire f16 --cacert "$tmp/cert.pem" --json >"$tmp/j" 2>"$tmp/je"
check "--json has the breakdown, one connection and one TLS handshake" python3 -c "
import json; d=json.load(open('$tmp/j')); b=d['breakdown']
assert d['generated_tokens']==50 and d['wire']=='f16' and d['cut']==2, d
assert b['connects']==1 and b['tls_handshakes']==1, b
assert b['uplink_bytes']>0 and b['downlink_bytes']>0 and b['edge_ms']>0 and b['device_ms']>0, b
assert abs(b['uplink_bytes_per_token'] - (32+4+2*64)) < 1e-9, b"

# --speculate: the oracle text still, and tokens per round trip in --json
# (the oracle's text repeats itself, so prompt lookup finds drafts).
timeout 60 "$hinge" generate --model "$stories" --prompt "" -n 200 --temp 0 --edge "$url" --cut 3 \
  --cacert "$tmp/cert.pem" --speculate --json >"$tmp/spec" 2>"$tmp/spec.err"
check "--speculate keeps the oracle text and reports tokens_per_round_trip" python3 -c "
import json; d=json.load(open('$tmp/spec')); b=d['breakdown']
assert d['text'] == open('$oracle').read(), d['text']
assert d['tokens_per_round_trip'] == d['generated_tokens'] / (b['steps'] - 1), d
assert d['tokens_per_round_trip'] >= 1.0, d"

# --cut auto: the partitioner picks k from the profiles; f32 keeps it exact;
# the live channel estimate is kept for the next run.
prof="$src/profiles"
HINGE_CACHE="$tmp/cache" timeout 60 "$hinge" generate --model "$stories" --prompt "" -n 200 --temp 0 \
  --edge "$url" --cacert "$tmp/cert.pem" --cut auto --wire f32 --device "$prof/devices/snapdragon-8-gen3.json" \
  --edge-profile "$prof/edges/h100-sxm.json" --channel "$prof/channels/5g-midband-good.json" --json >"$tmp/auto" 2>"$tmp/auto.err"
check "--cut auto decides a cut and the text is exact" python3 -c "
import json; d=json.load(open('$tmp/auto')); assert 0 <= d['cut'] <= 5, d
assert d['text'] == open('$oracle').read(), d['text']"
check "--cut auto keeps the channel estimate" bash -c "ls '$tmp/cache/channel/'*.json >/dev/null 2>&1 || grep -q 'cut\":5' '$tmp/auto'"
timeout 60 "$hinge" generate --model "$stories" --prompt x -n 5 --edge "$url" --cut auto >/dev/null 2>"$tmp/auto2.err"
check "--cut auto without profiles is a clear error" grep -q "needs --device" "$tmp/auto2.err"
timeout 60 "$hinge" generate --model "$stories" --prompt x -n 5 --edge "$url" --cacert "$tmp/cert.pem" --cut auto \
  --device "$prof/devices/snapdragon-8-gen3.json" --channel "$prof/channels/lte.json" >/dev/null 2>"$tmp/auto3.err"
check "--cut auto against an edge that serves no profile is a clear error" grep -q "serves no profile" "$tmp/auto3.err"

# An edge started with --profile serves it in /v1/profile: --cut auto then
# needs no --edge-profile, and asks over the connection the session uses.
"$hinge" profile --model "$stories" --role edge --threads 1 --ctx 128 -o "$tmp/edge-prof.json" >/dev/null 2>&1
check "hinge profile --role edge writes a profile" test -s "$tmp/edge-prof.json"
start_edge served --cert "$tmp/cert.pem" --key "$tmp/key.pem" --profile "$tmp/edge-prof.json" || exit 1
served="https://127.0.0.1:$port"
check "/v1/profile carries the edge's profile" python3 -c "
import json, subprocess
d = json.loads(subprocess.run(['curl', '-s', '--http2', '--cacert', '$tmp/cert.pem', '$served/v1/profile'],
                              capture_output=True, check=True).stdout)
assert d['profile']['kind'] == 'edge' and len(d['profile']['measured']['layers']) == 5, d['profile']"
HINGE_CACHE="$tmp/cache2" timeout 60 "$hinge" generate --model "$stories" --prompt "" -n 200 --temp 0 \
  --edge "$served" --cacert "$tmp/cert.pem" --cut auto --wire f32 --device "$prof/devices/snapdragon-8-gen3.json" \
  --channel "$prof/channels/lte.json" --mem-cap 400000 --json --verbose >"$tmp/auto4" 2>"$tmp/auto4.err"
check "--cut auto with the edge's served profile (a memory cap forces a split): exact, one connection" python3 -c "
import json; d=json.load(open('$tmp/auto4')); b=d['breakdown']
assert d['text'] == open('$oracle').read(), d['text']
assert d['cut'] < 5 and b['connects'] == 1 and b['tls_handshakes'] == 1, d"
check "--cut auto says what it chose" grep -q "cut auto chose k=" "$tmp/auto4.err"
timeout 60 "$hinge" generate --model "$stories" --prompt "" -n 200 --temp 0 --edge "https://127.0.0.1:1" \
  --cut auto --device "$prof/devices/snapdragon-8-gen3.json" --channel "$prof/channels/lte.json" \
  >"$tmp/auto5" 2>"$tmp/auto5.err"
check "--cut auto with no edge reachable runs locally, exact" cmp "$tmp/auto5" "$oracle"
check "... and warns that it does" grep -q "cannot be reached" "$tmp/auto5.err"
timeout 20 "$edge" --model "$stories" --listen 127.0.0.1:0 --insecure-h2c --no-measure \
  --profile "$prof/edges/this-machine-cpu.json" >/dev/null 2>"$tmp/badprof.err"
check "hinge-edge refuses a profile of another model" grep -q "another model" "$tmp/badprof.err"

timeout 60 "$hinge" generate --model "$stories" --prompt "" -n 20 --temp 0 --edge "$url" --cut 2 \
  >"$tmp/o_noca" 2>"$tmp/e_noca"
check "an untrusted certificate is refused" test $? -ne 0 -a ! -s "$tmp/o_noca"

start_edge h2c --insecure-h2c || exit 1
timeout 60 "$hinge" generate --model "$stories" --prompt "" -n 200 --temp 0 \
  --edge "http://127.0.0.1:$port" --cut 3 >"$tmp/h2c" 2>/dev/null
check "split over h2c equals the oracle" cmp "$tmp/h2c" "$oracle"

timeout 60 "$hinge" generate --model "$stories" --prompt x -n 5 --edge "https://127.0.0.1:1" --cut 1 \
  >"$tmp/o_dead" 2>"$tmp/e_dead"
check "no edge: a clear error, nothing on stdout" test $? -ne 0 -a ! -s "$tmp/o_dead" -a -s "$tmp/e_dead"
timeout 60 "$hinge" generate --model "$stories" --prompt x -n 5 --edge "$url" >/dev/null 2>&1
check "--edge without --cut is refused" test $? -ne 0

# --edge given twice: the first is dead, the second serves; the text is exact
timeout 60 "$hinge" generate --model "$stories" --prompt "" -n 200 --temp 0 --edge "https://127.0.0.1:1" \
  --edge "$url" --cacert "$tmp/cert.pem" --cut 2 --json >"$tmp/two" 2>"$tmp/two.err"
check "two --edge, the first dead: the second serves, exact" python3 -c "
import json; d=json.load(open('$tmp/two')); assert d['text'] == open('$oracle').read() and d['edge'] == '$url', d
assert d['recovery']['recoveries'] == 0, d"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
