#!/usr/bin/env python
"""WebSocket (and SSE / long-poll) load tool: ``hold`` idle connections, ``fanout`` a room.

    bench/.venv-bench/bin/python bench/wsload.py hold --server parley --connections 10000
    bench/.venv-bench/bin/python bench/wsload.py fanout --server daphne-memory --receivers 1000
    bench/.venv-bench/bin/python bench/wsload.py fanout --server parley --transport sse \
        --receivers 200 --rate 50 --duration 8

Each command starts a FRESH server (``--server`` parley | daphne-memory | daphne-redis |
bare), pinned to core 0, with the client processes on core 1, runs bounded in time, kills
the server and prints one JSON object (the numbers) on stdout.

hold:   N idle WebSocket connections. connected, failed, handshake p50/p99 (ms, TCP
        connect to 101 at the client), server RSS per connection (RSS growth / connected),
        server CPU per connect (CPU seconds of the connect phase / connected).
fanout: N receivers in one room, one sender. ``--rate R`` sends R msg/s (the latency
        test); ``--window W`` sends as fast as the receivers keep up, with at most W
        messages not yet received by every receiver (the throughput test). delivered,
        lost, duplicated, out of order, latency p50/p95/p99/max (ms, send time in the
        body to the receiver's read), delivered msgs/s (deliveries / first send to last
        delivery), server CPU seconds per 1000 deliveries (/proc/<pid>/stat around the
        sending and draining).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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
    raise_fd_limit,
    start_named,
)
from loadclient import ReceiverPool, body_marker, loop_name, new_loop, open_sender, percentile
from spy import Spy, format_summary, summarize

HOST = "127.0.0.1"


def transport_path(server: Server, transport: str, room: str) -> str:
    if transport == "ws":
        return server.ws_path(room)
    if transport == "sse":
        return f"/events/rooms/{room}/"
    return f"/poll/rooms/{room}/"


def _ms(seconds_list, fraction: float) -> float | None:
    value = percentile(seconds_list, fraction)
    return None if value is None else round(value * 1000, 2)


# --------------------------------------------------------------------------- hold


def hold(
    server: Server,
    pool: ReceiverPool,
    connections: int,
    *,
    room: str = "lobby",
    hold_seconds: float = 5.0,
    concurrency: int = 50,
    warm: int = 20,
    profile: Path | None = None,
) -> dict:
    path = server.ws_path(room)
    pool.connect(warm, "ws", HOST, server.port, path)
    pool.close_receivers()
    time.sleep(0.5)
    rss0, cpu0 = server.rss(), server.cpu()
    spy = Spy(server.pid, profile, 10).start() if profile else None
    started = time.monotonic()
    result = pool.connect(connections, "ws", HOST, server.port, path, concurrency=concurrency)
    connect_seconds = time.monotonic() - started
    cpu1 = server.cpu()
    if spy is not None:
        spy.wait()
    time.sleep(1.0)
    rss1 = server.rss()
    time.sleep(hold_seconds)
    stats = pool.stats(expected=0)
    cpu2 = server.cpu()
    pool.close_receivers()
    connected = result["connected"]
    return {
        "test": "hold",
        "server": server.name,
        "requested": connections,
        "connected": connected,
        "failed": result["failed"],
        "errors": result["errors"],
        "alive_after_hold": stats["alive"],
        "connect_seconds": round(connect_seconds, 2),
        "handshake_p50_ms": _ms(result["handshake"], 0.50),
        "handshake_p99_ms": _ms(result["handshake"], 0.99),
        "rss_before_mb": round(rss0 / 2**20, 1),
        "rss_after_mb": round(rss1 / 2**20, 1),
        "rss_per_conn_kb": round((rss1 - rss0) / max(connected, 1) / 1024, 2),
        "cpu_per_connect_ms": round((cpu1 - cpu0) / max(connected, 1) * 1000, 4),
        "idle_cpu_s_during_hold": round(cpu2 - cpu1, 3),
        "hold_seconds": hold_seconds,
    }


# --------------------------------------------------------------------------- fanout


async def _drive(
    server: Server,
    pool: ReceiverPool,
    receivers: int,
    *,
    room: str,
    cookie: str | None,
    rate: float | None,
    window: int | None,
    duration: float,
    max_messages: int | None,
    settle: float,
    drain_timeout: float,
    stall_seconds: float = 3.0,
    profile: Path | None = None,
) -> dict:
    sender = await open_sender(HOST, server.port, server.ws_path(room), cookie)
    await asyncio.sleep(settle)  # hello, presence to everyone (a signed-in user joined)
    spy = Spy(server.pid, profile, duration).start() if profile else None
    start_ns = time.time_ns()
    t0 = time.monotonic()
    cpu0 = server.cpu()
    client0 = pool.cpu()
    deadline = t0 + duration
    limit = max_messages or 10**9
    sent = 0
    stalled = False
    send = sender.send_text
    payload = server.send_payload
    if rate:
        while sent < limit:
            now = time.monotonic()
            if now >= deadline:
                break
            due = t0 + sent / rate
            if due > now:
                await asyncio.sleep(due - now)
                continue
            send(payload(body_marker(sent), f"b{sent}"))
            sent += 1
    else:
        window = window or 20
        seen, last_progress = -1, time.monotonic()
        while sent < limit:
            now = time.monotonic()
            if now >= deadline:
                break
            done = pool.delivered()
            if done != seen:
                seen, last_progress = done, now
            allowed = min(done // receivers + window, limit)
            if sent < allowed:
                for _ in range(allowed - sent):
                    send(payload(body_marker(sent), f"b{sent}"))
                    sent += 1
                await asyncio.sleep(0)
            elif now - last_progress > stall_seconds:
                stalled = True
                break
            else:
                await asyncio.sleep(0.0005)
    send_seconds = time.monotonic() - t0
    # Drain: until every receiver has every message, or nothing moves for stall_seconds.
    want = sent * receivers
    seen, last_progress = -1, time.monotonic()
    drain_deadline = time.monotonic() + drain_timeout
    while time.monotonic() < drain_deadline:
        done = pool.delivered()
        if done >= want:
            break
        if done != seen:
            seen, last_progress = done, time.monotonic()
        elif time.monotonic() - last_progress > stall_seconds:
            break
        await asyncio.sleep(0.005)
    cpu1 = server.cpu()
    client1 = pool.cpu()
    await asyncio.sleep(0.2)  # late acks to the sender
    sender.close()
    profiled = await asyncio.get_running_loop().run_in_executor(None, spy.wait) if spy else None
    return {
        "profile": str(profiled) if profiled else None,
        "sent": sent,
        "send_seconds": send_seconds,
        "start_ns": start_ns,
        "cpu": cpu1 - cpu0,
        "client_cpu": client1 - client0,
        "stalled": stalled,
        "acks": sender.acks,
        "echoes": sender.echoes,
        "send_errors": sender.errors,
        "error_samples": [e.decode("latin-1") for e in sender.error_samples],
    }


def fanout(
    server: Server,
    pool: ReceiverPool,
    receivers: int,
    *,
    transport: str = "ws",
    room: str = "lobby",
    cookie: str | None = None,
    rate: float | None = None,
    window: int | None = None,
    duration: float = 10.0,
    max_messages: int | None = None,
    settle: float = 0.5,
    drain_timeout: float = 15.0,
    concurrency: int = 50,
    profile: Path | None = None,
) -> dict:
    path = transport_path(server, transport, room)
    connect = pool.connect(receivers, transport, HOST, server.port, path, concurrency=concurrency)
    connected = connect["connected"]
    if connected == 0:
        raise RuntimeError(f"no receiver could connect to {server.name}: {connect['errors']}")
    loop = new_loop()
    try:
        drive = loop.run_until_complete(
            _drive(
                server,
                pool,
                connected,
                room=room,
                cookie=cookie,
                rate=rate,
                window=window,
                duration=duration,
                max_messages=max_messages,
                settle=settle,
                drain_timeout=drain_timeout,
                profile=profile,
            )
        )
    finally:
        loop.close()
    stats = pool.stats(expected=drive["sent"])
    pool.close_receivers()
    latency = sorted(stats.pop("latency_us"))
    delivered = stats["unique"]
    elapsed = max((stats["last_ns"] - drive["start_ns"]) / 1e9, 1e-9)
    cpu = drive["cpu"]

    def lat_ms(fraction: float) -> float | None:
        value = percentile(latency, fraction)
        return None if value is None else round(value / 1000, 2)

    return {
        "test": "fanout",
        "server": server.name,
        "transport": transport,
        "mode": f"rate {rate}/s" if rate else f"window {window or 20}",
        "receivers": connected,
        "failed_connects": connect["failed"],
        "sent": drive["sent"],
        "send_rate": round(drive["sent"] / max(drive["send_seconds"], 1e-9), 1),
        "acks": drive["acks"],
        "send_errors": drive["send_errors"],
        "error_samples": drive["error_samples"],
        "expected": drive["sent"] * connected,
        "delivered": delivered,
        "lost": stats["lost"],
        "duplicated": stats["dup"],
        "out_of_order": stats["ooo"],
        "closed_by_server": stats["dropped"],
        "close_codes": stats["close_codes"],
        "stalled": drive["stalled"],
        "elapsed_s": round(elapsed, 3),
        "delivered_per_s": round(delivered / elapsed, 1),
        "server_cpu_s": round(cpu, 3),
        "cpu_s_per_1000": round(cpu / max(delivered, 1) * 1000, 5),
        "server_cpu_util": round(cpu / elapsed, 3),
        "client_cpu_util": round(drive["client_cpu"] / elapsed, 3),
        "lat_p50_ms": lat_ms(0.50),
        "lat_p95_ms": lat_ms(0.95),
        "lat_p99_ms": lat_ms(0.99),
        "lat_max_ms": lat_ms(1.0),
        "profile": drive["profile"],
    }


def summary(result: dict) -> str:
    if result["test"] == "hold":
        return (
            f"hold {result['server']}: {result['connected']}/{result['requested']} connected,"
            f" {result['failed']} failed, handshake p50 {result['handshake_p50_ms']} ms"
            f" p99 {result['handshake_p99_ms']} ms, {result['rss_per_conn_kb']} KiB/conn,"
            f" {result['cpu_per_connect_ms']} ms CPU/connect"
        )
    return (
        f"fanout {result['server']}/{result['transport']} x{result['receivers']}"
        f" ({result['mode']}): sent {result['sent']}, delivered {result['delivered']}"
        f" lost {result['lost']} dup {result['duplicated']} ooo {result['out_of_order']},"
        f" {result['delivered_per_s']:.0f} msg/s, {result['cpu_s_per_1000']:.4f} CPU s/1000,"
        f" p50 {result['lat_p50_ms']} p99 {result['lat_p99_ms']} max {result['lat_max_ms']} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("hold", "fanout"):
        p = sub.add_parser(name)
        p.add_argument("--server", default="parley",
                       choices=["parley", "daphne-memory", "daphne-redis", "bare"])  # fmt: skip
        p.add_argument("--procs", type=int, default=2, help="client worker processes [2]")
        p.add_argument("--concurrency", type=int, default=50, help="handshakes in flight [50]")
        p.add_argument("--workdir", type=Path, default=RESULTS_DIR / "work-wsload")
        p.add_argument("--no-pin", action="store_true", help="do not pin server/clients to cores")
    sub.choices["hold"].add_argument("--connections", type=int, default=10_000)
    sub.choices["hold"].add_argument("--hold", type=float, default=5.0, help="seconds held")
    f = sub.choices["fanout"]
    f.add_argument("--receivers", type=int, default=1000)
    f.add_argument("--transport", default="ws", choices=["ws", "sse", "poll"])
    f.add_argument("--rate", type=float, default=None, help="msg/s (default: --window mode)")
    f.add_argument("--window", type=int, default=20, help="messages in flight end to end")
    f.add_argument("--duration", type=float, default=10.0, help="seconds of sending")
    f.add_argument("--messages", type=int, default=None, help="stop after this many")
    f.add_argument("--workers", type=int, default=1,
                   help="Parley: serve.py --workers N over Redis; use --no-pin")  # fmt: skip
    f.add_argument("--profile", type=Path, default=None,
                   help="py-spy the server while sending; raw stacks to this file")  # fmt: skip
    args = parser.parse_args(argv)

    raise_fd_limit()
    pin = not args.no_pin
    if pin:
        pin_client()
    clean_workdir(args.workdir)
    data = None
    if args.server == "parley":
        log("preparing Parley's database (users signed in once)")
        data = prepare_parley(args.workdir)
    capacity = 4096 if args.command == "hold" else 65536
    log(f"client: {args.procs} worker processes on {loop_name()}")
    try:
        with ReceiverPool(args.procs, capacity=capacity) as pool:
            options = {}
            if args.server == "parley" and getattr(args, "workers", 1) > 1:
                options = {
                    "workers": args.workers,
                    "extra_env": {
                        "REDIS_URL": "redis://127.0.0.1:6379/0",
                        "CHAT_REDIS_PREFIX": f"bench-{os.getpid()}",
                    },
                }
            server = start_named(args.server, args.workdir, data, pin=pin, **options)
            with server:
                if args.command == "hold":
                    result = hold(server, pool, args.connections, hold_seconds=args.hold,
                                  concurrency=args.concurrency)  # fmt: skip
                else:
                    cookie = data.cookie("bench-sender") if data else None
                    result = fanout(
                        server,
                        pool,
                        args.receivers,
                        transport=args.transport,
                        cookie=cookie,
                        rate=args.rate,
                        window=None if args.rate else args.window,
                        duration=args.duration,
                        max_messages=args.messages,
                        concurrency=args.concurrency,
                        profile=args.profile,
                    )
    finally:
        if data is not None:
            data.drop()
    log(summary(result))
    if result.get("profile"):
        log("profile of the server while sending:\n" + format_summary(summarize(args.profile)))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
