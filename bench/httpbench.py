#!/usr/bin/env python
"""HTTP: a Django page and a static file under ``wrk``, Parley vs gunicorn (gthread).

    bench/.venv-bench/bin/python bench/httpbench.py [--threads 10] [--duration 8]

The same Django project, database (a fresh copy each) and STATIC_ROOT under two servers:
Parley's ``serve.py --threads N`` (Django through Twisted's WSGIResource, static files by
its own resource) and ``gunicorn -k gthread --threads N`` with one worker and whitenoise's
middleware (bench/peers/gunicorn_*.py). Each server is fresh, pinned to core 0; wrk runs
on core 1 (``-t1 -c<connections>``) after a 1 s warm-up. The page is ``/`` (the room
list, anonymous: one query, a template); the static file is admin's ``base.css`` under
its hashed name, as pages link it. Requires Debian's ``wrk``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from common import (
    CLIENT_CPUS,
    RESULTS_DIR,
    ParleyData,
    clean_workdir,
    log,
    prepare_parley,
    start_gunicorn,
    start_parley,
    static_file_path,
)

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float | None:
    match = re.match(r"([\d.]+)(us|ms|s)", text)
    return round(float(match.group(1)) * _UNITS[match.group(2)], 3) if match else None


def wrk(url: str, *, connections: int = 16, duration: float = 8.0) -> dict:
    """One wrk run pinned to the client core; its numbers parsed from the report."""

    def pin() -> None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, CLIENT_CPUS)

    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        preexec_fn=pin,
    ).stdout
    found = {"url": url, "connections": connections}
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    found["req_per_s"] = float(match.group(1)) if match else None
    for label in ("50%", "99%"):
        match = re.search(rf"^\s+{re.escape(label)}\s+(\S+)", out, re.M)
        found[f"lat_p{label[:-1]}_ms"] = _ms(match.group(1)) if match else None
    match = re.search(r"(\d+) requests in", out)
    found["requests"] = int(match.group(1)) if match else None
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    found["non_2xx"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors: (.*)", out)
    found["socket_errors"] = match.group(1).strip() if match else ""
    return found


def measure(server, static_path: str, *, connections: int, duration: float) -> dict:
    base = f"http://127.0.0.1:{server.port}"
    results = {}
    for label, path in (("page", "/"), ("static", static_path)):
        wrk(base + path, connections=connections, duration=1)  # warm-up
        cpu0 = server.cpu()
        result = wrk(base + path, connections=connections, duration=duration)
        result["server_cpu_s"] = round(server.cpu() - cpu0, 3)
        results[label] = result
    return results


def http_bench(
    data: ParleyData, workdir: Path, *, threads: int = 10, connections: int = 16,
    duration: float = 8.0,
) -> dict:  # fmt: skip
    static_path = static_file_path(data.static_root)
    found: dict = {"threads": threads, "static_path": static_path}
    # Alternating: the reference first, then Parley, each on a fresh process and database.
    with start_gunicorn(workdir, data.fresh_db_url(), data.static_root, threads=threads) as s:
        found["gunicorn"] = measure(s, static_path, connections=connections, duration=duration)
    with start_parley(workdir, data.fresh_db_url(), data.static_root, threads=threads) as s:
        found["parley"] = measure(s, static_path, connections=connections, duration=duration)
    data.drop_clones()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--workdir", type=Path, default=RESULTS_DIR / "work-http")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "httpbench: needs wrk (apt-get install wrk; setup_venvs.sh does it)", file=sys.stderr
        )
        return 2
    clean_workdir(args.workdir)
    data = prepare_parley(args.workdir)
    try:
        result = http_bench(data, args.workdir, threads=args.threads,
                            connections=args.connections, duration=args.duration)  # fmt: skip
    finally:
        data.drop()
    for name in ("gunicorn", "parley"):
        for label in ("page", "static"):
            r = result[name][label]
            log(f"{name} {label}: {r['req_per_s']} req/s p50 {r['lat_p50_ms']} ms"
                f" p99 {r['lat_p99_ms']} ms non-2xx {r['non_2xx']}")  # fmt: skip
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
