#!/usr/bin/env python3
"""hinge experiment latency on stories260K, two channels and two cuts: the
CSV has the documented columns and one row per run, the JSON summary holds
the error statistics and the choices, and the plots are PNG files.

  test_experiment_latency.py HINGE MODEL
"""
import csv
import json
import os
import struct
import subprocess
import sys
import tempfile

COLUMNS = [  # docs/experiments.md documents each
    "run", "model", "backend", "channel", "cut", "n_layer", "codec", "speculate", "prompt_len", "prompt_tokens",
    "new_tokens", "generated_tokens", "rep", "threads", "edge_threads", "ok", "error",
    "pred_ttft_ms", "pred_tpot_ms", "pred_total_ms", "pred_up_bytes", "pred_down_bytes", "pred_energy_j",
    "ttft_ms", "tpot_ms", "total_ms", "device_ms", "network_ms", "edge_ms", "up_bytes", "down_bytes",
    "steps", "tokens_per_round_trip", "energy_j", "err_ttft", "err_tpot", "err_total", "wall_s",
]


def check(cond, what):
    if not cond:
        print("FAIL: " + what, file=sys.stderr)
        sys.exit(1)


def png_size(path):
    """(width, height) from the IHDR chunk of a PNG file; None when it is not one."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def main(hinge, model):
    with tempfile.TemporaryDirectory(prefix="test-experiment-latency-") as out:
        cmd = [hinge, "experiment", "latency", "--model", model, "--channels", "6g-subthz-vision,wifi6",
               "--cuts", "1,N", "--codecs", "f32", "--prompt-lens", "12", "--reps", "1", "-n", "4", "--out", out]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=240)
        sys.stderr.write(r.stderr)
        check(r.returncode == 0, "hinge experiment latency exited with %d" % r.returncode)
        # stories260K is not the model of the shipped profiles: the command must notice and profile
        check("profiling this machine first" in r.stderr, "no notice that the shipped profiles do not fit")
        check("[4/4]" in r.stderr, "no progress lines on stderr")

        rows = list(csv.DictReader(open(os.path.join(out, "latency.csv"))))
        with open(os.path.join(out, "latency.csv")) as f:
            check(next(csv.reader(f)) == COLUMNS, "CSV header differs from the documented columns")
        check(len(rows) == 4, "%d CSV rows, want 4 (2 channels x 2 cuts)" % len(rows))
        check({(r["channel"], r["cut"]) for r in rows} ==
              {(c, k) for c in ("6g-subthz-vision", "wifi6") for k in ("1", "5")}, "CSV rows cover the wrong runs")
        for r in rows:
            check(r["ok"] == "1", "run %s failed: %s" % (r["run"], r["error"]))
            check(r["codec"] == ("none" if r["cut"] == "5" else "f32"), "codec of run %s" % r["run"])
            check(float(r["ttft_ms"]) > 0 and float(r["tpot_ms"]) > 0, "run %s has no times" % r["run"])
            check(float(r["pred_ttft_ms"]) > 0 and float(r["pred_energy_j"]) > 0, "run %s has no prediction" % r["run"])
            check(int(r["generated_tokens"]) == 4, "run %s generated %s tokens" % (r["run"], r["generated_tokens"]))
            split = r["cut"] == "1"
            check((int(r["up_bytes"]) > 0) == split and (float(r["network_ms"]) > 0) == split,
                  "run %s: bytes or network time do not fit its cut" % r["run"])

        s = json.load(open(os.path.join(out, "latency.json")))
        check(s["runs"] == 4 and s["failed_runs"] == 0, "JSON run counts")
        check(s["prediction_error"]["ttft"]["n"] == 4, "JSON TTFT error statistics")
        check(len(s["choices"]) == 2 and all(c["chosen_cut"] in (1, 5) and c["best_cut"] in (1, 5)
                                             for c in s["choices"]), "JSON choices")
        pngs = [f for f in s["files"] if f.endswith(".png")]
        check(len(pngs) == 3, "want 3 plots, the JSON lists %s" % pngs)
        for p in pngs:
            size = png_size(os.path.join(out, p))
            check(size is not None, "%s is not a PNG file" % p)
            check(200 <= size[0] <= 4000 and 200 <= size[1] <= 4000, "%s is %dx%d" % (p, *size))
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
