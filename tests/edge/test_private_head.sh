#!/usr/bin/env bash
# The private head (U-shaped split, docs/privacy.md) against a real
# hinge-edge on 127.0.0.1 (h2c):
#   - greedy from BOS for 200 positions with the f32 wire equals the local
#     run's oracle for (k, J) in {(1,1), (2,2), (0,3)}; the same with the
#     in-process tail (--local); an f16 wire gives what the in-process
#     emulation of the f16 wire gives;
#   - what the edge received and sent (--record-dir: requests and
#     NNNNNN.reply) holds no token id in either direction: requests are the
#     session JSON and frames of rows, replies frames of the same rows and
#     positions, never a "token";
#   - a bad private_head (out of range, a wrong type, beyond the cut) is 400
#     and the edge goes on serving.
#   test_private_head.sh HINGE_EDGE SPLIT_GENERATE SHARED_DIR
set -uo pipefail
edge=$1 gen=$2 shared=$3
stories="$shared/models/stories260K.gguf"
oracle="$shared/oracles/stories260K-greedy-200.txt"
source "$(dirname "$0")/../cli/lib.sh"

mkdir -p "$tmp/rec"
start edge "$edge" --model "$stories" --listen 127.0.0.1:0 --insecure-h2c --record-dir "$tmp/rec" --threads 1 || exit 1
epid=${pids[0]}
url="http://127.0.0.1:$port"

for kj in "1 1" "2 2" "0 3"; do
  set -- $kj
  "$gen" --model "$stories" --edge "$url" --cut "$1" --private-head "$2" --wire f32 --prompt "" -n 200 \
    >"$tmp/edge-$1-$2.txt" 2>"$tmp/edge-$1-$2.err"
  check "edge, f32 wire, k=$1 J=$2: equals the oracle" cmp "$tmp/edge-$1-$2.txt" "$oracle"
  "$gen" --model "$stories" --local --cut "$1" --private-head "$2" --wire f32 --prompt "" -n 200 \
    >"$tmp/local-$1-$2.txt" 2>"$tmp/local-$1-$2.err"
  check "in-process tail, f32 wire, k=$1 J=$2: equals the oracle" cmp "$tmp/local-$1-$2.txt" "$oracle"
done
"$gen" --model "$stories" --edge "$url" --cut 1 --private-head 2 --wire f16 --prompt "" -n 100 >"$tmp/f16-edge.txt" \
  2>"$tmp/f16-edge.err"
"$gen" --model "$stories" --local --cut 1 --private-head 2 --wire f16 --prompt "" -n 100 >"$tmp/f16-local.txt" \
  2>"$tmp/f16-local.err"
check "f16 wire both ways, k=1 J=2: the edge gives what the emulated wire gives" \
  bash -c "test -s '$tmp/f16-edge.txt' && cmp '$tmp/f16-edge.txt' '$tmp/f16-local.txt'"

# ---- what crossed the wire, both directions ----
rm -f "$tmp/rec"/*
prompt="Once upon a time, Lily and Ben found a shiny key"
"$gen" --model "$stories" --edge "$url" --cut 1 --private-head 2 --wire f32 --prompt "$prompt" -n 40 --max-step 4 \
  --json >"$tmp/priv.json" 2>"$tmp/priv.err"
check "k=1 J=2: requests are rows, replies are the same positions' rows; no token id either way" \
  python3 - "$tmp/rec" "$tmp/priv.json" <<'PY'
import glob, json, math, os, struct, sys
rec, summary = sys.argv[1], json.load(open(sys.argv[2]))
ids = summary["prompt_ids"] + summary["tokens"]
assert len(summary["tokens"]) == 40, len(summary["tokens"])
heads = sorted(glob.glob(os.path.join(rec, "*.head")))
steps = replies = 0

def frame(body, what):
    magic, ver, codec, flags, pos, n, dim, res, plen = struct.unpack_from("<4sBBHIIIIQ", body)
    assert (magic, ver, codec, dim, res) == (b"HNGA", 1, 1, 64, 0), (what, magic, codec, dim)
    assert plen == n * 256 == len(body) - 32, what
    assert all(math.isfinite(v) for v in struct.unpack_from("<%df" % (n * 64), body, 32)), what
    return pos, n, flags

for h in heads:
    method, path = open(h).read().split()
    body = open(h[:-5] + ".body", "rb").read()
    reply_path = h[:-5] + ".reply"
    reply = open(reply_path, "rb").read() if os.path.exists(reply_path) else b""
    for blob, what in ((body, h), (reply, reply_path)):
        assert b"token" not in blob, what
        for i in range(len(ids) - 2):  # no run of 3 token ids as int32 or f32
            for fmt in ("<3i", "<3f"):
                assert struct.pack(fmt, *ids[i:i + 3]) not in blob, (what, i, fmt)
    if path == "/v1/sessions":
        j = json.loads(body)
        assert method == "POST" and j["cut"] == 1 and j["private_head"] == 2, j
    elif path.endswith("/steps"):
        assert frame(reply, reply_path) == frame(body, h)  # the same positions and flags back
        steps += 1
        replies += 1
    else:
        assert method == "DELETE" and body == b"", (method, path)
prompt_steps = -(-len(summary["prompt_ids"]) // 4)
assert steps == prompt_steps + len(summary["tokens"]) - 1, (steps, prompt_steps)
print(f"#   {len(heads)} requests recorded: {steps} row frames up, {replies} row frames down, no token id")
PY
check "k=1 J=2 with a prompt: the same tokens as the in-process tail" python3 - "$tmp/priv.json" "$gen" "$stories" \
  "$prompt" <<'PY'
import json, subprocess, sys
edge = json.load(open(sys.argv[1]))
out = subprocess.run([sys.argv[2], "--model", sys.argv[3], "--local", "--cut", "1", "--private-head", "2",
                      "--wire", "f32", "--prompt", sys.argv[4], "-n", "40", "--json"],
                     capture_output=True, text=True, timeout=60, check=True)
assert json.loads(out.stdout)["tokens"] == edge["tokens"]
PY

# ---- bad input: 400, and the edge goes on ----
sha=$(sha256sum "$stories" | cut -c1-64)
# answers BODY CODE TEXT: POST /v1/sessions with BODY is answered CODE with TEXT in the body
answers() {
  local code
  code=$(curl -s --http2-prior-knowledge --max-time 10 -o "$tmp/resp" -w '%{http_code}' \
         -H 'content-type: application/json' --data "$1" "$url/v1/sessions")
  [ "$code" = "$2" ] && grep -q "$3" "$tmp/resp"
}
if command -v curl >/dev/null; then
  for bad in '"cut": 1, "private_head": 5' '"cut": 1, "private_head": 9999999999' '"cut": 1, "private_head": -1' \
             '"cut": 1, "private_head": "2"' '"cut": 1, "private_head": 1.5' '"cut": 4, "private_head": 2'; do
    check "session with {$bad}: 400 bad_request" \
      answers "{\"model_sha256\": \"$sha\", \"codec\": \"f32\", \"ctx\": 64, $bad}" 400 bad_request
  done
  check "a good private-head session opens (201) and echoes private_head" \
    answers "{\"model_sha256\": \"$sha\", \"cut\": 1, \"codec\": \"f32\", \"ctx\": 64, \"private_head\": 4}" 201 \
    '"private_head": *4'
else
  echo "# curl missing: the bad-input requests are skipped"
fi
"$gen" --model "$stories" --edge "$url" --cut 2 --private-head 2 --wire f32 --prompt "" -n 200 >"$tmp/after.txt" \
  2>"$tmp/after.err"
check "after the bad requests the edge still serves: k=2 J=2 equals the oracle" cmp "$tmp/after.txt" "$oracle"
check "the edge is still up" kill -0 "$epid"

echo "# $pass passed, $fail failed"
[ "$fail" -eq 0 ]
