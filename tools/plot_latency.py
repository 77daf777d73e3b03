#!/usr/bin/python3
"""Plots of `hinge experiment latency`'s CSV (matplotlib).

  plot_latency.py OUT/latency.csv OUTDIR

writes, and prints the names of:
  latency_vs_k.png    per channel: measured (median of the reps) and predicted
                      end-to-end time (TTFT + (n - 1) TPOT) against the cut k
  latency_error.png   prediction error (predicted / measured - 1) of TTFT and
                      TPOT against k, one point per run
  latency_choice.png  the cut the partitioner chose against the measured best
                      cut, one point per (channel, backend, prompt length)
"""
import csv
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def load(path):
    rows = [r for r in csv.DictReader(open(path)) if r["ok"] == "1"]
    for r in rows:
        for c in ("cut", "n_layer", "prompt_len", "speculate"):
            r[c] = int(r[c])
        for c in ("ttft_ms", "tpot_ms", "total_ms", "pred_ttft_ms", "pred_tpot_ms", "pred_total_ms",
                  "err_ttft", "err_tpot"):
            r[c] = float(r[c])
    return rows


def series(rows):
    """channel -> (codec, backend, prompt_len, speculate) -> cut -> [rows]"""
    out = {}
    for r in rows:
        if r["codec"] != "none":
            out.setdefault(r["channel"], {}).setdefault((r["codec"], r["backend"], r["prompt_len"], r["speculate"]),
                                                        {}).setdefault(r["cut"], []).append(r)
    for r in rows:
        if r["codec"] == "none":  # k = N (local) ends every codec's curve
            for (_, b, P, _), by_cut in out.get(r["channel"], {}).items():
                if (b, P) == (r["backend"], r["prompt_len"]):
                    by_cut.setdefault(r["cut"], []).append(r)
    return out


def finish_axes(ax, title, xlabel, ylabel):
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # cuts are whole layers
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_vs_k(rows, path):
    per_chan = series(rows)
    fig, axes = plt.subplots(1, max(1, len(per_chan)), figsize=(5 * max(1, len(per_chan)), 4), squeeze=False)
    for ax, (chan, per) in zip(axes[0], sorted(per_chan.items())):
        for i, (key, by_cut) in enumerate(sorted(per.items())):
            ks = sorted(by_cut)
            color = "C%d" % (i % 10)
            label = "%s %s P=%d" % key[:3] + (" speculate=%d" % key[3] if key[3] else "")
            ax.plot(ks, [statistics.median(r["total_ms"] for r in by_cut[k]) for k in ks], "o-", color=color,
                    label=label + " measured")
            ax.plot(ks, [by_cut[k][0]["pred_total_ms"] for k in ks], "x--", color=color, label=label + " predicted")
        finish_axes(ax, chan, "cut k (layers on the device)", "end-to-end time (ms)")
    save(fig, path)


def plot_error(rows, path):
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    chans = sorted({r["channel"] for r in rows})
    for ax, m in zip(axes, ("ttft", "tpot")):
        for i, ch in enumerate(chans):
            rs = [r for r in rows if r["channel"] == ch]
            # a small offset per channel keeps the points of one k apart
            ax.plot([r["cut"] + 0.08 * (i - len(chans) / 2) for r in rs], [100 * r["err_" + m] for r in rs], "o",
                    color="C%d" % (i % 10), label=ch, alpha=0.7)
        ax.axhline(0, color="black", linewidth=0.8)
        for y in (-20, 20):
            ax.axhline(y, color="grey", linewidth=0.6, linestyle=":")
        finish_axes(ax, "%s prediction error" % m.upper(), "cut k", "predicted / measured - 1 (%)")
    save(fig, path)


def plot_choice(rows, path):
    groups = {}
    for r in rows:
        groups.setdefault((r["channel"], r["backend"], r["prompt_len"]), []).append(r)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    n_layer = max(r["n_layer"] for r in rows)
    for i, (key, rs) in enumerate(sorted(groups.items())):
        off = 0.12 * (i - (len(groups) - 1) / 2)  # groups with the same (best, chosen) stay visible
        cfg = {}
        for r in rs:
            cfg.setdefault((r["cut"], r["codec"], r["speculate"]), []).append(r)
        chosen = min(cfg, key=lambda c: cfg[c][0]["pred_total_ms"])
        best = min(cfg, key=lambda c: statistics.median(r["total_ms"] for r in cfg[c]))
        ax.plot(best[0] + off, chosen[0] + off, "o", markersize=9, color="C%d" % (i % 10), alpha=0.7, label="%s %s P=%d" % key)
    ax.plot([0, n_layer], [0, n_layer], color="grey", linewidth=0.8, linestyle="--")
    ax.set_xlim(-0.5, n_layer + 0.5)
    ax.set_ylim(-0.5, n_layer + 0.5)
    finish_axes(ax, "the partitioner's choice", "best k (least measured time)", "chosen k (least predicted time)")
    save(fig, path)


def main(argv):
    if len(argv) != 3:
        print("usage: plot_latency.py LATENCY.CSV OUTDIR", file=sys.stderr)
        return 2
    rows = load(argv[1])
    if not rows:
        print("plot_latency.py: no successful run in %s" % argv[1], file=sys.stderr)
        return 1
    plots = (("latency_vs_k.png", plot_vs_k), ("latency_error.png", plot_error), ("latency_choice.png", plot_choice))
    for name, fn in plots:
        fn(rows, os.path.join(argv[2], name))
        print(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
