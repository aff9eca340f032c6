#!/usr/bin/env python
"""HTTP: a Django page and a static file under ``wrk``: Parley vs gunicorn and granian.

    bench/.venv-bench/bin/python bench/httpbench.py [--threads 10] [--duration 8] \
        [--rounds 3] [--servers gunicorn,parley,granian-whitenoise,granian-static]

The same Django project, database (a fresh copy each) and STATIC_ROOT under every server:
Parley's ``serve.py --threads N`` (Django through Twisted's WSGIResource, static files by
its own resource over whitenoise's index), ``gunicorn -k gthread --threads N`` with one
worker and whitenoise's middleware (bench/peers/gunicorn_*.py), and granian (one worker,
``--blocking-threads N``) with whitenoise's middleware (the fair peer: the same static
code path as gunicorn's) and with its own Rust file server on /static (for reference;
bench/peers/granian_peer.py). Each server is fresh, pinned to core 0; wrk runs on core 1
(``-t1 -c<connections>``) after a 1 s warm-up. The page is ``/`` (the room list,
anonymous: one query, a template); the static file is admin's ``base.css`` under its
hashed name, as pages link it.

The machine is noisy (other work, CPU steal), so the servers are alternated ``--rounds``
times (the order rotating each round), and the result is the median req/s of each
server over the rounds, Parley's ratio to each peer's median, and the per-round ratios.
``run_http()`` is the in-process entry point (``http_bench()`` is kept for run_all.py).
Requires Debian's ``wrk``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
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

sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
from granian_peer import start_granian

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


def probe(url: str) -> int:
    """The status of one GET (no redirects followed)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def measure(server, static_path: str, *, connections: int, duration: float) -> dict:
    base = f"http://127.0.0.1:{server.port}"
    results = {}
    for label, path in (("page", "/"), ("static", static_path)):
        # A server answering errors is fast and measures nothing: refuse the figures.
        status = probe(base + path)
        if status != 200:
            tail = server.log()[-2000:]
            raise RuntimeError(f"{server.name} answers {path} with {status}:\n{tail}")
        wrk(base + path, connections=connections, duration=1)  # warm-up
        cpu0 = server.cpu()
        result = wrk(base + path, connections=connections, duration=duration)
        result["server_cpu_s"] = round(server.cpu() - cpu0, 3)
        # CPU per request: steadier than req/s when other work steals the server's core.
        done = result["requests"]
        result["cpu_ms_per_req"] = round(1000 * result["server_cpu_s"] / done, 4) if done else None
        results[label] = result
    return results


PEERS = ("gunicorn", "parley", "granian-whitenoise", "granian-static")


def start(name: str, data: ParleyData, workdir: Path, threads: int):
    """A fresh server process on a fresh copy of the database."""
    db_url = data.fresh_db_url()
    if name == "gunicorn":
        return start_gunicorn(workdir, db_url, data.static_root, threads=threads)
    if name == "parley":
        return start_parley(workdir, db_url, data.static_root, threads=threads)
    static = "whitenoise" if name == "granian-whitenoise" else "granian"
    return start_granian(workdir, db_url, data.static_root, threads=threads, static=static)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def summarize(rounds: list[dict], servers: tuple[str, ...]) -> dict:
    """Per server and target the median req/s over the rounds; Parley's ratio to each peer."""
    medians: dict = {}
    for name in servers:
        medians[name] = {}
        for label in ("page", "static"):
            rates = [r[name][label]["req_per_s"] for r in rounds if name in r]
            rates = [x for x in rates if x is not None]
            medians[name][label] = round(statistics.median(rates), 2) if rates else None
    ratios = {
        f"parley/{peer}": {
            label: _ratio(medians["parley"][label], medians[peer][label])
            for label in ("page", "static")
        }
        for peer in servers
        if peer != "parley" and "parley" in medians
    }
    # The ratio within each round too: the noise (CPU steal) moves both sides of a round.
    per_round = {
        f"parley/{peer}": {
            label: [_ratio(r["parley"][label]["req_per_s"], r[peer][label]["req_per_s"])
                    for r in rounds]
            for label in ("page", "static")
        }
        for peer in servers
        if peer != "parley"
    }  # fmt: skip
    cpu = {
        name: {
            label: _median([r[name][label].get("cpu_ms_per_req") for r in rounds if name in r])
            for label in ("page", "static")
        }
        for name in servers
    }
    # How many times Parley's CPU per request the peer spends (above 1: Parley is cheaper).
    cpu_ratios = {
        f"{peer}/parley": {label: _ratio(cpu[peer][label], cpu["parley"][label])
                           for label in ("page", "static")}
        for peer in servers
        if peer != "parley" and "parley" in cpu
    }  # fmt: skip
    return {"median_req_per_s": medians, "ratios_of_medians": ratios, "round_ratios": per_round,
            "median_cpu_ms_per_req": cpu, "cpu_per_req_ratios": cpu_ratios}  # fmt: skip


def _median(values: list) -> float | None:
    values = [x for x in values if x is not None]
    return round(statistics.median(values), 4) if values else None


def run_http(
    data: ParleyData,
    workdir: Path,
    *,
    threads: int = 10,
    connections: int = 16,
    duration: float = 8.0,
    rounds: int = 3,
    servers: tuple[str, ...] = PEERS,
) -> dict:
    """``rounds`` alternations of every server (each fresh), per-round figures and medians.

    A round starts each server in turn (the order rotates between rounds, so no server
    always runs first after a quiet spell) and measures the page then the static file."""
    static_path = static_file_path(data.static_root)
    found: dict = {"threads": threads, "connections": connections, "duration_s": duration,
                   "static_path": static_path, "servers": list(servers), "rounds": []}  # fmt: skip
    for number in range(rounds):
        order = servers[number % len(servers) :] + servers[: number % len(servers)]
        this_round: dict = {}
        for name in order:
            with start(name, data, workdir, threads) as server:
                this_round[name] = measure(
                    server, static_path, connections=connections, duration=duration
                )
            log(f"round {number + 1} {name}: page {this_round[name]['page']['req_per_s']}"
                f" static {this_round[name]['static']['req_per_s']} req/s")  # fmt: skip
        found["rounds"].append(this_round)
        data.drop_clones()
    found.update(summarize(found["rounds"], servers))
    # The shape run_all.py's report reads: the median round's figures per server.
    for name in servers:
        found[name] = median_round(found["rounds"], name)
    return found


def median_round(rounds: list[dict], name: str) -> dict:
    """Per target, the round whose req/s is the median one (its latencies with it)."""
    chosen = {}
    for label in ("page", "static"):
        runs = sorted((r[name][label] for r in rounds), key=lambda x: x["req_per_s"] or 0)
        chosen[label] = runs[len(runs) // 2]
    return chosen


def http_bench(
    data: ParleyData, workdir: Path, *, threads: int = 10, connections: int = 16,
    duration: float = 8.0, rounds: int = 3,
) -> dict:  # fmt: skip
    """run_all.py's entry point (kept): ``run_http`` with every peer."""
    return run_http(data, workdir, threads=threads, connections=connections,
                    duration=duration, rounds=rounds)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--servers", default=",".join(PEERS), help="comma-separated")
    parser.add_argument("--workdir", type=Path, default=RESULTS_DIR / "work-http")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "httpbench: needs wrk (apt-get install wrk; setup_venvs.sh does it)", file=sys.stderr
        )
        return 2
    # Absolute: the servers run from the repository's root, not from here.
    args.workdir = args.workdir.resolve()
    clean_workdir(args.workdir)
    data = prepare_parley(args.workdir)
    try:
        servers = tuple(args.servers.split(","))
        result = run_http(data, args.workdir, threads=args.threads, rounds=args.rounds,
                          connections=args.connections, duration=args.duration,
                          servers=servers)  # fmt: skip
    finally:
        data.drop()
    for name in result["servers"]:
        for label in ("page", "static"):
            r = result[name][label]
            log(f"{name} {label}: median {result['median_req_per_s'][name][label]} req/s"
                f" (median round: p50 {r['lat_p50_ms']} ms p99 {r['lat_p99_ms']} ms"
                f" non-2xx {r['non_2xx']})")  # fmt: skip
    for pair, ratio in result["ratios_of_medians"].items():
        log(f"{pair} (req/s): page {ratio['page']} static {ratio['static']}")
    for pair, ratio in result["cpu_per_req_ratios"].items():
        log(f"{pair} (CPU per request): page {ratio['page']} static {ratio['static']}")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
