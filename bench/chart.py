"""Draws the benchmark suite's results side by side: throughput, latency, memory.

Usage: python bench/chart.py bench/results/latest.json bench/results/latest.png
(bench/cmd/suite runs it with the bench venv's python after every run).
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"ceiling": "#9e9e9e", "gostream": "#00add8", "spark": "#e25a1c"}
SYSTEMS = ["ceiling", "gostream", "spark"]


def bars(ax, groups, values, title, ylabel, fmt):
    """Grouped bars: one group per entry of groups, one bar per system in values."""
    systems = [s for s in SYSTEMS if s in values]
    width = 0.8 / max(len(systems), 1)
    for i, system in enumerate(systems):
        xs = [g + (i - (len(systems) - 1) / 2) * width for g in range(len(groups))]
        ys = values[system]
        drawn = ax.bar(xs, [y or 0 for y in ys], width, label=system, color=COLORS[system])
        ax.bar_label(drawn, labels=[fmt(y) if y else "n/a" for y in ys], fontsize=8, padding=2)
    if not groups:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="gray")
    positive = [y for ys in values.values() for y in ys if y]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("log")
        ylabel += " (log scale)"
    ax.set_xticks(range(len(groups)), groups)
    ax.set_title(title, fontweight="bold")
    ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(y=0.15)
    if systems:
        ax.legend(frameon=False, fontsize=8)


def series(results, runs, field, scale=1.0):
    """values[system] = [field of that system's result in each run, or None]."""
    by = {(r["system"], r["run"]): r for r in results}
    out = {}
    for system in SYSTEMS:
        row = [by.get((system, run), {}).get(field) for run in runs]
        if any(v is not None for v in row):
            out[system] = [v * scale if v is not None else None for v in row]
    return out


def main(src, dst):
    with open(src, encoding="utf-8") as f:
        report = json.load(f)
    results = report["results"]
    runs = list(dict.fromkeys(r["run"] for r in results))
    bulk = [r for r in runs if not r.startswith("latency")]
    latency = [r for r in runs if r.startswith("latency")]

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    bars(axes[0], bulk, series(results, bulk, "records_per_sec", 1e-3),
         "Throughput (whole run, higher is better)", "thousand records/s", lambda v: f"{v:,.0f}k" if v >= 10 else f"{v:.2g}k")

    by = {(r["system"], r["run"]): r for r in results}
    lat_systems = [s for s in SYSTEMS if any((s, run) in by for run in latency)]
    lat_groups, lat_values = [], {s: [] for s in lat_systems}
    for run in latency:
        for pct in ("p50", "p99"):
            lat_groups.append(f"{int(run.split('-')[1]) // 1000}k/s {pct}")
            for system in lat_systems:
                lat_values[system].append(by.get((system, run), {}).get(f"latency_{pct}_ms"))
    bars(axes[1], lat_groups, lat_values,
         "Produce-to-output latency (lower is better)", "ms", lambda v: f"{v:,.0f}")

    bars(axes[2], runs, series(results, runs, "peak_rss_bytes", 1 / 2**20),
         "Peak RSS, whole process tree (lower is better)", "MiB", lambda v: f"{v:,.0f}")

    m = report.get("machine", {})
    n = report.get("config", {}).get("records")
    fig.suptitle(f"gostream vs Spark {m.get('spark', '')} word count on Kafka {m.get('kafka', '')}: "
                 f"{n:,} lines, {m.get('cores', '?')} cores, {m.get('cpu', '')}", fontsize=11)
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
