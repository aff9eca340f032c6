"""Run every fuzz target of tests/fuzz/ for a given time; count executions and findings.

    .venv/bin/python bench/fuzz.py --minutes 60          # each target gets an equal share
    .venv/bin/python bench/fuzz.py --minutes 2 --targets client_frames,irc_lines

The targets are the hypothesis ones that ``make test`` runs with a small budget
(tests/fuzz/fuzz_registry.py); here each runs in batches of fresh random examples until
its share of the time is used. A finding is any failing example: it is shrunk, its
falsifying input and error are recorded, and the run goes on. The summary (targets,
executions, findings, durations) is written as JSON to bench/results/fuzz-<date>.json,
for docs/RELIABILITY.md, and rewritten after every batch so that a cut run keeps its
figures. Runs in the .venv (Parley + dev tools), not the bench venv.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import os
import platform
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def _setup() -> dict:
    for path in (ROOT, ROOT / "tests" / "unit", ROOT / "tests" / "fuzz"):
        sys.path.insert(0, str(path))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    # Expected refusals are logged at INFO/WARNING by the transports; only errors (which
    # the targets collect themselves) matter, and printing the rest costs time.
    logging.getLogger().setLevel(logging.ERROR)
    import fuzz_irc  # noqa: F401  (each module registers its targets)
    import fuzz_live  # noqa: F401
    import fuzz_pure  # noqa: F401
    import fuzz_render  # noqa: F401
    from fuzz_registry import TARGETS

    return TARGETS


def _finding(target: str, error: BaseException, elapsed: float) -> dict:
    notes = getattr(error, "__notes__", [])
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f for f in frames if "/site-packages/" not in f.filename] or frames
    where = f"{Path(ours[-1].filename).name}:{ours[-1].lineno}" if ours else "?"
    return {
        "target": target,
        "error": type(error).__name__,
        "message": str(error).split("\n")[0][:500],
        "where": where,
        "example": "\n".join(n for n in notes if "Falsifying" in n or "value=" in n)[:4000],
        "after_seconds": round(elapsed, 1),
    }


def fuzz_one(item, seconds: float, batch: int, save) -> dict:
    """Run ``item`` for ``seconds``: its summary (executions, findings, duration)."""
    from fuzz_registry import runner

    count = [0]

    def counted(value) -> None:
        count[0] += 1
        item.check(value)

    counting = dataclasses.replace(item, check=counted)
    findings: list[dict] = []
    seen: set[tuple[str, str]] = set()
    started = time.monotonic()
    batches = 0
    while time.monotonic() - started < seconds:
        test = runner(counting, batch, report_multiple_bugs=False, print_blob=False)
        try:
            test()
        except Exception as error:  # a finding: recorded once per kind and place
            found = _finding(item.name, error, time.monotonic() - started)
            key = (found["error"], found["where"])
            if key not in seen:
                seen.add(key)
                findings.append(found)
                print(
                    f"  finding in {item.name}: {found['error']} at {found['where']}: "
                    f"{found['message'][:160]}",
                    flush=True,
                )
        batches += 1
        summary = {
            "target": item.name,
            "doc": item.doc,
            "executions": count[0],
            "batches": batches,
            "seconds": round(time.monotonic() - started, 1),
            "findings": findings,
        }
        save(summary)
    summary["per_second"] = round(summary["executions"] / max(summary["seconds"], 0.1), 1)
    save(summary)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="total, shared by the targets")
    parser.add_argument("--targets", default="", help="comma-separated names (default: all)")
    parser.add_argument("--batch", type=int, default=1000, help="examples per hypothesis run")
    parser.add_argument(
        "--out", default="", help="JSON path (default bench/results/fuzz-<date>.json)"
    )
    args = parser.parse_args()

    targets = _setup()
    names = [n for n in args.targets.split(",") if n] or list(targets)
    unknown = sorted(set(names) - set(targets))
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {sorted(targets)}")
    share = args.minutes * 60 / len(names)
    now = datetime.datetime.now(datetime.UTC)
    out = Path(args.out) if args.out else RESULTS / f"fuzz-{now:%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "started": now.isoformat(timespec="seconds"),
        "minutes": args.minutes,
        "seconds_per_target": round(share, 1),
        "engine": "hypothesis " + __import__("hypothesis").__version__,
        "python": platform.python_version(),
        "machine": f"{os.cpu_count()} cpus, shared (development figures)",
        "targets": {},
    }

    def save(summary: dict) -> None:
        report["targets"][summary["target"]] = summary
        report["executions"] = sum(t["executions"] for t in report["targets"].values())
        report["findings"] = sum(len(t["findings"]) for t in report["targets"].values())
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        tmp.replace(out)

    print(f"fuzzing {len(names)} targets, {share:.0f} s each -> {out}", flush=True)
    for name in names:
        summary = fuzz_one(targets[name], share, args.batch, save)
        print(
            f"{name}: {summary['executions']} executions in {summary['seconds']} s, "
            f"{len(summary['findings'])} findings",
            flush=True,
        )
    report["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    save(report["targets"][names[-1]])
    print(f"total: {report['executions']} executions, {report['findings']} findings", flush=True)


if __name__ == "__main__":
    main()
