#!/usr/bin/env python
"""Several workers, measured fairly on a 2-core machine (issue 14 part 4).

    bench/.venv-bench/bin/python bench/workers.py                  # 1000 receivers
    bench/.venv-bench/bin/python bench/workers.py --receivers 200 --duration 3

On two cores the load generator competes with the servers, so throughput alone says
little about scaling. Two measurements, each on fresh servers with fresh databases:

1. ``cpu``: CPU per delivery at a FIXED rate that every configuration keeps up with
   (``--rate`` msg/s to ``--receivers`` receivers of one room): one worker; one worker
   with the Redis bus; ``serve.py --workers 2`` with Redis. CPU is read from /proc for
   every process of the server (the supervisor and its workers). The servers are not
   pinned (the workers use both cores); the receivers run on core 1 as everywhere. The
   goal: ``w2-redis`` at most 1.3x ``w1``.
2. ``throughput``: the sender as fast as the receivers keep up (``--window``), with the
   servers pinned to core 0 (both workers too) and the clients to core 1: the same CPU
   budget for one worker and two, so the ratio is what the second worker and Redis cost
   (or win) when the clients are not competing with them.

Prints one JSON object; ``run_workers()`` is the same for run_all.py.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

from common import (
    REDIS_URL,
    RESULTS_DIR,
    ParleyData,
    clean_workdir,
    log,
    pin_client,
    prepare_parley,
    raise_fd_limit,
    start_parley,
)
from loadclient import ReceiverPool
from samples import fanout_with_cdf
from wsload import fanout, summary

# (label, workers, Redis bus)
CONFIGS = (("w1", 1, False), ("w1-redis", 1, True), ("w2-redis", 2, True))


def _start(data: ParleyData, workdir: Path, workers: int, redis: bool, *, pin: bool):
    extra = {}
    if redis:
        extra = {"REDIS_URL": REDIS_URL, "CHAT_REDIS_PREFIX": f"wbench{secrets.token_hex(4)}"}
    return start_parley(
        workdir,
        data.fresh_db_url(),
        data.static_root,
        name=f"parley-w{workers}{'-redis' if redis else ''}",
        workers=workers,
        extra_env=extra,
        pin=pin,
        pin_workers=pin,
    )


def run_workers(
    data: ParleyData,
    workdir: Path,
    *,
    receivers: int = 1000,
    rate: float = 20.0,
    duration: float = 8.0,
    window: int = 20,
    throughput_seconds: float = 6.0,
    procs: int = 2,
) -> dict:
    """Both measurements (see the module); ``data`` must have the user ``bench-sender``."""
    cookie = data.cookie("bench-sender")
    out: dict = {"cpu": {}, "throughput": {}}
    with ReceiverPool(procs, capacity=65536) as pool:
        for label, workers, redis in CONFIGS:
            with _start(data, workdir, workers, redis, pin=False) as server:
                out["cpu"][label] = fanout_with_cdf(
                    fanout, server, pool, receivers, cookie=cookie, rate=rate, duration=duration
                )
            out["cpu"][label]["workers"] = workers
            log(f"   cpu {label}: " + summary(out["cpu"][label]))
            data.drop_clones()
        for label, workers, redis in (CONFIGS[0], CONFIGS[2]):
            with _start(data, workdir, workers, redis, pin=True) as server:
                out["throughput"][label] = fanout(
                    server, pool, receivers, cookie=cookie, window=window,
                    duration=throughput_seconds, drain_timeout=30,
                )  # fmt: skip
            out["throughput"][label]["workers"] = workers
            log(f"   throughput {label}: " + summary(out["throughput"][label]))
            data.drop_clones()
    cpu, thr = out["cpu"], out["throughput"]
    out["cpu_ratio_w2_over_w1"] = _ratio(cpu, "w2-redis", "w1", "cpu_s_per_1000")
    out["cpu_ratio_redis_over_w1"] = _ratio(cpu, "w1-redis", "w1", "cpu_s_per_1000")
    out["throughput_ratio_w2_over_w1"] = _ratio(thr, "w2-redis", "w1", "delivered_per_s")
    return out


def _ratio(runs: dict, top: str, bottom: str, key: str) -> float | None:
    a, b = runs.get(top, {}).get(key), runs.get(bottom, {}).get(key)
    return round(a / b, 3) if a is not None and b else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--receivers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="msg/s of the CPU runs [20]")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per CPU run [8]")
    parser.add_argument("--window", type=int, default=20, help="throughput runs' window [20]")
    parser.add_argument("--throughput-seconds", type=float, default=6.0)
    parser.add_argument("--procs", type=int, default=2, help="client worker processes [2]")
    parser.add_argument("--workdir", type=Path, default=RESULTS_DIR / "work-workers")
    args = parser.parse_args(argv)
    raise_fd_limit()
    pin_client()
    clean_workdir(args.workdir)
    data = prepare_parley(args.workdir)
    try:
        result = run_workers(
            data, args.workdir, receivers=args.receivers, rate=args.rate,
            duration=args.duration, window=args.window,
            throughput_seconds=args.throughput_seconds, procs=args.procs,
        )  # fmt: skip
    finally:
        data.drop()
    for runs in (result["cpu"], result["throughput"]):
        for run in runs.values():
            run.pop("latency_cdf", None)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
