#!/usr/bin/env bash
# Integration tests of hinge-edge as a process, on 127.0.0.1 only:
#   - split generation over TLS (self-signed certificate made here): for every
#     cut k of stories260K with the f32 wire, greedy from BOS for 200
#     positions equals the oracle byte for byte, with one connection and one
#     TLS handshake per generation;
#   - f16 and q8 wires: token agreement and largest logit difference against
#     the exact activations, within stated bounds;
#   - one h2c run, and what the edge received (--record-dir) holds no prompt
#     text and no token id when k >= 1;
#   - curl --http2 and nghttp against the JSON endpoints, a bounded h2load;
#   - SIGTERM while steps are queued: they finish, the edge exits 0;
#   - the command line refuses h2c off loopback and TLS without a key.
#   test_split.sh HINGE_EDGE SPLIT_GENERATE SHARED_DIR
set -uo pipefail
edge=$1 gen=$2 shared=$3
stories="$shared/models/stories260K.gguf"
oracle="$shared/oracles/stories260K-greedy-200.txt"
tmp=$(mktemp -d /tmp/hinge-split-test-XXXXXX)
pass=0 fail=0
declare -A pids=()

cleanup() {
  for name in "${!pids[@]}"; do kill -KILL "${pids[$name]}" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok - $name"; else fail=$((fail + 1)); echo "not ok - $name"; fi
}

# start_edge NAME ARGS...: sets port; stdout/stderr in $tmp/NAME.{out,err}
start_edge() {
  local name=$1; shift
  "$edge" --model "$stories" --listen 127.0.0.1:0 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids[$name]=$!
  port=""
  for _ in $(seq 200); do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$tmp/$name.out")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "edge $name did not start:"; cat "$tmp/$name.err"
  return 1
}

# stop_edge NAME: SIGTERM, wait at most 15 s; the exit status
stop_edge() {
  local pid=${pids[$1]}
  kill -TERM "$pid"
  for _ in $(seq 300); do # 30 s: a drain under the sanitizers is slow
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
  wait "$pid"
  local rc=$?
  unset "pids[$1]"
  return $rc
}

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=127.0.0.1 \
  -addext subjectAltName=IP:127.0.0.1 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1
check "self-signed certificate for 127.0.0.1" test -s "$tmp/cert.pem"

# ---- TLS: exact split for every cut ----
start_edge tls --cert "$tmp/cert.pem" --key "$tmp/key.pem" --threads 1 || exit 1
url="https://127.0.0.1:$port"
check "stdout says only where it listens" test "$(wc -l <"$tmp/tls.out")" -eq 1
for k in 0 1 2 3 4 5; do
  "$gen" --model "$stories" --edge "$url" --cacert "$tmp/cert.pem" --cut $k --wire f32 --prompt "" -n 200 \
    >"$tmp/f32-$k.txt" 2>"$tmp/f32-$k.err"
  check "TLS, f32 wire, k=$k: 200 positions equal the oracle" cmp "$tmp/f32-$k.txt" "$oracle"
done
"$gen" --model "$stories" --edge "$url" --cacert "$tmp/cert.pem" --cut 2 --wire f32 --prompt "" -n 200 --json \
  >"$tmp/f32.json" 2>"$tmp/f32.err"
check "one generation: one connection, one TLS handshake" python3 -c "
import json; d = json.load(open('$tmp/f32.json'))
assert d['connects'] == 1 and d['tls_handshakes'] == 1 and d['requests'] == 202, d  # open, 200 steps, close"
check "per-token logging stays off at info level" test "$(wc -l <"$tmp/tls.err")" -lt 30

# A prompt longer than max_step goes in chunks flagged NO_SAMPLE: the sampler
# runs once per generated token, so seeded sampling gives the local text.
sampled=(--prompt "Once upon a time, Lily and Ben went to the park" -n 40 --temp 0.9 --top-k 40 --top-p 0.95 --seed 5)
"$gen" --model "$stories" --local --cut 2 "${sampled[@]}" >"$tmp/sampled-local.txt" 2>/dev/null
"$gen" --model "$stories" --edge "$url" --cacert "$tmp/cert.pem" --cut 2 "${sampled[@]}" \
  >"$tmp/sampled-edge.txt" 2>"$tmp/sampled-edge.err"
"$gen" --model "$stories" --edge "$url" --cacert "$tmp/cert.pem" --cut 2 "${sampled[@]}" --max-step 3 --json \
  >"$tmp/sampled-chunked.json" 2>"$tmp/sampled-chunked.err"
check "seeded sampling over the edge equals the local run" cmp "$tmp/sampled-edge.txt" "$tmp/sampled-local.txt"
check "a prefill in chunks of 3 positions gives the same text" python3 -c "
import json; d = json.load(open('$tmp/sampled-chunked.json'))
assert d['text'] == open('$tmp/sampled-local.txt').read(), d['text']
assert d['prompt_tokens'] > 6 and d['requests'] == -(-d['prompt_tokens'] // 3) + 39 + 2, d['requests']"

# ---- lossy wires: measured, with bounds ----
# Agreement: the edge's token (from the lossy activations) equals the argmax
# of the logits computed locally from the exact activations, same history.
# Logit error: |exact - lossy| over the whole vocabulary, every position.
# Bounds (observed on stories260K: f16 <= 0.006 and 200/200; q8 <= 0.21, >= 199/200):
#   f16: agreement >= 199/200, max logit diff <= 0.02
#   q8:  agreement >= 196/200, max logit diff <= 0.5
for k in 0 1 2 3 4 5; do
  for w in f16 q8; do
    "$gen" --model "$stories" --edge "$url" --cacert "$tmp/cert.pem" --cut $k --wire $w --prompt "" -n 200 \
      --json --measure >"$tmp/$w-$k.json" 2>"$tmp/$w-$k.err"
    check "$w wire, k=$k: agreement and logit error within bounds" python3 - "$tmp/$w-$k.json" "$w" "$tmp/f32.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); ref = json.load(open(sys.argv[3]))
agree_min, diff_max = {"f16": (199, 0.02), "q8": (196, 0.5)}[sys.argv[2]]
free = sum(a == b for a, b in zip(d["tokens"], ref["tokens"]))
print(f"#   {sys.argv[2]} k={d['cut']}: agreement {d['agree']}/{d['positions']}, max logit diff "
      f"{d['max_logit_diff']:.4f}, free-running tokens equal to f32: {free}/200, "
      f"{d['decode']['uplink_bytes']:.0f} B/token")
assert d["positions"] == 200 and d["agree"] >= agree_min and d["max_logit_diff"] <= diff_max, d
assert d["edge_mismatch"] == 0, "the edge computed something else than the local decode of its frame"
PY
  done
done

# ---- curl, nghttp, h2load against the JSON endpoints (TLS) ----
sha=$(sha256sum "$stories" | cut -d' ' -f1)
c() { curl -s --http2 --cacert "$tmp/cert.pem" --max-time 10 "$@"; }
check "curl --http2 GET /v1/health" test "$(c -w ' %{http_version} %{http_code}' "$url/v1/health")" = '{"status":"ok"} 2 200'
c "$url/v1/profile" >"$tmp/profile.json"
check "curl GET /v1/profile: model, layers, costs, load" python3 -c "
import json; d = json.load(open('$tmp/profile.json'))
assert d['protocol'] == 'v1' and d['model']['sha256'] == '$sha' and d['model']['n_layer'] == 5, d
assert len(d['costs']['layer_decode_us']) == 5 and d['costs']['served'], d
assert d['load']['sessions'] == 0 and d['load']['queued_steps'] == 0, d"
c -H 'content-type: application/json' -w '\n%{http_code}' \
  -d "{\"model_sha256\":\"$sha\",\"cut\":2,\"codec\":\"q8\",\"ctx\":64}" "$url/v1/sessions" >"$tmp/open.txt"
id=$(head -1 "$tmp/open.txt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2>/dev/null)
check "curl POST /v1/sessions: 201 with a 128-bit id" test "$(tail -1 "$tmp/open.txt")" = 201 -a ${#id} -eq 32
check "curl GET /v1/sessions/{id}" bash -c "curl -s --http2 --cacert '$tmp/cert.pem' '$url/v1/sessions/$id' | grep -q '\"pos\":0'"
check "curl DELETE /v1/sessions/{id}: 204" test "$(c -X DELETE -o /dev/null -w '%{http_code}' "$url/v1/sessions/$id")" = 204
check "curl DELETE again: 404 JSON" bash -c "curl -s --http2 --cacert '$tmp/cert.pem' -X DELETE '$url/v1/sessions/$id' | grep -q '\"error\":\"unknown_session\"'"
check "curl: wrong model hash is 422" test "$(c -o /dev/null -w '%{http_code}' -d "{\"model_sha256\":\"$(printf 0%.0s $(seq 64))\",\"cut\":1,\"codec\":\"f32\",\"ctx\":4}" "$url/v1/sessions")" = 422
nghttp -v "$url/v1/health" >"$tmp/nghttp.txt" 2>&1
check "nghttp GET /v1/health" bash -c "grep -q ':status: 200' '$tmp/nghttp.txt' && grep -q '{\"status\":\"ok\"}' '$tmp/nghttp.txt'"
printf '{"model_sha256":"%s","cut":1,"codec":"f16","ctx":8}' "$sha" >"$tmp/open.json"
nghttp -d "$tmp/open.json" -H 'content-type: application/json' "$url/v1/sessions" >"$tmp/nghttp-post.txt" 2>&1
check "nghttp POST /v1/sessions" grep -q '"n_embd":64' "$tmp/nghttp-post.txt"
timeout 60 h2load -n 2000 -c 4 -m 8 "$url/v1/health" >"$tmp/h2load.txt" 2>&1
grep -E "^(finished|requests|status codes)" "$tmp/h2load.txt" | sed 's/^/#   /'
check "h2load -n 2000 -c 4 -m 8: all 2000 succeed" bash -c "grep -q '2000 succeeded, 0 failed, 0 errored' '$tmp/h2load.txt' && grep -q 'status codes: 2000 2xx' '$tmp/h2load.txt'"
check "TLS edge exits 0 on SIGTERM" stop_edge tls

# ---- h2c, and what the edge received ----
rec="$tmp/rec"
mkdir -p "$rec"
start_edge h2c --insecure-h2c --record-dir "$rec" --threads 1 --idle-timeout-ms 300 || exit 1
url="http://127.0.0.1:$port"
"$gen" --model "$stories" --edge "$url" --cut 3 --wire f32 --prompt "" -n 200 >"$tmp/h2c.txt" 2>"$tmp/h2c.err"
check "h2c, f32 wire, k=3: equals the oracle" cmp "$tmp/h2c.txt" "$oracle"
# the edge closes the idle connection during the pause; the client reconnects
"$gen" --model "$stories" --edge "$url" --cut 3 --wire f32 --prompt "" -n 200 --pause-ms 700 --json \
  >"$tmp/h2c-idle.json" 2>"$tmp/h2c-idle.err"
check "h2c: a connection closed for idleness is replaced, same text" python3 -c "
import json; d = json.load(open('$tmp/h2c-idle.json'))
assert d['text'] == open('$oracle').read() and d['connects'] >= 2, d['connects']"
rm -f "$rec"/*
prompt="Once upon a time, Lily and Ben found a shiny key"
"$gen" --model "$stories" --edge "$url" --cut 1 --wire f32 --prompt "$prompt" -n 40 --json >"$tmp/priv.json" 2>"$tmp/priv.err"
check "k=1: the edge received only session JSON and activation frames; no prompt text, no token ids" \
  python3 - "$rec" "$tmp/priv.json" "$prompt" <<'PY'
import glob, json, math, os, re, struct, sys
rec, summary, prompt = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
ids = summary["prompt_ids"] + summary["tokens"]
heads = sorted(glob.glob(os.path.join(rec, "*.head")))
assert len(heads) == len(summary["tokens"]) + 2, len(heads)  # open, one step per token, close
words = re.findall(r"[A-Za-z]{4,}", prompt)
frames = 0
for h in heads:
    method, path = open(h).read().split()
    body = open(h[:-5] + ".body", "rb").read()
    for w in words:  # no word of the prompt, in any case
        assert w.lower().encode() not in body.lower(), (h, w)
    for i in range(len(ids) - 2):  # no run of 3 token ids as int32 or f32
        for fmt in ("<3i", "<3f"):
            assert struct.pack(fmt, *ids[i:i + 3]) not in body, (h, i, fmt)
    if path == "/v1/sessions":
        assert method == "POST" and set(json.loads(body)) <= {"model_sha256", "cut", "codec", "sampling", "ctx", "max_step"}
        assert json.loads(body)["cut"] == 1
    elif path.endswith("/steps"):
        magic, ver, codec, flags, pos, n, dim, res, plen = struct.unpack_from("<4sBBHIIIIQ", body)
        assert (magic, ver, codec, flags, dim, res) == (b"HNGA", 1, 1, 0, 64, 0) and plen == n * 256 == len(body) - 32
        vals = struct.unpack_from("<%df" % (n * 64), body, 32)
        assert all(math.isfinite(v) for v in vals)
        frames += 1
    else:
        assert method == "DELETE" and body == b"", (method, path)
assert frames == len(summary["tokens"]), frames
print(f"#   {len(heads)} requests recorded: 1 session JSON, {frames} frames, 1 DELETE")
PY
check "h2c edge exits 0 on SIGTERM" stop_edge h2c

# ---- SIGTERM while steps are queued: they finish, then exit 0 ----
# small chunks: the batching worker runs the three prefills together, so they must last long enough to be seen
start_edge drain --insecure-h2c --threads 1 --max-step 2048 --prefill-chunk 4 --no-measure || exit 1
url="http://127.0.0.1:$port"
python3 - "$tmp/big.frame" <<'PY'
import struct, sys
n, dim = 2000, 64
vals = [((i * 7919) % 201 - 100) / 50.0 for i in range(n * dim)]
open(sys.argv[1], "wb").write(struct.pack("<4sBBHIIIIQ", b"HNGA", 1, 1, 0, 0, n, dim, 0, n * dim * 4)
                              + struct.pack("<%df" % (n * dim), *vals))
PY
for i in 1 2 3; do
  sid=$(curl -s --http2-prior-knowledge -d "{\"model_sha256\":\"$sha\",\"cut\":0,\"codec\":\"f32\",\"ctx\":2000}" \
        "$url/v1/sessions" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  curl -s --http2-prior-knowledge --max-time 30 --data-binary @"$tmp/big.frame" -o "$tmp/drain-$i.json" \
    -w '%{http_code}' "$url/v1/sessions/$sid/steps" >"$tmp/drain-$i.code" &
done
busy=0
for _ in $(seq 400); do
  load=$(curl -s --http2-prior-knowledge --max-time 2 "$url/v1/profile" |
         python3 -c 'import json,sys; l=json.load(sys.stdin)["load"]; print(l["queued_steps"] + l["running_steps"])' 2>/dev/null)
  if [ "${load:-0}" -ge 2 ]; then busy=1; break; fi
  sleep 0.005
done
check "steps were queued when SIGTERM came" test $busy -eq 1
check "edge exits 0 on SIGTERM with steps in flight" stop_edge drain
wait
for i in 1 2 3; do
  check "in-flight prefill $i finished with a token" bash -c "test \"\$(cat '$tmp/drain-$i.code')\" = 200 && grep -q '\"token\":' '$tmp/drain-$i.json'"
done
check "the drain is logged" grep -q "SIGTERM: no new connections or sessions; finishing" "$tmp/drain.err"

# ---- the command line ----
"$edge" --model "$stories" --listen 0.0.0.0:0 --insecure-h2c >/dev/null 2>"$tmp/e1"
check "h2c off loopback is refused (usage error)" test $? -eq 2
check "and says why" grep -q "loopback" "$tmp/e1"
"$edge" --model "$stories" --listen 127.0.0.1:0 >/dev/null 2>"$tmp/e2"
check "TLS without --cert/--key is refused" test $? -eq 2
"$edge" --model "$stories" --listen 127.0.0.1:0 --insecure-h2c --max-sessions 12x >/dev/null 2>"$tmp/e3"
check "bad numbers are usage errors" test $? -eq 2
"$edge" --model "$tmp/missing.gguf" --listen 127.0.0.1:0 --insecure-h2c >/dev/null 2>"$tmp/e4"
check "missing model is an error naming the file" grep -q "missing.gguf" "$tmp/e4"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
