#!/usr/bin/env python
"""What the new features cost (issue 14 part 5): the existing feature benches, each as a
subprocess in Parley's venv, their JSON gathered into one object.

    bench/.venv-bench/bin/python bench/features.py            # full sizes (search: 1M rows)
    bench/.venv-bench/bin/python bench/features.py --quick    # small sizes, ~1 min

- ``inbox``: bench/inbox_cost.py, server CPU per message in a room of N members each
  with a room WebSocket, without and with an inbox stream each (the inbox's fan-out);
- ``api_rooms-<db>``: bench/api_rooms.py, ``GET /api/rooms/`` for a user in 200 rooms
  with unread messages and mentions in them: the view carries every room's unread and
  mention counts (chat/counts.py), and ``counts_median_ms`` is the unread counts alone;
- ``search-<vendor>``: bench/search.py, search p50/p99 per query over N messages (1M in
  the full run), with the time to build the data set (``build_seconds``);
- ``uploads``: bench/uploads.py, upload throughput (MiB/s) and the server's memory while
  uploads stream.

Each bench runs with a deadline; one that fails or times out is reported with its error
and the others still run. The issue states no numeric goal for these: they are figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

from common import BENCH, PARLEY_PY, REPO, log

FULL = {
    "inbox": ["--members", "1000", "--messages", "300"],
    "api_rooms": ["--rooms", "200", "--messages", "100000", "--runs", "50"],
    "search": ["--messages", "1000000", "--runs", "50"],
    "uploads": ["--size-mib", "10", "--runs", "5", "--parallel", "5"],
}
QUICK = {
    "inbox": ["--members", "50", "--messages", "30"],
    "api_rooms": ["--rooms", "200", "--messages", "10000", "--runs", "10"],
    "search": ["--messages", "20000", "--runs", "10"],
    "uploads": ["--size-mib", "2", "--runs", "2", "--parallel", "2"],
}


def plan(quick: bool) -> list[tuple[str, list[str]]]:
    """(name, command) of every bench, in the order they run."""
    sizes = QUICK if quick else FULL
    py = str(PARLEY_PY)
    return [
        ("inbox", [py, str(BENCH / "inbox_cost.py"), *sizes["inbox"]]),
        ("api_rooms-sqlite", [py, str(BENCH / "api_rooms.py"), "--db", "sqlite",
                              *sizes["api_rooms"]]),
        ("api_rooms-postgres", [py, str(BENCH / "api_rooms.py"), "--db", "postgres",
                                *sizes["api_rooms"]]),
        ("search-sqlite", [py, str(BENCH / "search.py"), "--vendor", "sqlite",
                           *sizes["search"]]),
        ("search-postgresql", [py, str(BENCH / "search.py"), "--vendor", "postgresql",
                               *sizes["search"]]),
        ("uploads", [py, str(BENCH / "uploads.py"), *sizes["uploads"]]),
    ]  # fmt: skip


def parse_search(stdout: str) -> dict:
    """search.py prints a JSON line (the data set) then a table: query, results, p50, p99."""
    lines = stdout.strip().splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("{"))
    found = json.loads(lines[first])
    queries = []
    for line in lines[first + 2 :]:  # past the table's header
        parts = line.rsplit(maxsplit=3)
        if len(parts) == 4:
            query, results, p50, p99 = parts
            queries.append({"query": query.strip(), "results": results,
                            "p50_ms": float(p50), "p99_ms": float(p99)})  # fmt: skip
    found["queries"] = queries
    if queries:
        found["p50_ms_max"] = max(q["p50_ms"] for q in queries)
        found["p99_ms_max"] = max(q["p99_ms"] for q in queries)
    return found


def parse_json(stdout: str) -> dict:
    """The last JSON object a bench printed (logs may precede it)."""
    start = stdout.index("{")
    return json.loads(stdout[start:])


def _all_cores() -> None:
    # run_all.py pins itself to the clients' core; these benches place their own processes
    # (or share both cores between server and client, as uploads.py says it does).
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, range(os.cpu_count() or 1))


def run_one(name: str, cmd: list[str], timeout: float) -> dict:
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_all_cores)  # fmt: skip
    seconds = round(time.monotonic() - started, 1)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-800:]}")
    found = parse_search(done.stdout) if name.startswith("search") else parse_json(done.stdout)
    found["wall_seconds"] = seconds
    return found


def run_features(*, quick: bool = False, timeout: float = 1500.0, only=None) -> dict:
    """Every bench of :func:`plan`; ``{"errors": {name: why}}`` for those that failed."""
    out: dict = {"errors": {}}
    for name, cmd in plan(quick):
        if only and not any(name.startswith(o) for o in only):
            continue
        log(f"   features: {name}")
        try:
            out[name] = run_one(name, cmd, timeout)
        except Exception as error:  # one broken bench must not lose the others
            out["errors"][name] = f"{type(error).__name__}: {str(error)[-800:]}"
            log(f"   features: {name} failed: {out['errors'][name]}")
            continue
        log(f"   features: {name} took {out[name]['wall_seconds']}s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", default=None, help="inbox api_rooms search uploads")
    parser.add_argument("--timeout", type=float, default=1500.0, help="seconds per bench")
    args = parser.parse_args(argv)
    print(json.dumps(run_features(quick=args.quick, timeout=args.timeout, only=args.only),
                     indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
