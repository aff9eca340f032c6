"""Soak: a fresh Parley under thousands of churning clients on every door (issue 15, part 2).

    .venv/bin/python bench/soak.py                      # 30 min, 2,000 clients, SQLite
    .venv/bin/python bench/soak.py --minutes 3 --clients 500
    .venv/bin/python bench/soak.py --postgres           # PostgreSQL + Redis, --workers 2

Runs in Parley's venv (the clients need only httpx and websockets); the charts are drawn
by bench/.venv-bench's matplotlib (``--chart samples.json`` redraws them). The clients
run on asyncio in ``--procs`` processes, each writing its own history; every client opens
its room (WebSocket, SSE, long-poll, the inbox ``/ws/me/`` or IRC), stays a while sending,
editing, reacting, marking read and uploading, leaves, and comes back with ``since``; some
try the private room they are not members of and must be refused. The server's RSS,
descriptors, threads, database connections and Redis memory are sampled every
``--sample-seconds``. At the end every room reader reconnects and drains, and the checker
(bench/reliability/checker.py) runs over all histories and the database log.

Pass: RSS grows under 5% after warm-up (the first fifth), descriptors come back to their
baseline (+5) after the clients leave, the p99 send latency of the last third is at most
1.5 times that of the first third (or 25 ms above it) and under 1 s, and the checker
finds nothing.
Writes ``samples.json``, ``result.json`` and ``soak.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench.reliability import checker  # noqa: E402
from bench.reliability.clients import (  # noqa: E402
    InboxWS,
    IRCClient,
    RoomPoll,
    RoomSSE,
    RoomWS,
    http_client,
)
from bench.reliability.history import History  # noqa: E402
from bench.soak_samples import chart, sample, sampler, signal_servers, verdict  # noqa: E402

DOORS = ("ws", "sse", "poll", "inbox", "irc")
VAULT = "vault"  # the private room: members are the first VAULT_MEMBERS users
VAULT_MEMBERS = 5


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --------------------------------------------------------------------------- one client


async def life(ctx: dict, i: int, hist: History, lat: list) -> None:
    """One client: visits until ``stop_at``, then reconnects and drains until ``end_at``."""
    rng = random.Random(i)
    user = f"u{i % ctx['users']}"
    door = DOORS[i % len(DOORS)]
    room = f"r{(i % ctx['users']) % ctx['rooms']}"
    name = f"{door}-{i}"
    token = ctx["tokens"][user]
    last_seq, cycle = 0, 0
    await asyncio.sleep(rng.uniform(0, ctx["ramp"]))

    def make(slug: str):
        if door == "ws":
            return RoomWS(ctx["base"], slug, user, token, hist, name)
        if door == "sse":
            return RoomSSE(ctx["base"], slug, user, token, hist, name)
        if door == "poll":
            return RoomPoll(ctx["base"], slug, user, token, hist, name)
        if door == "inbox":
            return InboxWS(ctx["base"], user, token, hist, name)
        return IRCClient("127.0.0.1", ctx["irc_port"], slug, user, token, hist, name)

    while time.time() < ctx["stop_at"]:
        cycle += 1
        client = make(room)
        try:
            if not await client.open(since=last_seq if door in ("ws", "sse", "poll") else None):
                raise RuntimeError(f"{name} refused its own room")
            leave = min(time.time() + rng.uniform(*ctx["stay"]), ctx["stop_at"])
            while time.time() < leave:
                await asyncio.sleep(min(rng.expovariate(1 / ctx["interval"]), leave - time.time()))
                if time.time() < leave:
                    await act(client, door, rng, lat)
        except (OSError, RuntimeError, TimeoutError) as exc:
            hist.record(name, user, "client_error", detail=repr(exc)[:200])
        last_seq = max(last_seq, client.last_seq)
        await client.close("left")
        if door in ("ws", "sse", "poll") and cycle % 3 == 1:
            await intrude(make, user, hist, name)
        await asyncio.sleep(rng.uniform(0.5, 3))
    if door not in ("ws", "sse", "poll"):
        return
    await asyncio.sleep(max(0.0, ctx["final_at"] - time.time()))
    client = make(room)
    try:
        opened = await client.open(since=last_seq)
    except (OSError, RuntimeError, TimeoutError) as exc:
        hist.record(name, user, "client_error", detail=repr(exc)[:200])
        return
    if opened:
        await drain(ctx, client, room, token)
        await client.close("end")


async def drain(ctx: dict, client, room: str, token: str) -> None:
    """Read until the reader has its room's last seq, as the API tells it, twice in a row
    a second apart (a send acked late may still commit after the writers stopped), or
    until ``end_at``: a fixed drain was too short for a loaded server and left readers
    behind that were only slow."""
    import httpx

    async with http_client(
        base_url=ctx["base"], headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as http:
        settled = 0
        while time.time() < ctx["end_at"] and settled < 2:
            await asyncio.sleep(1.0)
            try:
                resp = await http.get(f"/api/rooms/{room}/")
                last = resp.json()["last_seq"] if resp.status_code == 200 else None
            except (httpx.HTTPError, ValueError, KeyError):
                last = None
            settled = settled + 1 if last is not None and client.last_seq >= last else 0


async def intrude(make, user: str, hist: History, name: str) -> None:
    """Open the private room as a non-member: the server must refuse it."""
    if int(user[1:]) < VAULT_MEMBERS:
        return
    client = make(VAULT)
    if await client.open(since=0):  # the checker reports the open as a violation
        await asyncio.sleep(1)
        await client.close("left")


async def act(client, door: str, rng: random.Random, lat: list) -> None:
    t0 = time.monotonic()
    roll = rng.random()
    own = getattr(client, "own", None)
    if door == "ws":
        if roll < 0.1 and own:
            answer = await client.request({"type": "edit", "target": own, "body": "edited"})
        elif roll < 0.2 and client.last_seq:
            frame = {"type": "react", "target": client.last_seq, "emoji": "👍", "op": "add"}
            answer = await client.request(frame)
        elif roll < 0.3 and client.last_seq:
            return await client.read(client.last_seq)
        else:
            answer = await client.send(f"hello {rng.random():.6f}")
            if answer and answer.get("type") == "ack":
                client.own = answer["seq"]
        if answer is not None:
            lat.append((time.time(), (time.monotonic() - t0) * 1000, door))
    elif door in ("sse", "poll"):
        frame: dict = {"body": f"hi {rng.random():.6f}"}
        if roll < 0.05:
            upload = await client.upload("note.txt", os.urandom(64).hex().encode())
            if upload:
                frame["attachments"] = [upload["id"]]
        elif roll < 0.15 and client.last_seq:
            await client.http.post(
                f"/poll/rooms/{client.room}/", json={"type": "read", "seq": client.last_seq}
            )
            return
        if await client.post(frame) is not None:
            lat.append((time.time(), (time.monotonic() - t0) * 1000, door))
    elif door == "irc" and roll < 0.3:
        await client.say(f"irc {rng.random():.6f}")


def worker(ctx: dict, indices: list[int], out: Path, k: int) -> None:
    raise_fd_limit()
    # On one machine the clients (httpx, websockets, a history record per event) need
    # more CPU than the server: at the same priority 4 client processes and the server
    # share the cores five ways, and the server's latency is its wait for a core.
    os.nice(ctx["client_nice"])
    hist = History(out / f"history-{k}.jsonl", prefix=f"p{k}")
    lat: list = []

    async def main() -> None:
        async def flusher() -> None:
            while True:
                await asyncio.sleep(2)
                hist.flush()

        flushing = asyncio.create_task(flusher())
        results = await asyncio.gather(
            *(life(ctx, i, hist, lat) for i in indices), return_exceptions=True
        )
        flushing.cancel()
        for i, r in zip(indices, results, strict=True):
            if isinstance(r, BaseException):
                hist.record(f"c{i}", None, "client_error", detail=repr(r)[:200])

    asyncio.run(main())
    hist.close()
    (out / f"latency-{k}.json").write_text(json.dumps(lat))


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args, out: Path):
    from parley_testing import ServerProcess

    env = {"CHAT_RATE_LIMIT": "0", "CHAT_MAX_CONNECTIONS_PER_USER": "1000", "LOG_LEVEL": "WARNING"}
    if args.trace_memory:
        env["PARLEY_TRACEMALLOC"] = str(out / "memory.txt")  # project/memory_dump.py
    extra = ["--irc-port", str(args.irc_port)]
    db_url = None
    if args.postgres:
        import psycopg

        name = f"soak_{os.getpid()}"
        with psycopg.connect(
            "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
        ) as c:
            c.execute(f"CREATE DATABASE {name}")
        db_url = f"postgres://postgres@127.0.0.1:5432/{name}"
        env |= {"REDIS_URL": "redis://127.0.0.1:6379/0", "CHAT_REDIS_PREFIX": name}
        extra += ["--workers", "2"]
    server = ServerProcess(out / "server", env=env, args=extra, database_url=db_url)
    return server.start(timeout=120)


def provision(server, args) -> dict[str, str]:
    from live_clients import provision as make_users
    from token_testing import make_tokens

    users = [f"u{n}" for n in range(args.users)]
    rooms = [
        {"slug": f"r{r}", "members": [u for n, u in enumerate(users) if n % args.rooms == r]}
        for r in range(args.rooms)
    ]
    rooms.append({"slug": VAULT, "public": False, "members": users[:VAULT_MEMBERS]})
    make_users(server, users=[(u, "soak-pw") for u in users], rooms=rooms, sessions=False)
    return make_tokens(server, *[(u, u) for u in users])


# --------------------------------------------------------------------------- main


def run(args) -> dict:
    raise_fd_limit()
    out = Path(args.out or tempfile.mkdtemp(prefix="soak-"))
    out.mkdir(parents=True, exist_ok=True)
    args.irc_port = free_port()
    server = start_server(args, out)
    stop = threading.Event()
    try:
        tokens = provision(server, args)
        samples: list = [sample(server, args)]
        baseline = samples[0]
        t0 = time.time()
        stop_at = t0 + args.minutes * 60
        ctx = {
            "base": server.url,
            "irc_port": args.irc_port,
            "tokens": tokens,
            "users": args.users,
            "rooms": args.rooms,
            "ramp": min(30.0, args.minutes * 6),
            "stay": tuple(args.stay),
            "interval": args.interval,
            "stop_at": stop_at,
            "final_at": stop_at + 5,
            "end_at": stop_at + 5 + args.drain,
            "client_nice": args.client_nice,
        }
        thread = threading.Thread(target=sampler, args=(server, args, samples, stop), daemon=True)
        thread.start()
        procs = [
            multiprocessing.Process(
                target=worker, args=(ctx, list(range(k, args.clients, args.procs)), out, k)
            )
            for k in range(args.procs)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        time.sleep(5)  # the server notices the last closes
        if args.trace_memory:
            signal_servers(server, signal.SIGUSR2)  # what is still held, every client gone
            time.sleep(10)
        after = sample(server, args)
        stop.set()
        samples.append(after)
        lat = sorted(
            x
            for k in range(args.procs)
            for x in json.loads((out / f"latency-{k}.json").read_text())
        )
        histories = sorted(out.glob("history-*.jsonl"))
        log = checker.read_log(server.database_url)
        access = {f"r{r}": None for r in range(args.rooms)} | {
            VAULT: {f"u{n}" for n in range(VAULT_MEMBERS)}
        }
        report = checker.check(checker.history_format.read(histories), log, access)
        kinds: dict[str, int] = {}
        doors: dict[str, int] = {}
        for rec in checker.history_format.read(histories):
            kinds[rec["kind"]] = kinds.get(rec["kind"], 0) + 1
            if rec["kind"] == "open":
                doors[rec["door"]] = doors.get(rec["door"], 0) + 1
        result = {"config": {k: v for k, v in vars(args).items() if k != "chart"}, "out": str(out),
                  "checks": verdict(samples, lat, t0, stop_at, baseline, after, ctx["ramp"]),
                  "records": kinds, "opens_by_door": doors, "checker": report}  # fmt: skip
        checks = result["checks"]
        result["pass"] = (
            report["ok"] and checks["rss_ok"] and checks["fds_ok"] and checks["p99_ok"]
        )
        data = {"t0": t0, "config": result["config"], "samples": samples, "latency": lat}
        (out / "samples.json").write_text(json.dumps(data))
        (out / "result.json").write_text(json.dumps(result, indent=2))
        result["chart"] = str(chart(out / "samples.json"))
        return result
    finally:
        stop.set()
        server.kill()
        if args.postgres:
            import psycopg

            with psycopg.connect(
                "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
            ) as c:
                c.execute(f"DROP DATABASE IF EXISTS soak_{os.getpid()} WITH (FORCE)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--clients", type=int, default=2000)
    p.add_argument("--users", type=int, default=400)
    p.add_argument("--rooms", type=int, default=20)
    p.add_argument("--procs", type=int, default=4, help="client processes")
    p.add_argument(
        "--interval", type=float, default=20.0, help="mean seconds between a client's actions"
    )
    p.add_argument("--stay", type=float, nargs=2, default=(10.0, 60.0), metavar=("MIN", "MAX"),
                   help="seconds a client stays on a visit, drawn uniformly")  # fmt: skip
    p.add_argument("--drain", type=float, default=60.0,
                   help="at most this many seconds for the final readers to catch up")  # fmt: skip
    p.add_argument("--sample-seconds", type=float, default=10.0)
    p.add_argument("--trace-memory", action="store_true",
                   help="trace the server's allocations; dumps in OUT/memory.txt")  # fmt: skip
    p.add_argument("--client-nice", type=int, default=10,
                   help="the client processes' nice value (0: the server's own)")  # fmt: skip
    p.add_argument("--postgres", action="store_true", help="PostgreSQL + Redis, --workers 2")
    p.add_argument("--out", help="directory for the results [a new temporary one]")
    p.add_argument("--chart", type=Path, help="only draw the charts of this samples.json")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.chart:
        print(chart(args.chart))
        return 0
    result = run(args)
    print(
        json.dumps(
            {k: result[k] for k in ("out", "checks", "records", "opens_by_door", "pass", "chart")},
            indent=2,
        )
    )
    print(checker.summary(result["checker"]), file=sys.stderr)
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
