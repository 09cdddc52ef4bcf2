"""Draws the benchmark suite's results side by side: throughput, latency, memory.

Each group of bars (a run) holds only the systems that took part in it: Spark
sits out the words run, Kafka Streams runs nothing else.

Usage: python bench/chart.py bench/results/latest.json bench/results/latest.png
(bench/cmd/suite runs it with the bench venv's python after every run).
"""

import json
import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"ceiling": "#9e9e9e", "gostream": "#00add8", "gostream-cluster": "#5dc9e2", "spark": "#e25a1c", "kstreams": "#6a3d9a"}
LABELS = {"ceiling": "ceiling (raw consumer; Kafka alone in latency)", "spark": "Spark", "kstreams": "Kafka Streams"}
SYSTEMS = ["ceiling", "gostream", "gostream-cluster", "spark", "kstreams"]


def group_label(run, repeats):
    """The x label of a run: the words run says its split, latency-RATE its
    rate, the throughput run of how many runs its figures are the median."""
    if run == "throughput" and repeats > 1:
        return f"throughput\n(median of {repeats})"
    if run == "words":
        return "words\n(lowercase, split on \\W+)"
    if run.startswith("latency-") and run[8:].isdigit():
        return f"latency\n{int(run[8:]) // 1000}k/s"
    return run


def bars(ax, groups, values, title, ylabel, fmt, repeats=1):
    """Grouped bars: one group per entry of groups, one bar per system in values
    that has a result in that group (None: it did not take part), "n/a" for a
    result without the figure (NaN)."""
    systems = [s for s in SYSTEMS if s in values]
    width = 0.8 / max(len(systems), 1)
    labelled = set()
    for g in range(len(groups)):
        present = [s for s in systems if values[s][g] is not None]
        for i, system in enumerate(present):
            y = values[system][g]
            x = g + (i - (len(present) - 1) / 2) * width
            label = None if system in labelled else LABELS.get(system, system)
            labelled.add(system)
            known = not math.isnan(y) and y > 0
            drawn = ax.bar([x], [y if known else 0], width, label=label, color=COLORS[system])
            ax.bar_label(drawn, labels=[fmt(y) if known else "n/a"], fontsize=8, padding=2)
    if not groups:
        ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes, color="gray")
    positive = [y for ys in values.values() for y in ys if y is not None and y > 0]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("log")
        ylabel += " (log scale)"
    ax.set_xticks(range(len(groups)), [group_label(g, repeats) for g in groups])
    ax.set_title(title, fontweight="bold")
    ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    ax.margins(y=0.15)


def figure(result, field, scale=1.0):
    """The field of a result, scaled; NaN when the result lacks it, None when there is no result."""
    if result is None:
        return None
    v = result.get(field)
    return v * scale if v is not None else math.nan


def series(results, runs, field, scale=1.0):
    """values[system] = [figure of field in each run, None where the system did not take part]."""
    by = {(r["system"], r["run"]): r for r in results}
    out = {}
    for system in SYSTEMS:
        row = [figure(by.get((system, run)), field, scale) for run in runs]
        if any(v is not None for v in row):
            out[system] = row
    return out


def main(src, dst):
    with open(src, encoding="utf-8") as f:
        report = json.load(f)
    results = report["results"]
    runs = list(dict.fromkeys(r["run"] for r in results))
    bulk = [r for r in runs if not r.startswith("latency")]
    latency = [r for r in runs if r.startswith("latency")]

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    repeats = report.get("config", {}).get("throughput_repeats", 1)
    bars(axes[0], bulk, series(results, bulk, "records_per_sec", 1e-3),
         "Throughput (whole run, higher is better)", "thousand records/s", lambda v: f"{v:,.0f}k" if v >= 10 else f"{v:.2g}k", repeats)

    by = {(r["system"], r["run"]): r for r in results}
    lat_systems = [s for s in SYSTEMS if any((s, run) in by for run in latency)]
    lat_groups, lat_values = [], {s: [] for s in lat_systems}
    for run in latency:
        for pct in ("p50", "p99"):
            lat_groups.append(f"{int(run.split('-')[1]) // 1000}k/s {pct}")
            for system in lat_systems:
                lat_values[system].append(figure(by.get((system, run)), f"latency_{pct}_ms"))
    lat_repeats = report.get("config", {}).get("latency_repeats", 1)
    lat_title = "Produce-to-output latency (lower is better)"
    if lat_repeats > 1:
        lat_title += f"\nmedian run by p99 of {lat_repeats}"
    bars(axes[1], lat_groups, lat_values, lat_title, "ms", lambda v: f"{v:,.0f}")

    bars(axes[2], runs, series(results, runs, "peak_rss_bytes", 1 / 2**20),
         "Peak RSS, whole process tree (lower is better)", "MiB", lambda v: f"{v:,.0f}", repeats)

    m = report.get("machine", {})
    config = report.get("config", {})
    ran = {r["system"] for r in results}
    rivals = [f"Spark {m.get('spark', '')}"] if "spark" in ran else []
    if "kstreams" in ran:
        rivals.append(f"Kafka Streams {m.get('kafka_streams', '')}")
    lines = []
    if "throughput" in runs:
        lines.append(f"throughput {config.get('records', 0):,} lines")
    if "words" in runs:
        lines.append(f"words {config.get('words_records', 0):,} lines")
    fig.suptitle(f"gostream vs {' and '.join(rivals) or 'Kafka alone'} word count on Kafka {m.get('kafka', '')}: "
                 f"{', '.join(lines) or 'no bulk run'}; {m.get('cores', '?')} cores, {m.get('cpu', '')}", fontsize=11)
    # One legend for the three panels, under them: inside a panel it hid bars.
    handles = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
