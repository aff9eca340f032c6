#!/usr/bin/env python
"""Idle WebSockets at scale: memory per connection against the bare Twisted floor.

    bench/.venv-bench/bin/python bench/idle.py                       # 10k 25k 50k 100k
    bench/.venv-bench/bin/python bench/idle.py --steps 2000,5000 --hold 25 --servers parley,bare
    bench/.venv-bench/bin/python bench/idle.py --daphne 2000         # + daphne-memory at 2000

For each server (a FRESH process per kind: parley, bare, and daphne-memory at a smaller N
when asked) the clients connect in steps (e.g. 10k, 25k, 50k, 100k connections held at
once); at each step: the server's RSS, RSS growth per connection since before the first
connect, and the connect rate of that step (new connections / seconds, TCP connect to 101).
Then all of them are held idle for ``--hold`` seconds at Parley's real ping interval
(chat/live/websocket.py PING_INTERVAL, 20 s: a hold of 40 s sees two ping rounds, each
answered by the clients): the server's CPU over the hold, less its CPU with no connection
at all (measured for the same length before the first connect), per connection per second,
and how many connections are still open at the end. The bare floor (bench/peers/
bare_twisted.py) sends no pings, so its idle CPU is the floor without them.

One client address has about 28k ephemeral ports to one server port (32768-60999 here):
the connections are spread over 127.0.0.2, 127.0.0.3 ... (all loopback), bound before
connect. The file limit (RLIMIT_NOFILE) is raised here, before the servers and the client
processes start: they inherit it.

Prints one JSON object; ``--out`` writes it too. ``run_idle()`` is the same, for run_all.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import resource
import sys
import time
from pathlib import Path

from common import (
    RESULTS_DIR,
    Server,
    clean_workdir,
    log,
    pin_client,
    prepare_parley,
    start_named,
)
from loadclient import ReceiverPool, loop_name, percentile

HOST = "127.0.0.1"
DEFAULT_STEPS = (10_000, 25_000, 50_000, 100_000)
# Ports per source address kept under the ephemeral range (28,232 ports here), with room
# for the TIME_WAIT of earlier runs.
PER_SOURCE = 20_000
PING_INTERVAL = 20.0  # chat/live/websocket.py: measured at the real interval, not shortened
# Descriptors a process needs beyond its connections (logs, pipes, epoll, the database).
FD_SPARE = 512


def source_addresses(connections: int, per_source: int = PER_SOURCE) -> list[str]:
    """Loopback addresses 127.0.0.2 ... enough that none holds more than ``per_source``."""
    count = max(1, math.ceil(connections / per_source))
    if count > 250:
        raise ValueError(f"{connections} connections need more than 250 source addresses")
    return [f"127.0.0.{2 + i}" for i in range(count)]


def step_plan(steps: list[int] | tuple[int, ...]) -> list[tuple[int, int]]:
    """(target held, new connections to open) per step; steps must increase."""
    plan, held = [], 0
    for target in steps:
        if target <= held:
            raise ValueError(f"steps must increase: {target} after {held}")
        plan.append((target, target - held))
        held = target
    return plan


def raise_nofile(needed: int) -> int:
    """Raise this process's RLIMIT_NOFILE (soft and hard) to at least ``needed`` where the
    kernel allows it (root may raise the hard limit up to fs.nr_open); return the soft
    limit now in force. Children started afterwards inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(needed, soft)
    with contextlib.suppress(OSError, ValueError):
        nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
        want = min(want, nr_open)
    if want > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (OSError, ValueError):
            want = hard
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _kib(value: float) -> float:
    return round(value / 1024, 2)


def measure_server(
    server: Server,
    pool: ReceiverPool,
    steps: list[int],
    *,
    hold_seconds: float,
    concurrency: int,
    settle: float = 1.0,
) -> dict:
    """Connect in ``steps``, hold, and read the server's memory and CPU (see the module)."""
    path = server.ws_path("lobby")
    sources = source_addresses(steps[-1])
    # A few connections first, then closed: what any first connection loads is not counted.
    pool.connect(20, "ws", HOST, server.port, path, sources=sources)
    pool.close_receivers()
    time.sleep(settle)
    base_cpu0 = server.cpu()
    time.sleep(min(hold_seconds, 10.0))
    base_idle = (server.cpu() - base_cpu0) / min(hold_seconds, 10.0)
    rss0 = server.rss()
    rows, held, failed, errors = [], 0, 0, {}
    handshakes: list[float] = []
    for target, new in step_plan(steps):
        cpu0, started = server.cpu(), time.monotonic()
        result = pool.connect(new, "ws", HOST, server.port, path, concurrency=concurrency,
                              timeout=max(120.0, new / 200), sources=sources)  # fmt: skip
        seconds = time.monotonic() - started
        cpu1 = server.cpu()
        time.sleep(settle)
        rss = server.rss()
        held += result["connected"]
        failed += result["failed"]
        for key, count in result["errors"].items():
            errors[key] = errors.get(key, 0) + count
        handshakes.extend(result["handshake"])
        rows.append({
            "target": target,
            "held": held,
            "failed": result["failed"],
            "connect_s": round(seconds, 2),
            "connects_per_s": round(result["connected"] / max(seconds, 1e-9), 1),
            "cpu_per_connect_ms": round((cpu1 - cpu0) / max(result["connected"], 1) * 1000, 4),
            "rss_mib": round(rss / 2**20, 1),
            "rss_per_conn_kib": _kib((rss - rss0) / max(held, 1)),
        })  # fmt: skip
        row = rows[-1]
        log(f"{server.name}: {held} held ({result['failed']} failed), "
            f"{row['connects_per_s']}/s, {row['rss_per_conn_kib']} KiB each")  # fmt: skip
        if result["connected"] == 0:
            break
    cpu_hold0 = server.cpu()
    time.sleep(hold_seconds)
    hold_cpu = server.cpu() - cpu_hold0
    alive = pool.stats(expected=0)["alive"]
    rss_end = server.rss()
    pool.close_receivers()
    idle_net = max(hold_cpu - base_idle * hold_seconds, 0.0)
    handshakes.sort()
    total_connect_s = sum(r["connect_s"] for r in rows)
    return {
        "server": server.name,
        "requested": steps[-1],
        "connected": held,
        "failed": failed,
        "errors": errors,
        "sources": len(sources),
        "alive_after_hold": alive,
        "steps": rows,
        "rss_before_mib": round(rss0 / 2**20, 1),
        "rss_after_hold_mib": round(rss_end / 2**20, 1),
        "rss_per_conn_kib": rows[-1]["rss_per_conn_kib"] if rows else None,
        "connects_per_s": round(held / max(total_connect_s, 1e-9), 1),
        "handshake_p50_ms": _ms(handshakes, 0.50),
        "handshake_p99_ms": _ms(handshakes, 0.99),
        "hold_s": hold_seconds,
        "ping_interval_s": PING_INTERVAL if server.kind == "parley" else None,
        "cpu_no_connections_per_s": round(base_idle, 5),
        "hold_cpu_s": round(hold_cpu, 3),
        # Microseconds of CPU per connection per second of idling (pings included).
        "idle_cpu_us_per_conn_s": round(idle_net / max(held, 1) / hold_seconds * 1e6, 4),
    }


def _ms(values: list[float], fraction: float) -> float | None:
    found = percentile(values, fraction)
    return None if found is None else round(found * 1000, 2)


def run_idle(
    *,
    servers: tuple[str, ...] = ("parley", "bare"),
    steps: tuple[int, ...] = DEFAULT_STEPS,
    hold_seconds: float = 40.0,
    daphne: int = 0,
    procs: int = 2,
    concurrency: int = 200,
    workdir: Path | None = None,
    data=None,
    pin: bool = True,
) -> dict:
    """The whole measurement; ``data``: a ParleyData already prepared (else made here).
    ``daphne`` > 0 adds daphne-memory held at that many connections (Daphne connects a
    hundred times slower). The ratio is Parley's RSS per connection over the bare floor's
    at the largest step both reached."""
    workdir = workdir or RESULTS_DIR / "work-idle"
    steps = tuple(steps)
    step_plan(steps)  # refuse bad steps before anything starts
    limit = raise_nofile(steps[-1] + FD_SPARE)
    # Parley refuses connections (a bare 503) within a twentieth of the limit (at most
    # 1024) of it: project/descriptors.py. Every server is held to the same ceiling.
    ceiling = limit - FD_SPARE - min(max(64, limit // 20), 1024)
    requested = steps[-1]
    if requested > ceiling:
        # Without CAP_SYS_RESOURCE the hard limit cannot be raised (a container's is often
        # 20,000): the server's descriptors bound the run, and the result says so.
        if ceiling < 1000:
            raise RuntimeError(f"RLIMIT_NOFILE is {limit}: too low to measure anything")
        log(f"RLIMIT_NOFILE is {limit} (hard): {requested} connections capped at {ceiling}")
        steps = (*(s for s in steps if s < ceiling), ceiling)
    # Each client process holds its share of the connections within the same limit.
    procs = max(procs, math.ceil(steps[-1] / ceiling))
    own_data = data is None and "parley" in servers
    if own_data:
        clean_workdir(workdir)
        data = prepare_parley(workdir)
    runs: dict[str, dict] = {}
    plans = [(name, steps) for name in servers]
    if daphne:
        plans.append(("daphne-memory", (*(s for s in steps if s < daphne), daphne)))
    try:
        with ReceiverPool(procs, capacity=64) as pool:
            for name, server_steps in plans:
                extra = {}
                if name == "parley":
                    extra["extra_env"] = {"CHAT_MAX_CONNECTIONS_PER_USER": str(steps[-1] * 2)}
                log(f"{name}: steps {list(server_steps)}, hold {hold_seconds}s")
                with start_named(name, workdir, data, pin=pin, **extra) as server:
                    runs[name] = measure_server(server, pool, list(server_steps),
                                                hold_seconds=hold_seconds,
                                                concurrency=concurrency)  # fmt: skip
    finally:
        if own_data and data is not None:
            data.drop()
    result = {"test": "idle", "client_loop": loop_name(), "nofile": limit,
              "requested": requested, "capped_by_nofile": steps[-1] < requested,
              "ping_interval_s": PING_INTERVAL, "runs": runs}  # fmt: skip
    if "parley" in runs and "bare" in runs:
        result["parley_over_bare_rss"] = _ratio(runs["parley"], runs["bare"])
    return result


def _ratio(parley: dict, bare: dict) -> float | None:
    both = {r["target"]: r for r in bare["steps"]}
    common = [r for r in parley["steps"] if r["target"] in both]
    if not common:
        return None
    top = common[-1]
    floor = both[top["target"]]["rss_per_conn_kib"]
    return round(top["rss_per_conn_kib"] / floor, 3) if floor else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--servers", default="parley,bare", help="[parley,bare]")
    steps = ",".join(map(str, DEFAULT_STEPS))
    parser.add_argument("--steps", default=steps, help=f"connections held at each step [{steps}]")
    parser.add_argument("--hold", type=float, default=40.0, help="idle seconds at the end [40]")
    parser.add_argument(
        "--daphne", type=int, default=0, help="also daphne-memory, at most this many [0: no]"
    )
    parser.add_argument("--procs", type=int, default=2, help="client worker processes [2]")
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes in flight")
    parser.add_argument("--workdir", type=Path, default=RESULTS_DIR / "work-idle")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server/clients")
    args = parser.parse_args(argv)
    if not args.no_pin:
        pin_client()
    result = run_idle(
        servers=tuple(s for s in args.servers.split(",") if s),
        steps=tuple(int(s) for s in args.steps.split(",")),
        hold_seconds=args.hold,
        daphne=args.daphne,
        procs=args.procs,
        concurrency=args.concurrency,
        workdir=args.workdir,
        pin=not args.no_pin,
    )
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
