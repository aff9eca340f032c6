#!/usr/bin/env python
"""Server CPU per delivered message: N IRC clients against N WebSocket clients of one room,
in the same server run (PROTOCOL.md "IRC gateway"; issue 13).

    .venv/bin/python bench/irc_fanout.py --clients 1000 --messages 100 --rate 20

One fresh ``serve.py --irc-port`` (SQLite, no rate limit, the per-user connection cap
raised), pinned to core 0, the clients (asyncio, this process) on core 1. Three phases
in the same process: the IRC clients alone (each registered with PASS <token>, JOINed to
``#bench``), the WebSocket clients alone (anonymous readers of the public room), then
both at once. Each phase sends ``--messages`` messages from one more IRC client at
``--rate`` per second, waits until every receiver has every message, and reads the
server's CPU (utime + stime, /proc/<pid>/stat) around it, less the idle CPU of the same
time (measured before). Prints one JSON object: per phase, deliveries, seconds, server
CPU seconds, and microseconds of server CPU per delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_seconds, free_port, raise_fd_limit  # noqa: E402

ROOM = "bench"
_MAKE = """
import json
from django.contrib.auth.models import User
from chat import tokens
from chat.models import Room
Room.objects.get_or_create(slug="bench", defaults={"name": "bench", "is_public": True})
out = {}
for name in ("sender", "reader"):
    user, _ = User.objects.get_or_create(username=name)
    out[name] = tokens.make(user, "bench")[1]
print("TOKENS " + json.dumps(out))
"""


def start_server(workdir: Path, irc_port: int) -> tuple[subprocess.Popen, str, dict]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "STATIC_ROOT": str(workdir / "static"),
        "DJANGO_SECRET_KEY": "irc-fanout-bench-secret-key-0123456789-abcdefghijklmnop",
        "CHAT_RATE_LIMIT": "0",
        "CHAT_MAX_CONNECTIONS_PER_USER": "100000",
        "LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
    }
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 (the server's lifetime)
    proc = subprocess.Popen(
        [
            "taskset",
            "-c",
            "0",
            sys.executable,
            str(REPO / "serve.py"),
            "--port",
            "0",
            "--irc-port",
            str(irc_port),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        text = (workdir / "server.log").read_text(errors="replace")
        match = re.search(r"serving on (http://\S+?)/? ", text)
        if match:
            return proc, match.group(1), env
        if proc.poll() is not None:
            raise SystemExit(f"serve.py exited:\n{text}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("serve.py did not start")


def make_tokens(env: dict) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, str(REPO / "manage.py"), "shell", "-c", _MAKE],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("TOKENS "))
    return json.loads(line.removeprefix("TOKENS "))


class Counter:
    def __init__(self) -> None:
        self.received = 0


async def irc_client(port: int, token: str, nick: str, counter: Counter, ready, stop):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(
        f"PASS {token}\r\nNICK {nick}\r\nUSER {nick} 0 * :{nick}\r\nJOIN #{ROOM}\r\n".encode()
    )
    joined = False
    try:
        while not stop.is_set():
            line = await reader.readline()
            if not line:
                return
            if not joined and b" 366 " in line:
                joined = True
                ready()
            elif b" PRIVMSG #" in line:
                counter.received += 1
            elif line.startswith(b"PING"):
                writer.write(b"PONG" + line[4:])
    finally:
        writer.close()


async def ws_client(url: str, counter: Counter, ready, stop):
    async with websockets.connect(
        url, compression=None, ping_interval=None, max_size=2**22, open_timeout=60
    ) as conn:
        ready()
        while not stop.is_set():
            message = await conn.recv()
            if '"type":"message"' in message:
                counter.received += 1


async def connect_all(factory, count: int) -> tuple[list, Counter, asyncio.Event]:
    counter, stop = Counter(), asyncio.Event()
    done = 0
    all_ready = asyncio.Event()

    def ready():
        nonlocal done
        done += 1
        if done == count:
            all_ready.set()

    tasks = []
    for index in range(count):
        tasks.append(asyncio.create_task(factory(index, counter, ready, stop)))
        if index % 50 == 49:
            await asyncio.sleep(0.05)  # not one SYN flood: the backlog is finite
    await asyncio.wait_for(all_ready.wait(), 180)
    return tasks, counter, stop


def note(text: str) -> None:
    print(f"irc_fanout: {text}", file=sys.stderr, flush=True)


async def idle_rate(pid: int, seconds: float = 3.0) -> float:
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


async def phase(name, pid, send, counters, receivers, messages, rate) -> dict:
    note(f"phase {name}: {receivers} receivers connected")
    await asyncio.sleep(5)  # joins' presence broadcasts over before the idle reading
    idle = await idle_rate(pid)
    for counter in counters:
        counter.received = 0
    started, cpu0 = time.monotonic(), cpu_seconds(pid)
    for n in range(messages):
        await send(f"fanout {name} {n}")
        await asyncio.sleep(1 / rate)
    want = messages * receivers
    deadline = time.monotonic() + 120
    while sum(c.received for c in counters) < want and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    elapsed, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu0
    got = sum(c.received for c in counters)
    net = max(cpu - idle * elapsed, 0.0)
    return {
        "phase": name,
        "receivers": receivers,
        "deliveries": got,
        "expected": want,
        "seconds": round(elapsed, 2),
        "server_cpu_s": round(cpu, 3),
        "idle_cpu_per_s": round(idle, 4),
        "us_cpu_per_delivery": round(net / got * 1e6, 2) if got else None,
        "us_cpu_per_delivery_raw": round(cpu / got * 1e6, 2) if got else None,
    }


async def run(args) -> dict:
    raise_fd_limit()
    workdir = Path(tempfile.mkdtemp(prefix="irc-fanout-"))
    irc_port = free_port()
    proc, url, env = start_server(workdir, irc_port)
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {1})
    try:
        tokens = make_tokens(env)
        note("tokens made")
        # Senders: the gateway lets one connection send 10 lines a second beyond a burst
        # (chat/irc/protocol.py's flood bound), so --rate is spread over several.
        senders = []
        for _ in range(max(1, int(-(-args.rate // 8)))):
            reader, writer = await asyncio.open_connection("127.0.0.1", irc_port)
            writer.write(
                f"PASS {tokens['sender']}\r\nNICK sender\r\nUSER s 0 * :s\r\n"
                f"JOIN #{ROOM}\r\n".encode()
            )
            while b" 366 " not in await reader.readline():
                pass
            senders.append((reader, writer))

        async def drain_sender(reader):
            while line := await reader.readline():
                if b"Flood" in line or line.startswith(b"ERROR"):
                    note(f"sender told: {line!r}")

        drainers = [asyncio.create_task(drain_sender(r)) for r, _ in senders]
        note(f"{len(senders)} sender(s) joined")
        sent = 0

        async def send(text: str) -> None:
            nonlocal sent
            senders[sent % len(senders)][1].write(f"PRIVMSG #{ROOM} :{text}\r\n".encode())
            sent += 1

        ws_url = url.replace("http://", "ws://") + f"/ws/rooms/{ROOM}/"
        n = args.clients
        results = []

        def irc_factory(i, counter, ready, stop):
            return irc_client(irc_port, tokens["reader"], "reader", counter, ready, stop)

        def ws_factory(i, counter, ready, stop):
            return ws_client(ws_url, counter, ready, stop)

        irc_tasks, irc_count, irc_stop = await connect_all(irc_factory, n)
        results.append(
            await phase("irc", proc.pid, send, [irc_count], n, args.messages, args.rate)
        )
        ws_tasks, ws_count, ws_stop = await connect_all(ws_factory, n)
        # both: the same server, both kinds of subscribers in the room at once
        results.append(
            await phase(
                "irc+websocket",
                proc.pid,
                send,
                [irc_count, ws_count],
                2 * n,
                args.messages,
                args.rate,
            )
        )
        irc_stop.set()
        for task in irc_tasks:
            task.cancel()
        await asyncio.sleep(3)  # the IRC clients' ends, presence settled
        results.append(
            await phase("websocket", proc.pid, send, [ws_count], n, args.messages, args.rate)
        )
        ws_stop.set()
        for task in ws_tasks:
            task.cancel()
        for drainer in drainers:
            drainer.cancel()
        by = {r["phase"]: r for r in results}
        return {
            "clients": n,
            "messages": args.messages,
            "rate": args.rate,
            "phases": results,
            "irc_us_per_delivery": by["irc"]["us_cpu_per_delivery"],
            "websocket_us_per_delivery": by["websocket"]["us_cpu_per_delivery"],
        }
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
