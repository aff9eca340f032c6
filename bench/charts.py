#!/usr/bin/env python
"""PNG charts from a run's raw results (bench/results/run-*.json), for bench/RESULTS.md.

    bench/.venv-bench/bin/python bench/charts.py bench/results/run-latest.json [--out DIR]

- ``latency_cdf.png``: delivery latency CDF per server, from the fan-out phases' CDFs
  (``latency_cdf``: [fraction, ms] pairs kept by bench/samples.py), one panel for the
  fixed-rate run and one for the as-fast-as-it-keeps-up run;
- ``sweep.png``: delivered msgs/s and server CPU per 1000 deliveries against receivers
  (10 to 10,000) per server, log-log;
- ``memory.png``: server RSS and RSS per connection against idle connections held (up to
  100k), from bench/idle.py's steps;
- ``workers.png``: CPU per 1000 deliveries and throughput, one worker against two;
- ``scenario.png``: the many-room ladder, delivery p99 and server CPU against the message
  rate per server, with the 100 ms line.

A chart whose data the run lacks is not drawn. matplotlib with the Agg backend (no display).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SERVER_STYLE = {
    "parley": ("#1f77b4", "o"),
    "bare": ("#7f7f7f", "s"),
    "daphne-memory": ("#d62728", "^"),
    "daphne-redis": ("#ff7f0e", "v"),
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _style(name: str) -> dict:
    color, marker = SERVER_STYLE.get(name, (None, "D"))
    return {"color": color, "marker": marker, "label": name}


def _log_x(ax, axis: str = "x") -> None:
    """A log axis labelled in plain numbers (1, 2, 5, 10, ...), minor ticks unlabelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.10g}"))
    target.set_minor_formatter(NullFormatter())


def latency_cdf(phases: dict, path: Path) -> bool:
    panels = []
    for key, title in (("latency", "fixed rate"), ("fanout_ws", "as fast as receivers keep up")):
        runs = {n: r for n, r in (phases.get(key) or {}).items() if r.get("latency_cdf")}
        if runs:
            panels.append((title, runs))
    if not panels:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (title, runs) in zip(axes[0], panels, strict=True):
        for name, run in runs.items():
            points = run["latency_cdf"]
            xs = [max(ms, 0.01) for _f, ms in points]
            ys = [f * 100 for f, _ms in points]
            style = _style(name)
            ax.plot(xs, ys, color=style["color"], label=f"{name} ({run['mode']})", linewidth=1.8)
        first = next(iter(runs.values()))
        ax.set_title(f"{first['receivers']} receivers, {title}")
        _log_x(ax)
        ax.set_xlabel("delivery latency (ms, log scale)")
        ax.set_ylabel("deliveries at or below (%)")
        ax.set_ylim(0, 100.5)
        ax.axhline(99, color="#999999", linewidth=0.8, linestyle="--", label="p99")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("Delivery latency CDF (send to receiver's read)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def sweep(phases: dict, path: Path) -> bool:
    runs = phases.get("sweep") or {}
    if not runs:
        return False
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for name, by_n in runs.items():
        sizes = sorted(by_n, key=int)
        xs = [int(n) for n in sizes]
        style = _style(name)
        left.plot(xs, [by_n[n]["delivered_per_s"] for n in sizes], **style)
        right.plot(xs, [by_n[n]["cpu_s_per_1000"] * 1000 for n in sizes], **style)
    left.set_title("Throughput (one room, one sender)")
    left.set_ylabel("delivered messages per second (log)")
    right.set_title("Server CPU per delivery")
    right.set_ylabel("server CPU ms per 1000 deliveries (log)")
    for ax in (left, right):
        _log_x(ax)
        _log_x(ax, "y")
        ax.set_xlabel("receivers in the room (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def memory(phases: dict, path: Path) -> bool:
    runs = {n: r for n, r in ((phases.get("idle") or {}).get("runs") or {}).items()
            if r.get("steps")}  # fmt: skip
    if not runs:
        return False
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for name, run in runs.items():
        steps = run["steps"]
        xs = [s["held"] for s in steps]
        style = _style(name)
        left.plot(xs, [s["rss_mib"] for s in steps], **style)
        right.plot(xs, [s["rss_per_conn_kib"] for s in steps], **style)
    left.set_title("Server resident memory")
    left.set_ylabel("RSS (MiB)")
    right.set_title("Memory per connection")
    right.set_ylabel("RSS growth per connection (KiB)")
    top = max(s["rss_per_conn_kib"] for run in runs.values() for s in run["steps"])
    right.set_ylim(0, top * 1.3)  # room for the legend above the lines
    rss = [s["rss_mib"] for run in runs.values() for s in run["steps"]]
    if max(rss) > 10 * min(rss):  # 10k to 100k connections: a log axis; a few k: linear
        _log_x(left, "y")
    for ax in (left, right):
        _log_x(ax)
        ax.set_xlabel("idle WebSockets held by one process (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def workers(phases: dict, path: Path) -> bool:
    w = phases.get("workers") or {}
    cpu, thr = w.get("cpu") or {}, w.get("throughput") or {}
    if not cpu and not thr:
        return False
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = ["#1f77b4", "#9467bd", "#2ca02c"]
    bars = left.bar(list(cpu), [r["cpu_s_per_1000"] * 1000 for r in cpu.values()], color=colors)
    left.bar_label(bars, fmt="%.1f")
    first = next(iter(cpu.values()), None)
    where = f"\n({first['receivers']} receivers, {first['mode']}, not pinned)" if first else ""
    left.set_title("CPU per delivery at a fixed rate" + where)
    left.set_ylabel("server CPU ms per 1000 deliveries")
    bars = right.bar(list(thr), [r["delivered_per_s"] for r in thr.values()], color=colors[::2])
    right.bar_label(bars, fmt="%.0f")
    right.set_title("Throughput, servers on core 0, clients on core 1")
    right.set_ylabel("delivered messages per second")
    for ax in (left, right):
        ax.set_xlabel("configuration (workers, bus)")
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def scenario(phases: dict, path: Path) -> bool:
    runs = [r for r in (phases.get("scenario") or {}).get("runs", []) if r.get("steps")]
    if not runs:
        return False
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in runs:
        steps = run["steps"]
        rates = [s["rate_target"] for s in steps]
        style = _style(run["server"]) | {"label": f"{run['server']} ({run['users']:,} users)"}
        left.plot(rates, [s["p99_ms"] for s in steps], **style)
        right.plot(rates, [s["server_cpu_share"] * 100 for s in steps], **style)
    left.axhline(100, color="#2ca02c", linestyle="--", linewidth=1, label="p99 limit, 100 ms")
    _log_x(left)
    _log_x(left, "y")
    left.set_title("Delivery latency p99 against the message rate")
    left.set_ylabel("p99 ms (send to read)")
    _log_x(right)
    right.set_ylim(0, 105)
    right.set_title("Server CPU against the message rate")
    right.set_ylabel("server CPU, % of one core")
    for ax in (left, right):
        ax.set_xlabel("messages per second, all rooms")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


CHARTS = {"latency_cdf": latency_cdf, "sweep": sweep, "memory": memory, "workers": workers,
          "scenario": scenario}  # fmt: skip


def make_charts(results: dict, out_dir: Path) -> dict[str, Path]:
    """Every chart the results have data for, as ``out_dir/<name>.png``: name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    phases = results.get("phases", {})
    made = {}
    for name, draw in CHARTS.items():
        path = out_dir / f"{name}.png"
        if draw(phases, path):
            made[name] = path
        else:
            path.unlink(missing_ok=True)  # a chart of an older run must not pass for this one
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("results", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)
    for name, path in make_charts(json.loads(args.results.read_text()), args.out).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
