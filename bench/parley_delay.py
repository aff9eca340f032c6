#!/usr/bin/env python
"""The delay from ``chat.parley.send`` in another process (no reactor: a script, a Celery
worker) to a browser's WebSocket, and what the servers' cursor check costs.

    .venv/bin/python bench/parley_delay.py                 # both setups, 20 sends each
    .venv/bin/python bench/parley_delay.py --only sqlite   # one server, SQLite, no Redis
    .venv/bin/python bench/parley_delay.py --only redis    # --workers 2, PostgreSQL + Redis
    .venv/bin/python bench/parley_delay.py --check-cost --rooms 1000 --seconds 20

Delay: a real ``serve.py``, WebSocket clients in the room (one per worker at least), and
tests/parley_sender.py posting ``--sends`` messages about ``--gap`` seconds apart; the
delay of one delivery is its arrival at a client minus the moment the sender called
``parley.send`` (one machine, one clock). With Redis the cursor check is off, so the bus
alone delivers; the room check is an hour away in both setups.

Check cost: an idle server whose ``--rooms`` rooms are all live (one user, member of every
room, holds an inbox stream, which follows each room), its CPU over ``--seconds`` with the
cursor check at ``CHAT_CURSOR_CHECK_SECONDS`` 0.25 and off. Prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from common import cpu_seconds, log  # noqa: E402
from live_clients import provision, run  # noqa: E402
from parley_delays import (  # noqa: E402
    TimedWSClient,
    delays_to,
    send_from_another_process,
    summary,
)
from parley_testing import ServerProcess  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

PASSWORD = "bench-pw-48213-x"
SLUG = "pyapi"
QUIET = {"CHAT_ROOM_CHECK_SECONDS": "3600", "CHAT_RATE_LIMIT": "0"}


def delay(workdir: Path, env: dict, args: list[str], sends: int, gap: float, clients: int):
    server = ServerProcess(workdir, env=env, args=args).start()
    try:
        accounts = provision(server, users=[("alice", PASSWORD), ("bot", PASSWORD)], rooms=[SLUG])

        async def main():
            opened = [
                await TimedWSClient.connect(server, SLUG, accounts["alice"])
                for _ in range(clients)
            ]
            try:
                for ws in opened:
                    await ws.wait_for(lambda f: f.get("type") == "hello", what="hello")
                made = await send_from_another_process(server.env, SLUG, "bot", sends, gap)
                return await delays_to(opened, made), made
            finally:
                for ws in opened:
                    await ws.close()

        delays, made = run(main(), timeout=300)
        return summary(delays, made)
    finally:
        server.stop()


def check_cost(workdir: Path, rooms: int, seconds: float, interval: str) -> dict:
    env = {**QUIET, "CHAT_CURSOR_CHECK_SECONDS": interval}
    server = ServerProcess(workdir, env=env).start()
    try:
        slugs = [f"r{i:04d}" for i in range(rooms)]
        account = provision(
            server,
            users=[("alice", PASSWORD)],
            rooms=[{"slug": s, "members": ["alice"]} for s in slugs],
        )["alice"]

        async def main():
            url = server.url.replace("http://", "ws://") + "/ws/me/"
            async with connect(
                url, additional_headers={"Cookie": account.cookie_header}, max_size=2**24
            ) as ws:
                hello = json.loads(await ws.recv())
                assert hello["type"] == "hello", hello
                await asyncio.sleep(3)  # every room followed, start-up work done
                before = cpu_seconds(server.proc.pid)
                await asyncio.sleep(seconds)
                return cpu_seconds(server.proc.pid) - before, len(hello.get("rooms", []))

        used, followed = run(main(), timeout=seconds + 120)
        return {
            "cursor_check_seconds": float(interval),
            "rooms_followed": followed,
            "cpu_seconds": round(used, 3),
            "cpu_percent_of_a_core": round(100 * used / seconds, 2),
        }
    finally:
        server.stop()


def redis_setup(workdir: Path) -> tuple[dict, callable]:
    import psycopg

    name = f"parley_bench_{secrets.token_hex(4)}"
    with psycopg.connect(
        host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(
            host="127.0.0.1", user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    env = {
        **QUIET,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "CHAT_REDIS_PREFIX": f"bench-{secrets.token_hex(4)}",
        "CHAT_CURSOR_CHECK_SECONDS": "0",  # the bus alone delivers
    }
    return env, drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("sqlite", "redis"))
    parser.add_argument("--sends", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.3)
    parser.add_argument("--check-cost", action="store_true")
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/parley-delay-bench"))
    args = parser.parse_args()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = args.workdir / stamp
    results: dict = {}
    if args.check_cost:
        for interval in ("0.25", "0"):
            log(f"check cost: {args.rooms} live rooms, cursor check {interval}")
            found = check_cost(root / f"cost-{interval}", args.rooms, args.seconds, interval)
            results[f"idle_cpu_cursor_check_{interval}"] = found
    else:
        if args.only in (None, "sqlite"):
            log("delay: one server, SQLite, no Redis")
            results["sqlite_no_redis"] = delay(
                root / "sqlite", dict(QUIET), [], args.sends, args.gap, clients=1
            )
        if args.only in (None, "redis"):
            log("delay: --workers 2, PostgreSQL + Redis")
            env, drop = redis_setup(root)
            try:
                results["postgres_redis_workers_2"] = delay(
                    root / "redis", env, ["--workers", "2"], args.sends, args.gap, clients=4
                )
            finally:
                drop()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
