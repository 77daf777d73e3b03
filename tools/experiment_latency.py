#!/usr/bin/env python3
"""hinge experiment latency: the partitioner's predictions against real runs.

Sweeps cuts x channel profiles x wire codecs x device backends x prompt
lengths, with repetitions, through a real hinge-edge (TLS, a certificate made
here) behind hinge-linkemu emulating each channel, and writes

  OUT/latency.csv    one row per run: every input, predicted and measured
                     TTFT, time per output token, bytes, device energy
  OUT/latency.json   prediction error statistics, chosen k against best k
  OUT/latency_*.png  plots (tools/plot_latency.py, matplotlib)

Progress goes to stderr. docs/experiments.md documents the columns and shows
results. The approach is scripts/bench-partition's: `hinge generate --json`
reports measured times, `hinge partition --json --connected` the predictions
(the connection set-up is in neither); a local run (k = N) does not hash the
model first, so its first pass pays the page faults and is predicted with
--cold-start, and so is every run of a Vulkan device, whose executor is new
in each run.

The predictions are only as good as the profiles: before the sweep one local
run is compared with the device profile's prediction, and a machine that
does not match is reported with the advice to profile it (--profile-first).
"""
import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

# Substituted by meson (tools/meson.build) when it copies this program into
# the build tree; run from the source tree, the paths are found from here.
SOURCE_ROOT = "@SOURCE_ROOT@"
BUILD_ROOT = "@BUILD_ROOT@"

CSV_COLUMNS = [
    "run", "model", "backend", "channel", "cut", "n_layer", "codec", "speculate", "prompt_len", "prompt_tokens",
    "new_tokens", "generated_tokens", "rep", "threads", "edge_threads", "ok", "error",
    "pred_ttft_ms", "pred_tpot_ms", "pred_total_ms", "pred_up_bytes", "pred_down_bytes", "pred_energy_j",
    "ttft_ms", "tpot_ms", "total_ms", "device_ms", "network_ms", "edge_ms", "up_bytes", "down_bytes",
    "steps", "tokens_per_round_trip", "energy_j", "err_ttft", "err_tpot", "err_total", "wall_s",
]
MISMATCH = 0.3  # |measured / predicted - 1| over which the machine does not match its profile


def log(msg):
    print("experiment latency: " + msg, file=sys.stderr, flush=True)


def fail(msg):
    log("error: " + msg)
    sys.exit(1)


def configured(value):
    return value if not value.startswith("@") else None


def find_paths():
    """The programs and data files, from a build tree or an installation."""
    here = os.path.dirname(os.path.realpath(__file__))
    src = configured(SOURCE_ROOT) or os.path.dirname(here)
    build = configured(BUILD_ROOT) or os.environ.get("HINGE_BUILD_DIR") or os.path.join(src, "build")
    paths = {}
    for name, sub in (("hinge", "cli"), ("hinge-edge", "edge"), ("hinge-linkemu", "partition")):
        cands = [os.path.join(build, sub, name)] if build else []
        cands += [os.path.join(here, name), shutil.which(name) or ""]
        found = next((c for c in cands if c and os.access(c, os.X_OK)), None)
        if not found:
            fail("cannot find %s (build hinge with ninja, or install it)" % name)
        paths[name] = found
    share = os.path.join(os.path.dirname(here), "share", "hinge")
    paths["profiles"] = next((d for d in (os.path.join(src, "profiles"), os.path.join(share, "profiles"))
                              if os.path.isdir(d)), None)
    paths["plot"] = next((p for p in (os.path.join(here, "plot_latency.py"), os.path.join(src, "tools", "plot_latency.py"),
                                      os.path.join(share, "tools", "plot_latency.py")) if os.path.exists(p)), None)
    paths["passage"] = os.path.join(src, "tests", "data", "passage.txt")
    return paths


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="hinge experiment latency",
        description="Predicted against measured latency of split runs: a real hinge-edge behind "
                    "hinge-linkemu, for every cut, channel, codec, backend and prompt length.")
    p.add_argument("--model", default=os.environ.get("HINGE_MODEL"), help="GGUF model (default $HINGE_MODEL)")
    p.add_argument("--channels", required=True,
                   help="channel profiles, comma-separated: files, or names in profiles/channels/")
    p.add_argument("--cuts", required=True, help="cuts k, comma-separated (N: local), or 'all'")
    p.add_argument("--codecs", default="f32", help="wire codecs, comma-separated: f32,f16,q8 (default f32)")
    p.add_argument("--backends", default="cpu", help="device backends: cpu,vulkan (default cpu)")
    p.add_argument("--speculate", default="0",
                   help="most draft tokens per decode step of split runs (hinge generate --speculate=D), "
                        "comma-separated; 0: off (default 0)")
    p.add_argument("--prompt-lens", default="32", help="prompt lengths in tokens (default 32)")
    p.add_argument("--reps", type=int, default=1, help="runs of each configuration (default 1)")
    p.add_argument("-n", "--new-tokens", type=int, default=16, help="new tokens per run (default 16)")
    p.add_argument("--threads", type=int, default=1, help="device CPU threads (default 1)")
    p.add_argument("--edge-threads", type=int, default=1, help="hinge-edge threads (default 1)")
    p.add_argument("--device-profile", help="device profile (default profiles/devices/this-machine-BACKEND.json)")
    p.add_argument("--edge-profile", help="edge profile (default profiles/edges/this-machine-cpu.json)")
    p.add_argument("--profile-first", action="store_true",
                   help="measure this machine with hinge profile before the sweep (OUT/profiles/)")
    p.add_argument("--profile-ctx", type=int, default=256, help="positions hinge profile measures (default 256)")
    p.add_argument("--prompt-file", help="text the prompts are cut from (default tests/data/passage.txt)")
    p.add_argument("--no-plots", action="store_true", help="CSV and JSON only")
    p.add_argument("--out", required=True, help="directory for latency.csv, latency.json and the plots")
    a = p.parse_args(argv)
    if not a.model:
        p.error("--model is required (or set $HINGE_MODEL)")
    for name in ("reps", "new_tokens", "threads", "edge_threads"):
        if getattr(a, name) < 1:
            p.error("--%s must be at least 1" % name.replace("_", "-"))
    a.channels = [c for c in a.channels.split(",") if c]
    a.codecs = [c for c in a.codecs.split(",") if c]
    a.backends = [b for b in a.backends.split(",") if b]
    for c in a.codecs:
        if c not in ("f32", "f16", "q8"):
            p.error("unknown codec '%s' (f32, f16, q8)" % c)
    for b in a.backends:
        if b not in ("cpu", "vulkan"):
            p.error("unknown backend '%s' (cpu, vulkan)" % b)
    try:
        a.prompt_lens = [int(x) for x in a.prompt_lens.split(",") if x]
        a.speculate = [int(x) for x in a.speculate.split(",") if x]
    except ValueError:
        p.error("--prompt-lens and --speculate take integers")
    if not a.speculate or min(a.speculate) < 0 or max(a.speculate) > 15:
        p.error("--speculate takes draft counts 0..15")
    if not a.prompt_lens or min(a.prompt_lens) < 1 or not a.channels or not a.codecs or not a.backends:
        p.error("--channels, --codecs, --backends and --prompt-lens need at least one value each")
    return a


def run_json(cmd, what):
    """Runs cmd; its stdout parsed as JSON, or (None, the error)."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        return None, "%s failed: %s" % (what, r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode)
    try:
        return json.loads(r.stdout), None
    except json.JSONDecodeError as e:
        return None, "%s printed no JSON: %s" % (what, e)


class Server:
    """A child process that prints 'listening on 127.0.0.1:PORT' when ready."""

    def __init__(self, cmd, logdir, name):
        self.out = open(os.path.join(logdir, name + ".out"), "w+")
        self.err_path = os.path.join(logdir, name + ".err")
        self.name = name
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=err)
        self.port = self._wait_port()

    def _wait_port(self):
        for _ in range(600):  # 60 s: hinge-edge times each layer at start-up
            self.out.seek(0)
            for line in self.out.read().splitlines():
                if line.startswith("listening on 127.0.0.1:"):
                    return int(line.rsplit(":", 1)[1])
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        fail("%s did not start: %s" % (self.name, open(self.err_path).read().strip()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.out.close()


def channel_file(paths, c):
    if os.path.exists(c):
        return c
    f = os.path.join(paths["profiles"] or "", "channels", c + ".json")
    if not os.path.exists(f):
        fail("no channel profile '%s' (a file, or a name in %s/channels/)" % (c, paths["profiles"]))
    return f


def channel_name(f):
    try:
        return json.load(open(f))["name"]
    except (OSError, ValueError, KeyError) as e:
        fail("channel profile %s: %s" % (f, e))


class Experiment:
    def __init__(self, a, paths, tmp):
        self.a, self.paths, self.tmp = a, paths, tmp
        self.hinge = paths["hinge"]
        self.cert = os.path.join(tmp, "cert.pem")
        self.prompts = {}     # target length -> (text, prompt tokens)
        self.profiles = {}    # backend -> device profile file; "edge" -> edge profile file
        self.pred_cache = {}  # (channel file, backend, codec, P, cold) -> partition JSON
        self.machine = []     # the quick check of each device profile against this machine

    # -- prompts --------------------------------------------------------------
    def local_run(self, prompt, n, backend, extra=()):
        cmd = [self.hinge, "generate", "--model", self.a.model, "--prompt", prompt, "-n", str(n), "--ignore-eos",
               "--temp", "0", "--threads", str(self.a.threads), "--backend", backend, "--json", *extra]
        return run_json(cmd, "hinge generate")

    def make_prompts(self):
        """Prompts of about each target length in tokens, cut from the text at word boundaries."""
        path = self.a.prompt_file or self.paths["passage"]
        try:
            words = open(path).read().split()
        except OSError as e:
            fail("prompt text: %s" % e)
        if not words:
            fail("prompt text %s is empty" % path)
        for target in self.a.prompt_lens:
            nwords = max(1, int(target * 0.7))
            text, got = None, None
            for _ in range(4):  # a few corrections of the words-per-token ratio
                text = " ".join((words * (nwords // len(words) + 1))[:nwords])
                d, err = self.local_run(text, 1, "cpu")
                if d is None:
                    fail(err)
                got = d["prompt_tokens"]
                if abs(got - target) <= max(1, target // 20):
                    break
                nwords = max(1, round(nwords * target / got))
            self.prompts[target] = (text, got)
            log("prompt of %d tokens (target %d)" % (got, target))

    # -- profiles -------------------------------------------------------------
    def profile(self, backend, edge_port):
        out = os.path.join(self.a.out, "profiles", "device-%s.json" % backend)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        log("measuring this machine as a %s device: hinge profile --backend %s" % (backend, backend))
        cmd = [self.hinge, "profile", "--model", self.a.model, "--backend", backend, "--threads", str(self.a.threads),
               "--ctx", str(self.a.profile_ctx), "--edge", "https://127.0.0.1:%d" % edge_port,
               "--cacert", self.cert, "-o", out]
        if subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr).returncode != 0:
            fail("hinge profile failed")
        return out

    def profile_edge(self):
        out = os.path.join(self.a.out, "profiles", "edge.json")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        log("measuring this machine as the edge: hinge profile --role edge")
        cmd = [self.hinge, "profile", "--model", self.a.model, "--role", "edge", "--threads",
               str(self.a.edge_threads), "--ctx", str(self.a.profile_ctx), "-o", out]
        if subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr).returncode != 0:
            fail("hinge profile --role edge failed")
        return out

    def partition(self, chan, backend, codec, P, cold, device=None, edge=None):
        key = (chan, backend, codec, P, cold)
        if key in self.pred_cache and device is None:
            return self.pred_cache[key], None
        cmd = [self.hinge, "partition", "--model", self.a.model, "--device", device or self.profiles[backend],
               "--prompt-len", str(P), "--new-tokens", str(self.a.new_tokens), "--connected", "--json"]
        if chan:
            cmd += ["--channel", chan, "--edge", edge or self.profiles["edge"], "--codecs", codec]
        if cold:
            cmd.append("--cold-start")
        d, err = run_json(cmd, "hinge partition")
        if d is not None and device is None:
            self.pred_cache[key] = d
        return d, err

    def choose_profiles(self, edge_port):
        """Shipped profiles unless --profile-first, or unless they describe another model."""
        a, prof = self.a, self.paths["profiles"] or ""
        edge = a.edge_profile or os.path.join(prof, "edges", "this-machine-cpu.json")
        chan = channel_file(self.paths, a.channels[0])
        for b in a.backends:
            dev = a.device_profile or os.path.join(prof, "devices", "this-machine-%s.json" % b)
            if not a.profile_first:
                d, err = self.partition(chan, b, a.codecs[0], 16, False, device=dev, edge=edge)
                if d is None:
                    log("%s; profiling this machine first (hinge profile)" % err)
            if a.profile_first or d is None:
                dev = self.profile(b, edge_port)
            self.profiles[b] = dev
        if a.profile_first or not all(self.partition(chan, b, a.codecs[0], 16, False, edge=edge)[0]
                                      for b in a.backends):
            self.pred_cache.clear()
            edge = self.profile_edge()
        self.profiles["edge"] = edge

    def check_machine(self):
        """One local run per backend against its profile's prediction (is this the profiled machine?)."""
        text, P = self.prompts[min(self.prompts)]
        for b in self.a.backends:
            d, err = self.local_run(text, self.a.new_tokens, b)
            pred, perr = self.partition(None, b, "f32", P, b == "vulkan")
            if d is None or pred is None:
                fail(err or perr)
            n_layer = len(pred["candidates"]) - 1
            meas, want = d["breakdown"]["tpot_ms"], pred["candidates"][n_layer]["tpot_ms"]
            ratio = meas / want if want > 0 else float("inf")
            ok = abs(ratio - 1) <= MISMATCH
            self.machine.append({"backend": b, "profile": self.profiles[b], "measured_tpot_ms": meas,
                                 "predicted_tpot_ms": want, "ratio": ratio, "matches": ok})
            if not ok and self.a.profile_first:
                log("this machine's speed changed since it was profiled a moment ago (a local token: %.3f ms now, "
                    "%.3f ms in the profile, x%.2f): it is shared with other work, and predictions will be off by "
                    "about as much" % (meas, want, ratio))
            elif not ok:
                log("this machine does not match the profile %s: a local token takes %.3f ms here, the profile "
                    "predicts %.3f ms (x%.2f). Predictions will be off: run `hinge profile --backend %s -o FILE` "
                    "and pass --device-profile FILE, or rerun with --profile-first."
                    % (self.profiles[b], meas, want, ratio, b))
            else:
                log("the %s profile matches this machine (a local token: %.3f ms measured, %.3f predicted)"
                    % (b, meas, want))

    # -- the sweep ------------------------------------------------------------
    def cuts(self, n_layer):
        if self.a.cuts == "all":
            return list(range(n_layer + 1))
        ks = []
        for x in self.a.cuts.split(","):
            k = n_layer if x in ("N", "n") else int(x) if x.isdigit() else -1
            if not 0 <= k <= n_layer:
                fail("cut '%s' is not in 0..%d (or N)" % (x, n_layer))
            ks.append(k)
        return sorted(set(ks))

    def measure(self, text, backend, k, codec, spec, port):
        extra = []
        if port is not None:
            extra = ["--edge", "https://127.0.0.1:%d" % port, "--cacert", self.cert, "--cut", str(k), "--wire", codec]
            extra += ["--speculate=%d" % spec] if spec else []
        err = None
        for _ in range(3):  # a failed run is retried twice
            d, err = self.local_run(text, self.a.new_tokens, backend, extra)
            if d is not None:
                return d, None
            log("run failed, retrying: %s" % err)
        return None, err

    def row(self, ctx, k, codec, spec, rep, pred, d, err, wall):
        chan_doc, n_layer = ctx["chan_doc"], ctx["n_layer"]
        r = {"run": ctx["run"], "model": os.path.basename(self.a.model), "backend": ctx["backend"],
             "channel": ctx["channel"], "cut": k, "n_layer": n_layer, "codec": codec, "speculate": spec,
             "prompt_len": ctx["P_target"],
             "prompt_tokens": ctx["P"], "new_tokens": self.a.new_tokens, "rep": rep, "threads": self.a.threads,
             "edge_threads": self.a.edge_threads, "ok": int(d is not None), "error": err or "",
             "pred_ttft_ms": pred["ttft_ms"], "pred_tpot_ms": pred["tpot_ms"],
             "pred_total_ms": pred["ttft_ms"] + (self.a.new_tokens - 1) * pred["tpot_ms"],
             "pred_up_bytes": pred["up_bytes"], "pred_down_bytes": pred["down_bytes"],
             "pred_energy_j": pred["energy_j"], "wall_s": round(wall, 3)}
        if d is None:
            return r
        b = d["breakdown"]
        total = b["ttft_ms"] + (d["generated_tokens"] - 1) * b["tpot_ms"]
        r.update({"generated_tokens": d["generated_tokens"], "ttft_ms": b["ttft_ms"], "tpot_ms": b["tpot_ms"],
                  "total_ms": total, "device_ms": b["device_ms"], "network_ms": b["network_ms"],
                  "edge_ms": b["edge_ms"], "up_bytes": b["uplink_bytes"], "down_bytes": b["downlink_bytes"],
                  "steps": b["steps"],
                  "tokens_per_round_trip": d["generated_tokens"] / (b["steps"] - 1) if b["steps"] > 1 else "",
                  "energy_j": self.energy(ctx["device_doc"], chan_doc, b, total, k < n_layer)})
        for m in ("ttft", "tpot", "total"):
            meas = r[m + "_ms"]
            r["err_" + m] = r["pred_%s_ms" % m] / meas - 1 if meas > 0 else ""
        return r

    @staticmethod
    def energy(dev, chan, b, total_ms, split):
        """Device energy (J) of a measured run with the profile's power figures: compute while the
        device's layers ran, radio while the bytes were on the air, idle for the rest."""
        def val(doc, key):
            v = doc.get(key, 0.0)
            return v.get("value", 0.0) if isinstance(v, dict) else v
        air_up = b["uplink_bytes"] * 8 / (val(chan, "uplink_mbps") * 1e3) if split else 0.0
        air_down = b["downlink_bytes"] * 8 / (val(chan, "downlink_mbps") * 1e3) if split else 0.0
        idle = max(0.0, total_ms - b["device_ms"] - air_up - air_down)
        return (val(dev, "power_compute_w") * b["device_ms"] + val(dev, "power_tx_w") * air_up +
                val(dev, "power_rx_w") * air_down + val(dev, "power_idle_w") * idle) / 1e3

    def configs(self, k, n_layer):
        """(codec, speculate) of the runs at cut k: a local run has neither a wire nor an edge to verify drafts."""
        if k == n_layer:
            return [("none", 0)]
        return [(c, s) for c in self.a.codecs for s in self.a.speculate]

    def sweep_channel(self, chan, edge_port, rows, progress):
        a = self.a
        name = channel_name(chan)
        emu = Server([self.paths["hinge-linkemu"], "--upstream", "127.0.0.1:%d" % edge_port, "--channel", chan],
                     self.tmp, "linkemu-" + name)
        try:
            for backend in a.backends:
                device_doc = json.load(open(self.profiles[backend]))
                for P_target in a.prompt_lens:
                    text, P = self.prompts[P_target]
                    preds = {}
                    for codec in a.codecs:
                        for cold in (False, True):
                            d, err = self.partition(chan, backend, codec, P, cold)
                            if d is None:
                                fail(err)
                            preds[codec, cold] = d["candidates"]
                    n_layer = len(preds[a.codecs[0], False]) - 1
                    ctx = {"backend": backend, "channel": name, "chan_doc": json.load(open(chan)),
                           "device_doc": device_doc, "n_layer": n_layer, "P_target": P_target, "P": P}
                    cuts = self.cuts(n_layer)
                    for rep in range(1, a.reps + 1):
                        # alternate the sweep's direction so that a slow spell of a shared host
                        # does not always land on the same cuts
                        for k in (cuts if rep % 2 else cuts[::-1]):
                            for codec, spec in self.configs(k, n_layer):
                                cold = backend == "vulkan" or k == n_layer
                                pred = preds[a.codecs[0] if codec == "none" else codec, cold][k]
                                t0 = time.monotonic()
                                d, err = self.measure(text, backend, k, codec, spec, emu.port if k < n_layer else None)
                                ctx["run"] = len(rows) + 1
                                r = self.row(ctx, k, codec, spec, rep, pred, d, err, time.monotonic() - t0)
                                rows.append(r)
                                progress(r)
        finally:
            emu.stop()
            for line in open(emu.err_path).read().splitlines():
                log(line)


def fmt_progress(total):
    def progress(r):
        what = "[%d/%d] %s %s k=%d %s%s" % (r["run"], total, r["channel"], r["backend"], r["cut"], r["codec"],
                                           " speculate=%d" % r["speculate"] if r["speculate"] else "")
        if r["ok"]:
            log("%s P=%d rep %d: TTFT %.1f ms (predicted %.1f), TPOT %.2f ms (predicted %.2f)%s"
                % (what, r["prompt_tokens"], r["rep"], r["ttft_ms"], r["pred_ttft_ms"], r["tpot_ms"], r["pred_tpot_ms"],
                   ", %.2f tokens/round trip" % r["tokens_per_round_trip"] if r["speculate"] else ""))
        else:
            log("%s: failed: %s" % (what, r["error"]))
    return progress


def error_stats(xs):
    xs = sorted(abs(x) for x in xs)
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "median_abs": statistics.median(xs), "mean_abs": statistics.fmean(xs),
            "p90_abs": xs[min(len(xs) - 1, int(0.9 * len(xs)))], "max_abs": xs[-1],
            "within_20pct": sum(1 for x in xs if x <= 0.2) / len(xs)}


def summarize(rows, a, paths, exp, elapsed):
    ok = [r for r in rows if r["ok"]]
    groups = {}
    for r in ok:
        groups.setdefault((r["channel"], r["backend"], r["prompt_len"]), []).append(r)
    choices = []
    for (ch, b, P), rs in sorted(groups.items()):
        configs = {}
        for r in rs:
            configs.setdefault((r["cut"], r["codec"], r["speculate"]), []).append(r)
        meas = {c: statistics.median(x["total_ms"] for x in v) for c, v in configs.items()}
        pred = {c: v[0]["pred_total_ms"] for c, v in configs.items()}
        chosen, best = min(pred, key=pred.get), min(meas, key=meas.get)
        choices.append({"channel": ch, "backend": b, "prompt_len": P, "chosen_cut": chosen[0],
                        "chosen_codec": chosen[1], "chosen_speculate": chosen[2], "chosen_total_ms": meas[chosen],
                        "best_cut": best[0], "best_codec": best[1], "best_speculate": best[2],
                        "best_total_ms": meas[best], "regret": meas[chosen] / meas[best] - 1})
    regrets = [c["regret"] for c in choices]
    return {
        "experiment": "latency",
        "model": a.model,
        "inputs": {"channels": a.channels, "cuts": a.cuts, "codecs": a.codecs, "speculate": a.speculate,
                   "backends": a.backends,
                   "prompt_lens": a.prompt_lens, "reps": a.reps, "new_tokens": a.new_tokens, "threads": a.threads,
                   "edge_threads": a.edge_threads},
        "profiles": exp.profiles,
        "machine_check": exp.machine,
        "runs": len(rows),
        "failed_runs": len(rows) - len(ok),
        "prediction_error": {m: error_stats([r["err_" + m] for r in ok if r["err_" + m] != ""])
                             for m in ("ttft", "tpot", "total")},
        "choices": choices,
        "regret": {"max": max(regrets), "mean": statistics.fmean(regrets)} if regrets else {},
        "elapsed_s": round(elapsed, 1),
    }


def plot(paths, out):
    """The plots, by tools/plot_latency.py under a Python that has matplotlib (Debian's
    python3-matplotlib lives in /usr/bin/python3, which need not be the python3 on PATH)."""
    if not paths["plot"]:
        fail("cannot find plot_latency.py")
    for py in (sys.executable, "/usr/bin/python3"):
        if os.access(py, os.X_OK) and subprocess.run([py, "-c", "import matplotlib"], stderr=subprocess.DEVNULL).returncode == 0:
            r = subprocess.run([py, paths["plot"], os.path.join(out, "latency.csv"), out], stdout=subprocess.PIPE,
                               text=True)
            if r.returncode != 0:
                fail("plot_latency.py failed")
            return r.stdout.split()
    fail("matplotlib is missing: install the Debian package python3-matplotlib (scripts/setup does)")


def main(argv):
    a = parse_args(argv)
    paths = find_paths()
    if not os.path.exists(a.model):
        fail("no model at %s" % a.model)
    os.makedirs(a.out, exist_ok=True)
    start = time.monotonic()
    chans = [channel_file(paths, c) for c in a.channels]
    with tempfile.TemporaryDirectory(prefix="hinge-experiment-latency-") as tmp:
        exp = Experiment(a, paths, tmp)
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                            "-keyout", os.path.join(tmp, "key.pem"), "-out", exp.cert], capture_output=True)
        if r.returncode != 0:
            fail("openssl could not make a certificate: %s" % r.stderr.decode(errors="replace"))
        edge = Server([paths["hinge-edge"], "--model", a.model, "--listen", "127.0.0.1:0", "--cert", exp.cert,
                       "--key", os.path.join(tmp, "key.pem"), "--threads", str(a.edge_threads), "--log-level", "warn"],
                      tmp, "edge")
        rows = []
        try:
            exp.make_prompts()
            exp.choose_profiles(edge.port)
            exp.check_machine()
            n_layer = len(exp.partition(chans[0], a.backends[0], a.codecs[0], 16, False)[0]["candidates"]) - 1
            cuts = exp.cuts(n_layer)
            per_cfg = sum(len(exp.configs(k, n_layer)) for k in cuts)
            total = per_cfg * len(chans) * len(a.backends) * len(a.prompt_lens) * a.reps
            log("%d runs: %d channel(s) x %d backend(s) x %d prompt length(s) x %d rep(s) x %d (cut, codec, speculate)"
                % (total, len(chans), len(a.backends), len(a.prompt_lens), a.reps, per_cfg))
            for chan in chans:
                exp.sweep_channel(chan, edge.port, rows, fmt_progress(total))
        finally:
            edge.stop()
    csv_path = os.path.join(a.out, "latency.csv")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS, restval="")
        w.writeheader()
        w.writerows(rows)
    summary = summarize(rows, a, paths, exp, time.monotonic() - start)
    summary["files"] = ["latency.csv", "latency.json"] + ([] if a.no_plots else plot(paths, a.out))
    with open(os.path.join(a.out, "latency.json"), "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    e = summary["prediction_error"]
    if e["ttft"]["n"]:
        log("predictions within 20%%: TTFT %.0f%% of %d runs (median error %.0f%%), TPOT %.0f%% (median error %.0f%%)"
            % (100 * e["ttft"]["within_20pct"], e["ttft"]["n"], 100 * e["ttft"]["median_abs"],
               100 * e["tpot"]["within_20pct"], 100 * e["tpot"]["median_abs"]))
    for c in summary["choices"]:
        log("%s %s P=%d: chosen k=%d %s (%.1f ms), best k=%d %s (%.1f ms), regret %.1f%%"
            % (c["channel"], c["backend"], c["prompt_len"], c["chosen_cut"], c["chosen_codec"], c["chosen_total_ms"],
               c["best_cut"], c["best_codec"], c["best_total_ms"], 100 * c["regret"]))
    log("wrote %s in %s" % (", ".join(summary["files"]), a.out))
    return 1 if summary["failed_runs"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
