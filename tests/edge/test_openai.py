"""The OpenAI-compatible endpoints of hinge-edge, driven by the real `openai`
package from PyPI (httpx underneath), on 127.0.0.1 only:
  - over TLS with ALPN h2 (what a deployed edge serves), and h2c;
  - /v1/models lists the file name and its sha256;
  - stories260K at temperature 0 from BOS: 200 tokens equal the oracle, not
    streamed and streamed (server-sent events);
  - a prompt at temperature 0 equals `hinge generate --temp 0` locally;
  - 8 thin clients and one split session at once: all exact, and they shared
    batches (hinge_edge_batch_size in /metrics);
  - a chat (SmolLM2, ChatML template) equals `hinge generate` on the formatted
    conversation; a model without a template is a 400;
  - errors: an unknown model is a 404, max_tokens over the context a 400.

  test_openai.py HINGE_EDGE HINGE SPLIT_GENERATE SHARED_DIR
Every wait is bounded; the edges are killed on exit."""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import httpx
import openai

edge_bin, hinge_bin, split_gen, shared = sys.argv[1:5]
stories = os.path.join(shared, "models", "stories260K.gguf")
oracle = open(os.path.join(shared, "oracles", "stories260K-greedy-200.txt"), encoding="utf-8").read()
tmp = tempfile.mkdtemp(prefix="hinge-openai-test-")
procs = []
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok - " + name)
    else:
        failed += 1
        print("not ok - " + name + (": " + detail if detail else ""))


def start_edge(model, *extra):
    log = open(os.path.join(tmp, "edge-%d.err" % len(procs)), "w")
    p = subprocess.Popen([edge_bin, "--model", model, "--listen", "127.0.0.1:0", "--no-measure", *extra],
                         stdout=subprocess.PIPE, stderr=log, text=True)
    procs.append(p)
    line = p.stdout.readline()  # "listening on ADDR:PORT" once it accepts
    m = re.match(r"listening on 127\.0\.0\.1:(\d+)$", line.strip())
    if not m:
        raise SystemExit("edge did not start: " + open(log.name).read())
    return int(m.group(1))


def local(model, prompt, n, ctx=None):
    args = [hinge_bin, "generate", "--model", model, "--prompt", prompt, "-n", str(n), "--temp", "0"]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout


def client(base, **kw):
    # httpx speaks HTTP/1.1 unless told: the edge serves HTTP/2 only.
    return openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=60,
                         http_client=httpx.Client(**kw))


def metric(base, name, http):
    text = http.get(base + "/metrics").text
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def main():
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", tmp + "/key.pem", "-out", tmp + "/cert.pem"], check=True, capture_output=True)
    port = start_edge(stories, "--cert", tmp + "/cert.pem", "--key", tmp + "/key.pem", "--threads", "1")
    base = "https://127.0.0.1:%d" % port
    c = client(base, http2=True, verify=tmp + "/cert.pem")

    models = c.models.list().data
    sha = subprocess.run(["sha256sum", stories], capture_output=True, text=True).stdout.split()[0]
    check("/v1/models: id is the file name, with its sha256",
          len(models) == 1 and models[0].id == "stories260K.gguf" and models[0].model_extra.get("sha256") == sha,
          str(models))

    r = c.completions.create(model="stories260K.gguf", prompt="", max_tokens=200, temperature=0)
    check("TLS h2: temperature 0 from BOS equals the oracle", r.choices[0].text == oracle, repr(r.choices[0].text[:80]))
    check("finish_reason length, usage counts", r.choices[0].finish_reason == "length" and
          r.usage.prompt_tokens == 1 and r.usage.completion_tokens == 200 and r.usage.total_tokens == 201, str(r.usage))

    chunks = list(c.completions.create(model="stories260K", prompt="", max_tokens=200, temperature=0, stream=True))
    text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
    check("streamed (SSE): the same text, one chunk a token", text == oracle and len(chunks) >= 200, repr(text[:80]))
    check("streamed: the last chunk says why it stopped", chunks[-1].choices[0].finish_reason == "length")

    prompt = "Once upon a time, there was a"
    want = local(stories, prompt, 40)
    r = c.completions.create(model="stories260K", prompt=prompt, max_tokens=40, temperature=0, seed=7, top_p=1)
    check("a prompt at temperature 0 equals hinge generate locally", want != "" and r.choices[0].text == want,
          "%r vs %r" % (r.choices[0].text, want))

    try:
        c.completions.create(model="other.gguf", prompt="x", max_tokens=1)
        check("an unknown model is a 404", False)
    except openai.NotFoundError:
        check("an unknown model is a 404", True)
    try:
        c.completions.create(model="stories260K", prompt="x", max_tokens=100000)
        check("max_tokens over the context is a 400", False)
    except openai.BadRequestError:
        check("max_tokens over the context is a 400", True)
    try:
        c.chat.completions.create(model="stories260K", messages=[{"role": "user", "content": "hi"}])
        check("chat on a model without a template is a 400", False)
    except openai.BadRequestError as e:
        check("chat on a model without a template is a 400", "chat template" in str(e), str(e))

    # Thin clients and a split session at once, on one compute thread.
    http = httpx.Client(http2=True, verify=tmp + "/cert.pem")
    b0 = metric(base, "hinge_edge_batch_size_sum", http), metric(base, "hinge_edge_batch_size_count", http)
    texts = [None] * 8

    def thin(i):
        # a client (connection) per thread: httpcore's HTTP/2 connection shared by threads
        # sometimes sends a request's headers twice (h2: "pseudo-header in trailer")
        c = client(base, http2=True, verify=tmp + "/cert.pem")
        s = c.completions.create(model="stories260K", prompt="", max_tokens=200, temperature=0, stream=i % 2 == 0)
        texts[i] = s.choices[0].text if i % 2 else "".join(ch.choices[0].text for ch in s if ch.choices)

    threads = [threading.Thread(target=thin, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    split = subprocess.run([split_gen, "--model", stories, "--edge", base, "--cacert", tmp + "/cert.pem",
                            "--cut", "3", "--wire", "f32", "--prompt", "", "-n", "200"],
                           capture_output=True, text=True, timeout=120)
    for t in threads:
        t.join(120)
    check("8 thin clients at once: all equal the oracle", all(t == oracle for t in texts))
    check("a split session among them: equal to the oracle", split.stdout == oracle, split.stderr[-300:])
    b1 = metric(base, "hinge_edge_batch_size_sum", http), metric(base, "hinge_edge_batch_size_count", http)
    sessions, batches = b1[0] - b0[0], b1[1] - b0[1]
    check("they shared batches (%.0f session-steps in %.0f batches)" % (sessions, batches), sessions > batches)
    check("no session left open", metric(base, "hinge_edge_sessions", http) == 0)

    # h2c: prior knowledge (httpx: http1=False); one session at most.
    port2 = start_edge(stories, "--insecure-h2c")
    c2 = client("http://127.0.0.1:%d" % port2, http1=False, http2=True)
    r = c2.completions.create(model="stories260K", prompt="", max_tokens=200, temperature=0)
    check("h2c: the same text", r.choices[0].text == oracle)


    smol = os.environ.get("HINGE_SMOLLM2_MODEL", "")
    if not os.path.exists(smol):
        print("skip - chat: no SmolLM2 (HINGE_SMOLLM2_MODEL)")
    else:
        port3 = start_edge(smol, "--insecure-h2c", "--max-sessions", "1")
        base3 = "http://127.0.0.1:%d" % port3
        c3 = client(base3, http1=False, http2=True)
        msgs = [{"role": "system", "content": "You are brief."}, {"role": "user", "content": "Name a colour."}]
        formatted = "".join("<|im_start|>%s\n%s<|im_end|>\n" % (m["role"], m["content"]) for m in msgs)
        want = local(smol, formatted + "<|im_start|>assistant\n", 24)
        r = c3.chat.completions.create(model=os.path.basename(smol), messages=msgs, max_tokens=24, temperature=0)
        check("chat (ChatML) equals hinge generate on the formatted conversation",
              want != "" and r.choices[0].message.content == want and r.choices[0].message.role == "assistant",
              "%r vs %r" % (r.choices[0].message.content, want))
        s = c3.chat.completions.create(model=os.path.basename(smol), messages=msgs, max_tokens=24, temperature=0,
                                       stream=True)
        text = "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices)
        check("chat streamed: the same", text == want, repr(text))

        # A client that leaves mid-stream (SmolLM2: slow enough to be mid-generation): while it
        # runs it holds the one session; once it leaves, its session is freed.
        http3 = httpx.Client(http1=False, http2=True)
        leaver = client(base3, http1=False, http2=True)
        s = leaver.completions.create(model=os.path.basename(smol), prompt="Once upon a time", max_tokens=300,
                                  temperature=0, stream=True)
        first = next(iter(s))
        try:
            c3.completions.create(model=os.path.basename(smol), prompt="x", max_tokens=1)
            check("the same limits as split sessions: over --max-sessions is 503", False)
        except openai.APIStatusError as e:
            check("the same limits as split sessions: over --max-sessions is 503, with Retry-After",
                  e.status_code == 503 and e.response.headers.get("retry-after") == "1", str(e))
        leaver.close()  # closes its connection (httpcore does not reset an abandoned HTTP/2 stream)
        sessions = None
        for _ in range(100):
            sessions = metric(base3, "hinge_edge_sessions", http3)
            if sessions == 0:
                break
            time.sleep(0.1)
        log = open(os.path.join(tmp, "edge-%d.err" % (len(procs) - 1))).read()
        check("a client that left mid-stream: its session is freed",
              first.choices and sessions == 0 and "left mid-generation" in log, str(sessions))
        r = c3.completions.create(model=os.path.basename(smol), prompt=formatted + "<|im_start|>assistant\n",
                                  max_tokens=24, temperature=0)
        check("and the edge serves the next one, exact", r.choices[0].text == want, r.choices[0].text)

        # SIGTERM during a streamed generation: it completes, then the edge exits 0. With curl:
        # httpx (under the openai package) fails every open stream on a GOAWAY, even the ones
        # the GOAWAY lets finish (docs/openai.md).
        want60 = local(smol, "Once upon a time", 60)
        body = json.dumps({"model": os.path.basename(smol), "prompt": "Once upon a time", "max_tokens": 60,
                           "temperature": 0, "stream": True})
        cp = subprocess.Popen(["curl", "-sN", "--max-time", "60", "--http2-prior-knowledge", base3 + "/v1/completions",
                               "-d", body], stdout=subprocess.PIPE, text=True)
        lines = [cp.stdout.readline()]  # the first token's event
        procs[-1].terminate()
        lines += cp.stdout.readlines()
        cp.wait(60)
        events = [json.loads(l[6:]) for l in lines if l.startswith("data: {")]
        text = "".join(e["choices"][0]["text"] for e in events)
        check("SIGTERM mid-generation: the stream completes, exact, then [DONE]",
              want60 != "" and text == want60 and "data: [DONE]\n" in lines, repr(text))
        try:
            rc = procs[-1].wait(30)
        except subprocess.TimeoutExpired:
            rc = None
        check("then the edge exits 0", rc == 0)


try:
    main()
    for i, p in enumerate(procs):  # SIGTERM: each drains and exits 0 (under ASan: without a leak)
        p.terminate()
        try:
            rc = p.wait(30)
        except subprocess.TimeoutExpired:
            rc = None
        check("edge %d exits 0 on SIGTERM" % i, rc == 0, open(os.path.join(tmp, "edge-%d.err" % i)).read()[-2000:])
finally:
    for p in procs:
        p.kill()
        p.wait(10)
    if os.environ.get("KEEP_TMP"):
        print("# kept " + tmp)
    else:
        subprocess.run(["rm", "-rf", tmp])
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
