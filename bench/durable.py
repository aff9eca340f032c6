#!/usr/bin/env python
"""Durable sends: committed messages per second, many senders into several rooms.

    bench/.venv-bench/bin/python bench/durable.py --db sqlite                # one process
    bench/.venv-bench/bin/python bench/durable.py --db postgres --workers 1
    bench/.venv-bench/bin/python bench/durable.py --db postgres --workers 2  # + Redis bus

``--senders`` signed-in WebSocket connections (spread over ``--users`` users and
``--rooms`` rooms) each keep ``--window`` sends in flight: a new send goes out for every
``ack``. An ack comes only after the message is committed (PROTOCOL.md "Durable ack"), so
acks per second over the measured ``--duration`` (after ``--warmup``) is the committed
rate. Every server is fresh (new database cloned from a template, new processes, a new
Redis prefix), CHAT_RATE_LIMIT=0. Servers are not pinned here: with PostgreSQL the
database needs the cores too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path

from common import (
    REDIS_URL,
    RESULTS_DIR,
    ParleyData,
    clean_workdir,
    log,
    prepare_parley,
    raise_fd_limit,
    start_parley,
)
from loadclient import Sender, client_frame, new_loop, upgrade_request
from spy import Spy, format_summary, summarize

HOST = "127.0.0.1"


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def services_cpu() -> dict:
    """CPU seconds used so far by the PostgreSQL server's processes (every process named
    ``postgres``) and by Redis, with Redis's command count: read before and after a run,
    they give what one committed message costs each service (capacity, docs/CAPACITY.md)."""
    tick = os.sysconf("SC_CLK_TCK")
    pg = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        if text[text.index("(") + 1 : text.rindex(")")] == "postgres":
            fields = text[text.rindex(")") + 2 :].split()
            pg += (int(fields[11]) + int(fields[12])) / tick
    out = {"postgres_cpu_s": pg}
    try:
        import redis

        info = redis.Redis.from_url(REDIS_URL).info()
        out |= {"redis_cpu_s": info["used_cpu_user"] + info["used_cpu_sys"],
                "redis_commands": info["total_commands_processed"]}  # fmt: skip
    except Exception:  # no Redis (a SQLite run needs none)
        pass
    return out


def per_message(before: dict, after: dict, committed: int) -> dict:
    """Each service's CPU microseconds (and Redis commands) per committed message."""
    out = {}
    for key, label, scale in (("postgres_cpu_s", "postgres_cpu_us_per_message", 1e6),
                              ("redis_cpu_s", "redis_cpu_us_per_message", 1e6),
                              ("redis_commands", "redis_commands_per_message", 1)):  # fmt: skip
        if key in before and key in after and committed:
            out[label] = round((after[key] - before[key]) * scale / committed, 2)
    return out


class DurableSender(Sender):
    """Keeps ``window`` sends in flight: every ack lets one more go."""

    def __init__(self, loop, request: bytes, name: str, window: int) -> None:
        super().__init__(loop, request)
        self.name = name
        self.window = window
        self.sent = 0
        self.running = False

    def data_received(self, data: bytes) -> None:
        before = self.acks + self.errors
        super().data_received(data)
        answered = self.acks + self.errors - before
        if self.running and answered:
            self.send_some(answered)

    def send_some(self, count: int) -> None:
        frames = []
        for _ in range(count):
            self.sent += 1
            body = f"durable {self.name} {self.sent}"
            client_id = f"{self.name}-{self.sent}"
            payload = json.dumps({"type": "send", "body": body, "client_id": client_id}).encode()
            frames.append(payload)
        self.transport.write(b"".join(client_frame(p) for p in frames))


async def _run(
    port: int,
    data: ParleyData,
    users: list[str],
    rooms: list[str],
    senders: int,
    window: int,
    warmup: float,
    duration: float,
    server,
    profile: Path | None = None,
) -> dict:
    loop = asyncio.get_running_loop()
    connections: list[DurableSender] = []
    for index in range(senders):
        user = users[index % len(users)]
        room = rooms[index % len(rooms)]
        request = upgrade_request(HOST, port, f"/ws/rooms/{room}/", data.cookie(user))
        _t, sender = await asyncio.wait_for(
            loop.create_connection(
                lambda r=request, i=index: DurableSender(loop, r, f"s{i}", window), HOST, port
            ),
            30,
        )
        await asyncio.wait_for(sender.ready, 30)
        connections.append(sender)
    await asyncio.sleep(0.5)
    for sender in connections:
        sender.running = True
        sender.send_some(window)
    await asyncio.sleep(warmup)
    spy = Spy(server.pid, profile, duration).start() if profile else None
    acks0 = sum(s.acks for s in connections)
    errors0 = sum(s.errors for s in connections)
    cpu0 = server.cpu()
    busy0 = machine_busy()
    services0 = services_cpu()
    started = time.monotonic()
    await asyncio.sleep(duration)
    elapsed = time.monotonic() - started
    acks1 = sum(s.acks for s in connections)
    errors1 = sum(s.errors for s in connections)
    cpu1 = server.cpu()
    busy1 = machine_busy()
    services1 = services_cpu()
    for sender in connections:
        sender.running = False
    await asyncio.sleep(0.5)
    profiled = await loop.run_in_executor(None, spy.wait) if spy else None
    samples = [e.decode("latin-1") for s in connections for e in s.error_samples][:3]
    for sender in connections:
        sender.close()
    committed = acks1 - acks0
    return {
        "committed": committed,
        "elapsed_s": round(elapsed, 3),
        "committed_per_s": round(committed / elapsed, 1),
        "errors": errors1 - errors0,
        "error_samples": samples,
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "server_cpu_us_per_message": round((cpu1 - cpu0) * 1e6 / max(committed, 1), 1),
        # The services' own cost (durable() keeps those the run used).
        **per_message(services0, services1, committed),
        # Busy cores of the whole machine (Parley, PostgreSQL, Redis, the client, others).
        "machine_busy_cores": round(
            (busy1[0] - busy0[0]) / max(busy1[1] - busy0[1], 1) * (os.cpu_count() or 1), 2
        ),
        "closed_senders": sum(1 for s in connections if s.closed),
        "profile": str(profiled) if profiled else None,
    }


def durable(
    data: ParleyData,
    workdir: Path,
    *,
    workers: int = 1,
    senders: int = 16,
    window: int = 32,
    warmup: float = 1.0,
    duration: float = 8.0,
    users: list[str] | None = None,
    rooms: list[str] | None = None,
    profile: Path | None = None,
) -> dict:
    users = users or [u for u in data.sessions if u.startswith("bench-d")] or list(data.sessions)
    rooms = rooms or [r for r in data.rooms if r.startswith("bench-r")] or data.rooms
    extra = {}
    if workers > 1 or data.engine == "postgres":
        # PostgreSQL runs use the Redis bus with 1 worker too: only --workers differs.
        extra = {"REDIS_URL": REDIS_URL, "CHAT_REDIS_PREFIX": f"pbench{secrets.token_hex(4)}"}
    server = start_parley(
        workdir,
        data.fresh_db_url(),
        data.static_root,
        name=f"parley-{data.engine}-w{workers}",
        workers=workers,
        extra_env=extra,
        pin=False,
    )
    with server:
        loop = new_loop()
        try:
            result = loop.run_until_complete(
                _run(
                    server.port,
                    data,
                    users,
                    rooms,
                    senders,
                    window,
                    warmup,
                    duration,
                    server,
                    profile,
                )
            )
        finally:
            loop.close()
    data.drop_clones()
    if not extra:  # this run used no Redis
        result.pop("redis_cpu_us_per_message", None)
        result.pop("redis_commands_per_message", None)
    if data.engine != "postgres":
        result.pop("postgres_cpu_us_per_message", None)
    return {
        "test": "durable",
        "db": data.engine,
        "workers": workers,
        "senders": senders,
        "rooms": len(rooms),
        "users": len(users),
        "window": window,
        **result,
    }


DURABLE_USERS = ("bench-d1", "bench-d2", "bench-d3", "bench-d4")
DURABLE_ROOMS = ("bench-r1", "bench-r2", "bench-r3", "bench-r4")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--window", type=int, default=32, help="sends in flight per sender")
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=RESULTS_DIR / "work-durable")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy the server (its first process) while measuring")  # fmt: skip
    args = parser.parse_args(argv)
    raise_fd_limit()
    clean_workdir(args.workdir)
    log(f"preparing Parley's {args.db} database")
    data = prepare_parley(
        args.workdir, engine=args.db, users=DURABLE_USERS, rooms=("lobby", *DURABLE_ROOMS)
    )
    try:
        result = durable(data, args.workdir, workers=args.workers, senders=args.senders,
                         window=args.window, warmup=args.warmup, duration=args.duration,
                         profile=args.profile)  # fmt: skip
    finally:
        data.drop()
    log(
        f"durable {args.db} x{args.workers} worker(s): {result['committed_per_s']:.0f}"
        f" committed msgs/s ({result['errors']} errors)"
    )
    if result.get("profile"):
        log("profile of the server while sending:\n" + format_summary(summarize(args.profile)))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
