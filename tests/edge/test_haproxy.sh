#!/usr/bin/env bash
# Two hinge-edge processes behind HAProxy on 127.0.0.1, with the config of
# docs/deploy/haproxy.cfg as it is: TLS and HTTP/2 from the client to HAProxy
# and from HAProxy to each edge, sessions routed to their edge by the
# instance id that starts their id, health checks on /v1/health.
#   - 16 concurrent split generations (hinge generate --edge, cuts 1..5,
#     greedy, 200 tokens from BOS) through HAProxy: all equal the oracle, with
#     no recovery (a step sent to the wrong edge is a 404 that the client
#     would recover from), both edges served sessions, no error on either;
#   - the OpenAI endpoint over HTTP/1.1 + TLS through HAProxy (the openai
#     package's default), when hinge's venv has it;
#   - one edge stopped (SIGTERM): HAProxy's health check takes it out, and
#     generations go on, exact, on the other.
# Exits 77 (skipped) when haproxy is not installed (scripts/setup installs it).
#   test_haproxy.sh HINGE_EDGE HINGE SHARED_DIR DOCS_DEPLOY_DIR
set -uo pipefail
edge=$1 hinge=$2 shared=$3 deploy=$4
haproxy=$(command -v haproxy || true)
[ -x "$haproxy" ] || { echo "skip: haproxy is not installed (Debian package haproxy; scripts/setup)"; exit 77; }
stories="$shared/models/stories260K.gguf"
oracle="$shared/oracles/stories260K-greedy-200.txt"
tmp=$(mktemp -d /tmp/hinge-haproxy-test-XXXXXX)
pass=0 fail=0
declare -A pids=()

cleanup() {
  for name in "${!pids[@]}"; do kill -KILL "${pids[$name]}" 2>/dev/null; done
  [ -n "${KEEP_TMP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok - $name"; else fail=$((fail + 1)); echo "not ok - $name"; fi
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1
cat "$tmp/cert.pem" "$tmp/key.pem" >"$tmp/front.pem"

# start_edge NAME INSTANCE: sets port
start_edge() {
  "$edge" --model "$stories" --listen 127.0.0.1:0 --cert "$tmp/cert.pem" --key "$tmp/key.pem" --threads 1 \
    --no-measure --instance-id "$2" >"$tmp/$1.out" 2>"$tmp/$1.err" &
  pids[$1]=$!
  port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/$1.out")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "edge $1 did not start:"; cat "$tmp/$1.err"; return 1
}
start_edge e1 ed9e0001 || exit 1
p1=$port
start_edge e2 ed9e0002 || exit 1
p2=$port
front=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

export HINGE_FRONT=127.0.0.1:$front HINGE_FRONT_PEM=$tmp/front.pem EDGE_CA=$tmp/cert.pem
export EDGE1=127.0.0.1:$p1 EDGE2=127.0.0.1:$p2
check "haproxy -c accepts docs/deploy/haproxy.cfg" "$haproxy" -q -c -f "$deploy/haproxy.cfg"
# the test's own addition: the runtime API, to mark an edge down while it still runs
printf 'global\n    stats socket %s level admin\n' "$tmp/admin.sock" >"$tmp/admin.cfg"
"$haproxy" -db -f "$deploy/haproxy.cfg" -f "$tmp/admin.cfg" >"$tmp/haproxy.log" 2>&1 &
pids[haproxy]=$!
url=https://127.0.0.1:$front
c() { curl -s --max-time 10 --cacert "$tmp/cert.pem" "$@"; }
up=0
for _ in $(seq 100); do
  [ "$(c -o /dev/null -w '%{http_code}' "$url/v1/health")" = 200 ] && { up=1; break; }
  sleep 0.1
done
check "HAProxy answers /v1/health from an edge" test $up = 1
[ $up = 1 ] || { cat "$tmp/haproxy.log"; exit 1; }

metric() { # EDGE_PORT NAME: the value, straight from the edge
  c "https://127.0.0.1:$1/metrics" | sed -n "s/^$2 //p"
}

# ---- 16 concurrent split generations through HAProxy ----
gen() { # I: one generation, its text and summary into $tmp/gen-I.{txt,json}
  local k=$(($1 % 5 + 1))
  "$hinge" generate --model "$stories" --edge "$url" --cacert "$tmp/cert.pem" --cut $k --wire f32 --prompt "" \
    -n 200 --temp 0 --no-local-fallback --threads 1 --json >"$tmp/gen-$1.json" 2>"$tmp/gen-$1.err"
}
t0=$(date +%s.%N)
gpids=()
for i in $(seq 0 15); do gen "$i" & gpids+=($!); done
for p in "${gpids[@]}"; do wait "$p"; done
t1=$(date +%s.%N)
check "16 concurrent generations through HAProxy: all equal the oracle, none recovered" python3 -c "
import json, sys
want = open('$oracle').read()
bad = []
for i in range(16):
    try:
        d = json.load(open('$tmp/gen-%d.json' % i))
    except Exception as e:
        bad.append((i, str(e), open('$tmp/gen-%d.err' % i).read()[-300:])); continue
    if d['text'] != want or d['recovery']['recoveries'] or d['generated_tokens'] != 200:
        bad.append((i, d['text'][:60], d['recovery']))
print('\n'.join(map(str, bad)), file=sys.stderr)
sys.exit(1 if bad else 0)"
s1=$(metric "$p1" hinge_edge_steps_total) s2=$(metric "$p2" hinge_edge_steps_total)
echo "# steps: edge 1 $s1, edge 2 $s2; 16 generations in $(python3 -c "print('%.2f' % ($t1 - $t0))") s"
check "both edges served sessions" python3 -c "import sys; sys.exit(0 if ${s1:-0} > 0 and ${s2:-0} > 0 else 1)"
check "no error response on either edge (no step went to the wrong one)" \
  test "$(metric "$p1" hinge_edge_errors_total) $(metric "$p2" hinge_edge_errors_total)" = "0 0"
check "no session left open" test "$(metric "$p1" hinge_edge_sessions) $(metric "$p2" hinge_edge_sessions)" = "0 0"

# ---- the OpenAI endpoint over HTTP/1.1 through HAProxy ----
py=${HINGE_PYTHON:-${HINGE_CACHE:-$HOME/.cache/hinge}/venv/bin/python}
if "$py" -c 'import openai' 2>/dev/null; then
  check "openai package over HTTP/1.1 + TLS through HAProxy: the oracle's text" "$py" -c "
import sys, httpx, openai
c = openai.OpenAI(base_url='$url/v1', api_key='unused', max_retries=0, timeout=60,
                  http_client=httpx.Client(verify='$tmp/cert.pem'))  # HTTP/1.1, httpx's default
r = c.with_raw_response.completions.create(model='stories260K.gguf', prompt='', max_tokens=200, temperature=0)
text = r.parse().choices[0].text
sys.exit(0 if text == open('$oracle').read() and r.http_response.http_version == 'HTTP/1.1' else 1)"
else
  echo "skip - openai over HTTP/1.1: no openai package in $py"
fi

# ---- an edge marked down keeps its sessions (force-persist), gets no new one ----
admin() { python3 -c "
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect('$tmp/admin.sock'); s.sendall(sys.argv[1].encode() + b'\n')
print(s.recv(65536).decode(), end='')" "$1"; }
sha=$(sha256sum "$stories" | cut -d' ' -f1)
open_session() { c "$url/v1/sessions" -d "{\"model_sha256\": \"$sha\", \"cut\": 2, \"codec\": \"f32\", \"ctx\": 16}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'; }
sid=$(open_session)
down=e1; [ "${sid:0:8}" = ed9e0002 ] && down=e2
admin "disable health edges/$down" >/dev/null # the checks would bring it back at once
admin "set server edges/$down health down" >/dev/null
check "a session on an edge marked down still reaches it (GET through HAProxy)" \
  test "$(c -o /dev/null -w '%{http_code}' "$url/v1/sessions/$sid")" = 200
others=""
for _ in 1 2 3 4; do s2=$(open_session); others="$others ${s2:0:8}"; c -X DELETE "$url/v1/sessions/$s2"; done
check "new sessions go to the other edge ($others)" bash -c "! grep -q '${sid:0:8}' <<<'$others'"
check "DELETE of the first session reaches its edge" \
  test "$(c -o /dev/null -w '%{http_code}' -X DELETE "$url/v1/sessions/$sid")" = 204
admin "enable health edges/$down" >/dev/null
admin "set server edges/$down health up" >/dev/null

# ---- an edge goes away ----
kill -TERM "${pids[e2]}"
wait "${pids[e2]}"
check "edge 2 exits 0 on SIGTERM" test $? = 0
unset "pids[e2]"
down=0
for _ in $(seq 50); do # fall 2, inter 1s
  grep -q "e2 is DOWN, reason" "$tmp/haproxy.log" && { down=1; break; } # its check failed (not the CLI's)
  sleep 0.1
done
check "HAProxy's health check takes edge 2 out" test $down = 1
before=$(metric "$p1" hinge_edge_steps_total)
gen 100 & a=$!
gen 101 & b=$!
wait $a; wait $b
check "then generations go to edge 1, exact" python3 -c "
import json, sys
ok = all(json.load(open('$tmp/gen-%d.json' % i))['text'] == open('$oracle').read() for i in (100, 101))
sys.exit(0 if ok and $(metric "$p1" hinge_edge_steps_total) - $before == 400 else 1)"

kill -TERM "${pids[e1]}"
wait "${pids[e1]}"
check "edge 1 exits 0 on SIGTERM" test $? = 0
unset "pids[e1]"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
