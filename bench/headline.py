"""The README's performance table, from one ``make bench`` run's results.

run_all.py rewrites the part of README.md between the ``bench`` markers after every full
run, so the summary there and bench/RESULTS.md always come from the same run;
``bench/.venv-bench/bin/python bench/headline.py --json bench/results/run-X.json --write``
does it by hand. Only what a reader compares at a glance is here; every figure has its
full table, its peers and its goal in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from report import CHART_TITLES, replace_marked
from targets import _events_per_s, get, ratio

BENCH = Path(__file__).resolve().parent
README = BENCH.parent / "README.md"
START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def _f(x, digits: int = 0) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if digits == 0 or abs(x) >= 100:
        return f"{round(x):,}"
    return f"{x:,.{digits}f}"


def _x(x) -> str:
    return "-" if x is None else f"{x:.2f}x" if x < 10 else f"{x:.0f}x"


def rows(results: dict) -> list[list[str]]:
    """[measure, Parley, Daphne + Channels, floor or other peer, Parley against them]."""
    p = results.get("phases", {})
    out = []
    fan = p.get("fanout_ws") or {}
    pa, dm, dr, bare = (fan.get(k) for k in ("parley", "daphne-memory", "daphne-redis", "bare"))
    if pa:
        n = pa["receivers"]
        out.append(
            [
                f"fan-out, 1 room, {n:,} WebSocket receivers: delivered msgs/s",
                _f(pa["delivered_per_s"]),
                f"{_f(get(dm, 'delivered_per_s'))} / {_f(get(dr, 'delivered_per_s'))}",
                f"bare Twisted {_f(get(bare, 'delivered_per_s'))}",
                f"{_x(ratio(pa['delivered_per_s'], get(dm, 'delivered_per_s')))} / "
                f"{_x(ratio(pa['delivered_per_s'], get(dr, 'delivered_per_s')))} Daphne",
            ]
        )
        out.append(["server CPU per 1000 deliveries (s)", _f(pa["cpu_s_per_1000"], 4),
                    f"{_f(get(dm, 'cpu_s_per_1000'), 3)} / {_f(get(dr, 'cpu_s_per_1000'), 3)}",
                    f"bare {_f(get(bare, 'cpu_s_per_1000'), 4)}",
                    f"1/{_x(ratio(get(dm, 'cpu_s_per_1000'), pa['cpu_s_per_1000']))[:-1]}"
                    " of Daphne's"])  # fmt: skip
    lat = get(p, "latency", "parley")
    if lat:
        out.append([f"{lat['receivers']:,} receivers at {lat['mode'].split()[1]}: p50 / p99",
                     f"{_f(lat['lat_p50_ms'], 1)} / {_f(lat['lat_p99_ms'], 1)} ms", "-",
                     f"bare {_f(get(p, 'latency', 'bare', 'lat_p99_ms'), 1)} ms p99",
                     "goal p99 <= 50 ms"])  # fmt: skip
    runs = {r["server"]: r for r in get(p, "scenario", "runs", default=[]) or []}
    best, peer = get(runs, "parley", "best"), runs.get("daphne-memory")
    if runs.get("parley"):
        sc = runs["parley"]
        events = _events_per_s(best) if best else None
        peer_best = get(peer, "best")
        low = (sc.get("steps") or [{}])[0]
        ours = (
            f"{_f(get(best, 'rate_achieved'))} ({_f(events)} events/s, p99"
            f" {_f(get(best, 'p99_ms'), 1)} ms)"
            if best
            else f"none: at {_f(low.get('rate_target'))} msgs/s p99 {_f(low.get('p99_ms'))} ms"
        )
        out.append([f"many rooms ({sc['users']:,} users, {sc['rooms']} rooms, typing, inbox,"
                    " 1% resuming/s): best msgs/s at p99 <= 100 ms", ours,
                    f"{_f(get(peer_best, 'rate_achieved'))}" if peer_best else
                    "none (tried " + ", ".join(_f(s["rate_target"]) for s in
                                               get(peer, "steps", default=[])[:3]) + " msgs/s)",
                    "-", _x(ratio(events, get(peer_best, "deliveries_per_s")))
                    if peer_best else "Daphne kept no rate"])  # fmt: skip
    idle = get(p, "idle", "runs") or {}
    if idle.get("parley"):
        ip, ib = idle["parley"], idle.get("bare") or {}
        dmi = idle.get("daphne-memory") or {}
        out.append(["idle WebSockets held by one process: memory per connection",
                    f"{_f(ip['rss_per_conn_kib'], 1)} KiB ({ip['alive_after_hold']:,} held)",
                    f"{_f(dmi.get('rss_per_conn_kib'), 1)} KiB",
                    f"bare {_f(ib.get('rss_per_conn_kib'), 1)} KiB",
                    f"{_x(get(p, 'idle', 'parley_over_bare_rss'))} the bare floor"])  # fmt: skip
    du = p.get("durable") or {}
    if du.get("sqlite-w1"):
        out.append(
            [
                "durable sends, committed msgs/s: SQLite / PostgreSQL (1 worker)",
                f"{_f(du['sqlite-w1']['committed_per_s'])} / "
                f"{_f(get(du, 'postgres-w1', 'committed_per_s'))}",
                "-",
                "-",
                "-",
            ]
        )
    wr = get(p, "workers", "cpu_ratio_w2_over_w1")
    if wr:
        out.append(
            [
                "CPU per delivery, `--workers 2` + Redis over one worker",
                _x(wr),
                "-",
                "-",
                "goal <= 1.3x",
            ]
        )
    ht = p.get("http") or {}
    med = ht.get("ratios_of_medians") or {}
    for label in ("page", "static"):
        g = get(med, "parley/gunicorn", label)
        if g is not None:
            med_rps = get(ht, "median_req_per_s", "parley", label)
            out.append([f"HTTP {'Django page' if label == 'page' else 'static file'} req/s"
                        " (wrk, median of 3)", _f(med_rps),
                        "-", f"granian {_x(get(med, 'parley/granian-whitenoise', label))}",
                        f"{_x(g)} gunicorn + whitenoise"])  # fmt: skip
    f = p.get("features") or {}
    for vendor in ("sqlite", "postgresql"):
        s = f.get(f"search-{vendor}")
        if s:
            out.append(
                [
                    f"search over {_f(s.get('messages'))} messages ({vendor}): worst p99",
                    f"{_f(s.get('p99_ms_max'), 1)} ms",
                    "-",
                    "-",
                    "-",
                ]
            )
    return out


def table(results: dict) -> str:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results.get("started", 0)))
    lines = [f"From `make bench` of {when} ({results.get('minutes', 0):.0f} min, "
             f"`{results.get('json', '')}`), on one 2-core machine, the peers alternated "
             "with Parley in the same run:", "",
             "| measure | Parley | Daphne + Channels (memory / Redis layer) | other | "
             "Parley against them |", "|---|---|---|---|---|"]  # fmt: skip
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
    met = [t for t in results.get("targets", []) if t["met"]]
    missed = [t for t in results.get("targets", []) if not t["met"]]
    lines += ["", f"Goals: {len(met)} met, {len(missed)} missed in this run"
              + (": " + "; ".join(f"{t['target']} ({_f(t['value'], 2)})" for t in missed)
                 if missed else "") + "."]  # fmt: skip
    charts = results.get("charts") or {}
    if charts:
        # Each chart is bench/results/<name>.png (charts.py), whatever ``--output`` was.
        lines += [""] + [f"![{CHART_TITLES.get(name, name)}](bench/results/{name}.png)"
                         for name in charts]  # fmt: skip
    return "\n".join(lines)


def write(text: str, readme: Path = README) -> None:
    replace_marked(readme, START, END, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "run-latest.json")
    parser.add_argument("--write", action="store_true", help=f"rewrite the table in {README}")
    args = parser.parse_args(argv)
    text = table(json.loads(args.json.read_text()))
    if args.write:
        write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
