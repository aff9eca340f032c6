#!/usr/bin/env python
"""The whole benchmark set (``make bench``), bounded in time; writes bench/RESULTS.md.

    bench/.venv-bench/bin/python bench/run_all.py            # full set (search over 1M rows)
    bench/.venv-bench/bin/python bench/run_all.py --quick    # smaller N, under 5 min
    bench/.venv-bench/bin/python bench/run_all.py --only sweep workers
    bench/.venv-bench/bin/python bench/run_all.py --from-json bench/results/run-latest.json

The phases are listed in bench/phases.py (``PHASES``). Every measurement starts fresh
server processes; the peers and Parley are measured in the same run, alternating. Where
a goal is missed, Parley is profiled with py-spy in a separate short pass (full runs, or
``--profile``) and the hot spots go into RESULTS.md. Raw numbers go to
bench/results/run-<time>.json and run-latest.json, charts to bench/results/*.png
(bench/charts.py). A hand-written section between the ``analysis`` markers of an
existing RESULTS.md is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

import capacity
import headline
from common import (
    BENCH,
    RESULTS_DIR,
    clean_workdir,
    log,
    pin_client,
    prepare_parley,
    raise_fd_limit,
    versions,
)
from durable import DURABLE_ROOMS, DURABLE_USERS
from phases import PHASE_NAMES, PHASES, Missing, OutOfTime, Runner, loadavg, machine
from report import keep_analysis, report
from spy import summarize
from targets import evaluate

RESULTS_MD = BENCH / "RESULTS.md"
LATEST_JSON = RESULTS_DIR / "run-latest.json"

FULL = {
    "fanout_n": 1000, "fanout_seconds": 8.0, "window_fast": 20, "window_peer": 3,
    "latency_n": 1000, "latency_rate": 10.0, "latency_seconds": 10.0,
    "sweep_sizes": (10, 100, 1000, 10_000), "sweep_peer_max": 1000, "sweep_seconds": 5.0,
    "http_n": 200, "http_seconds": 8.0,
    "hold_n": 10_000, "hold_seconds": 5.0,
    "idle_steps": (10_000, 25_000, 50_000, 100_000), "idle_hold": 40.0, "idle_daphne": 2000,
    "workers_n": 1000, "workers_rate": 20.0, "workers_seconds": 8.0,
    "durable_seconds": 8.0, "durable_senders": 16,
    "feature_timeout": 1800.0,
    "wrk_seconds": 8.0, "http_rounds": 3, "budget": 75 * 60,
    # 8,000 users (not the 10,000): an inbox and a room socket each plus a sender
    # per room is 16,800 descriptors, under this machine's hard limit of 20,000 per process.
    "scenario_users": 8000, "scenario_rooms": 800, "scenario_peer_users": 1000,
    "scenario_rates": (5.0, 10.0, 20.0, 35.0, 50.0, 70.0, 100.0, 140.0, 200.0, 280.0, 400.0),
    "scenario_peer_rates": (1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0),
    "scenario_seconds": 10.0,
}  # fmt: skip
QUICK = {
    "fanout_n": 200, "fanout_seconds": 2.0, "window_fast": 20, "window_peer": 3,
    "latency_n": 200, "latency_rate": 10.0, "latency_seconds": 3.0,
    "sweep_sizes": (10, 1000), "sweep_peer_max": 100, "sweep_seconds": 1.0,
    "http_n": 50, "http_seconds": 1.5,
    "hold_n": 500, "hold_seconds": 1.0,
    "idle_steps": (1000, 3000), "idle_hold": 2.0, "idle_daphne": 0,
    "workers_n": 200, "workers_rate": 20.0, "workers_seconds": 1.0,
    "durable_seconds": 1.0, "durable_senders": 8,
    "feature_timeout": 120.0,
    # Trimmed on 2026-12-03, when a slow machine's quick run spent its budget before the
    # http phase: whole-second wrk runs, two sweep sizes, one peer rate.
    "wrk_seconds": 1.0, "http_rounds": 1, "budget": 290,  # wrk takes whole seconds
    "scenario_users": 300, "scenario_rooms": 30, "scenario_peer_users": 100,
    "scenario_rates": (40.0, 120.0), "scenario_peer_rates": (5.0,),
    "scenario_seconds": 3.0,
}  # fmt: skip


def _alarm(_signum, _frame):
    raise OutOfTime("the time budget of run_all is spent")


def run_phase(runner: Runner, name: str) -> None:
    """One phase; its failure is recorded and the run goes on (OutOfTime ends it)."""
    results = runner.results
    log(f"== {name} (load average {loadavg()})")
    results["loadavg"][name] = loadavg()
    started = time.monotonic()
    try:
        results["phases"][name] = getattr(runner, name)()
    except OutOfTime:
        results["errors"][name] = "skipped: time budget spent"
        raise
    except Missing as why:
        log(f"{name} is missing: {why}")
        results["missing"][name] = str(why)
    except Exception as error:  # one broken phase must not lose the others
        log(f"{name} failed: {error}")
        results["errors"][name] = f"{type(error).__name__}: {error}"
        traceback.print_exc()
    finally:
        results["seconds"][name] = round(time.monotonic() - started, 1)
        log(f"   {name} took {results['seconds'][name]:.0f}s")


def out_dir(quick: bool) -> Path:
    """Where a run's charts and JSON go: a quick run's under bench/results/quick/ (not
    committed), so that ``make bench-quick`` never replaces the full run's, which
    RESULTS.md, the README and docs/CAPACITY.md are written from."""
    return RESULTS_DIR / "quick" if quick else RESULTS_DIR


def write_outputs(results: dict, output: Path, quick: bool, started: float) -> None:
    """Targets, charts and the report from ``results`` (also what ``--from-json`` does)."""
    targets = evaluate(results)
    results["targets"] = targets
    charts: dict[str, str] = {}
    try:
        from charts import make_charts

        for name, path in make_charts(results, out_dir(quick)).items():
            charts[name] = os.path.relpath(path, output.resolve().parent)
    except ImportError as error:  # matplotlib lives in the bench venv only
        results["errors"]["charts"] = f"no charts: {error}"
    results["charts"] = charts
    text = report(results, targets, quick=quick, started=started, charts=charts)
    if output.resolve() == RESULTS_MD:
        text = keep_analysis(text, RESULTS_MD.read_text() if RESULTS_MD.exists() else "")
        if not quick:  # a quick run's N is too small to model capacity from
            capacity.write(capacity.model(results))
            headline.write(headline.table(results))
    output.write_text(text)


def dump(results: dict) -> str:
    """Indented JSON with each [fraction, ms] pair of a CDF on one line (a diff stays short)."""
    text = json.dumps(results, indent=1, default=str)
    return re.sub(r"\[\s+(-?[\d.e+-]+),\s+(-?[\d.e+-]+)\s+\]", r"[\1, \2]", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter,
        epilog="phases:\n" + "\n".join(f"  {p.name:12} {p.what}" for p in PHASES),
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smaller N and durations")
    parser.add_argument("--procs", type=int, default=2, help="client receiver processes")
    parser.add_argument("--only", nargs="*", default=None, choices=PHASE_NAMES, metavar="PHASE")
    parser.add_argument("--skip", nargs="*", default=(), choices=PHASE_NAMES, metavar="PHASE")
    parser.add_argument("--profile", action="store_true", help="profile misses in --quick too")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--output", type=Path, default=None,
                        help="the report [RESULTS.md; --quick: results/quick/]")  # fmt: skip
    parser.add_argument("--from-json", type=Path, default=None,
                        help="measure nothing: rewrite the report from a run's JSON")  # fmt: skip
    args = parser.parse_args(argv)
    if args.output is None:
        quick = args.quick or (
            args.from_json is not None and json.loads(args.from_json.read_text()).get("quick")
        )
        args.output = out_dir(True) / "RESULTS.md" if quick else RESULTS_MD
        args.output.parent.mkdir(parents=True, exist_ok=True)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        for miss in list(results.get("profiles", {})):  # re-read: the summary may have improved
            path = RESULTS_DIR / f"profile-{miss}.txt"
            if path.exists():
                results["profiles"][miss] = summarize(path)
        results.setdefault("missing", {})
        write_outputs(results, args.output, results.get("quick", False), results["started"])
        log(f"wrote {args.output} from {args.from_json}")
        return 0
    cfg = QUICK if args.quick else FULL
    started = time.time()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(cfg["budget"]))
    raise_fd_limit()
    pin_client()
    out_dir(args.quick).mkdir(parents=True, exist_ok=True)
    workdir = RESULTS_DIR / "work"
    clean_workdir(workdir)
    runner = Runner(cfg, workdir, args.procs, args.quick)
    results = runner.results
    results.update(machine=machine(), versions=versions(), config=cfg, quick=args.quick,
                   started=started, procs=args.procs)  # fmt: skip
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    json_path = out_dir(args.quick) / f"run-{stamp}.json"
    results["json"] = str(json_path.relative_to(BENCH.parent))
    phases = [n for n in (args.only or PHASE_NAMES) if n not in args.skip]
    profile = not args.no_profile and (args.profile or not args.quick)
    try:
        log("preparing Parley's SQLite database (users signed in once)")
        runner.data = prepare_parley(
            workdir, users=("bench-sender", *DURABLE_USERS), rooms=("lobby", *DURABLE_ROOMS)
        )
        for name in phases:
            run_phase(runner, name)
        misses = sorted({t["key"] for t in evaluate(results) if not t["met"]} - {"durable-pg"})
        if misses and profile:
            runner.profile_misses(misses)
    except OutOfTime as error:
        log(str(error))
        results["errors"]["run_all"] = str(error)
    finally:
        signal.alarm(0)
        for data in (runner.data, runner.pg_data):
            if data is not None:
                data.drop()
    results["minutes"] = (time.time() - started) / 60
    write_outputs(results, args.output, args.quick, started)
    json_path.write_text(dump(results))
    latest = out_dir(args.quick) / LATEST_JSON.name
    shutil.copyfile(json_path, latest)
    log(f"wrote {args.output}, {json_path} and {latest}")
    log("seconds per phase: " + json.dumps(results["seconds"]))
    for t in results["targets"]:
        log(f"{'met   ' if t['met'] else 'MISSED'} {t['target']}: {t['value']}")
    for name, why in results["missing"].items():
        log(f"MISSING {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
