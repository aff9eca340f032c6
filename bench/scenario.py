#!/usr/bin/env python
"""The many-room scenario (issue 14 part 1): users over rooms of Zipf-like sizes, each
user in ``--per-user`` rooms, messages at a fixed total rate; Parley against Daphne +
Channels.

    .venv/bin/python bench/scenario.py --quick --servers parley

Parley's clients are browser-shaped: one inbox stream (``/ws/me/``) and one open room
socket per user, three typing events per message. The peer gets the v1 shape, one socket
per room per user, messages only. A message's room is drawn in proportion to its size
(people talk, not rooms: a room of 1000 hears more than a room of 3), and it is sent on
that room's sender socket (a member's cookie). Each second 1% of Parley's room readers
drop their socket and resume with ``since`` (``--reconnects``), and the room check runs
at its default. Latency is send time (in the body) to the receiver's read, a resumed
reader's replay included; loss is judged per reader over all its connections. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import secrets
import sys
import time

import server_metrics
from common import (
    RESULTS_DIR,
    clean_workdir,
    log,
    pin_client,
    prepare_parley,
    raise_fd_limit,
    start_daphne,
    start_parley,
)
from loadclient import Sender, body_marker, new_loop, percentile, upgrade_request
from scenario_client import Churn, Tally, account, open_many, open_receiver
from scenario_data import assign, provision, zipf_sizes
from spy import Spy, summarize

HOST = "127.0.0.1"
ACK_ID = re.compile(rb'"type":"ack","client_id":"c(\d+)"')


class TimedSender(Sender):
    """A sender that notes when each ``client_id`` is acked (Parley only)."""

    def __init__(self, loop, request: bytes, sent_ns: dict, acks: list) -> None:
        super().__init__(loop, request)
        self.sent_ns, self.ack_us = sent_ns, acks

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        for raw in ACK_ID.findall(data):
            sent = self.sent_ns.pop(int(raw), None)
            if sent is not None:
                self.ack_us.append((now - sent) // 1000)
        super().data_received(data)


async def _open_sender(loop, port, path, cookie, sent_ns, acks) -> TimedSender:
    request = upgrade_request(HOST, port, path, cookie)
    _t, sender = await loop.create_connection(
        lambda: TimedSender(loop, request, sent_ns, acks), HOST, port
    )
    await asyncio.wait_for(sender.ready, 30)
    return sender


async def _run(
    server, cookies, members, slugs, rates, duration, typing, seed, profile=None, churn=0.0
) -> dict:
    loop = asyncio.get_running_loop()
    tally = Tally(loop)
    parley = server.kind == "parley"
    rng = random.Random(seed)
    factories = []
    if parley:  # one inbox + the first of one's rooms open
        first_room = {}
        for room, people in enumerate(members):
            for user in people:
                first_room.setdefault(user, room)
        for user, room in first_room.items():
            cookie = cookies[user]
            factories.append(
                lambda c=cookie: open_receiver(tally, HOST, server.port, "/ws/me/", c, -1, False)
            )
            path = server.ws_path(slugs[room])
            factories.append(
                lambda c=cookie, p=path, r=room: open_receiver(
                    tally, HOST, server.port, p, c, r, True
                )
            )
    else:  # v1: a socket per room per user
        for room, people in enumerate(members):
            path = server.ws_path(slugs[room])
            factories += [
                lambda p=path, r=room: open_receiver(tally, HOST, server.port, p, "", r, True)
                for _ in people
            ]
    started = time.monotonic()
    cpu0 = server.cpu()
    receivers = await open_many(factories)
    connect_s = time.monotonic() - started
    connect_cpu = server.cpu() - cpu0
    log(f"{server.name}: {len(receivers)} sockets in {connect_s:.1f}s")
    sent_ns: dict[int, int] = {}
    acks: list[int] = []
    senders = []
    for room, people in enumerate(members):
        cookie = cookies[rng.choice(people)] if parley else ""
        senders.append(
            await _open_sender(
                loop, server.port, server.ws_path(slugs[room]), cookie, sent_ns, acks
            )
        )
    await asyncio.sleep(2.0)  # hellos and presence settled
    base = {
        "server": server.name,
        "sockets": len(receivers) + len(senders),
        "room_sockets": sum(1 for r in receivers if r.counts),
        "inbox_sockets": sum(1 for r in receivers if not r.counts),
        "connect_s": round(connect_s, 2),
        "connect_cpu_ms_per_socket": round(connect_cpu / max(len(receivers), 1) * 1000, 3),
    }
    steps, counter = [], 0
    for rate in rates:
        step, counter = await _step(
            server, tally, receivers, senders, members, rng, rate, duration, typing, counter,
            sent_ns, acks, profile and profile / f"{server.name}-{rate:g}.txt",
            churn if parley else 0.0,
        )  # fmt: skip
        log(f"{server.name} step: {json.dumps(step)}")
        steps.append(step)
        if not step_passes(step):
            break  # the ladder climbs until the first failing rate
    for item in receivers + senders:
        item.close() if hasattr(item, "send_text") else item.abort()
    return {**base, "steps": steps, "best": best_step(steps)}


P99_LIMIT_MS = 100.0


def step_passes(step: dict) -> bool:
    """A rate holds when p99 is within the limit, nothing is lost and the rate was kept."""
    return (
        step["p99_ms"] is not None
        and step["p99_ms"] <= P99_LIMIT_MS
        and step["lost"] == 0
        and step["rate_achieved"] >= 0.95 * step["rate_target"]
    )


def best_step(steps: list[dict]) -> dict | None:
    passing = [s for s in steps if step_passes(s)]
    return max(passing, key=lambda s: s["rate_target"]) if passing else None


def ladder(start: float, factor: float, top: float) -> list[float]:
    """Rates of the sweep: geometric from ``start`` up to ``top``."""
    rates, rate = [], start
    while rate <= top:
        rates.append(round(rate, 1))
        rate *= factor
    return rates


async def _step(
    server, tally, receivers, senders, members, rng, rate, duration, typing, counter,
    sent_ns, acks, spy_path=None, churn_share=0.0,
) -> tuple[dict, int]:  # fmt: skip
    parley = server.kind == "parley"

    def reopen(old, since: int):
        path = f"{old.path}?since={since}"
        return open_receiver(tally, HOST, server.port, path, old.cookie, old.room, True, old)

    for receiver in receivers:  # a fresh count per step, late ones from before ignored
        receiver.got.clear()
        receiver.order_errors = 0
        receiver.last = counter
    tally.floor = counter
    tally.latency.clear()
    sent_ns.clear()
    acks.clear()
    weights = [len(p) for p in members]
    sent_to: dict[int, list[int]] = {}
    spy = Spy(server.pid, spy_path, duration).start() if spy_path else None
    metrics0 = server_metrics.scrape(server.port) if parley else None
    cpu0, t0, mine0 = server.cpu(), time.monotonic(), time.process_time()
    churn = Churn(receivers, random.Random(rate), churn_share, reopen) if churn_share else None
    churning = churn and asyncio.create_task(churn.run(t0 + duration))
    first, interval = counter, 1.0 / rate
    typing_frame = json.dumps({"type": "typing"}).encode()
    while time.monotonic() - t0 < duration:
        room = rng.choices(range(len(members)), weights)[0]
        sent_ns[counter] = time.time_ns()
        sender = senders[room]
        if parley:
            for _ in range(typing):
                sender.send_text(typing_frame)
        sender.send_text(server.send_payload(body_marker(counter), f"c{counter}"))
        sent_to.setdefault(room, []).append(counter)
        counter += 1
        lag = t0 + (counter - first) * interval - time.monotonic()
        if lag > 0:
            await asyncio.sleep(lag)
    send_s = time.monotonic() - t0
    if churning:
        await churning
    expected = sum(len(v) for v in sent_to.values())
    await _drain(tally, receivers)
    cpu = server.cpu() - cpu0
    wall = time.monotonic() - t0
    metrics1 = server_metrics.scrape(server.port) if parley else None
    # All clients share this one process: near 1.0 it, not the server, sets the latency.
    client_share = round((time.process_time() - mine0) / wall, 3)
    lat, ack = sorted(tally.latency), sorted(acks)
    loss = account(receivers, sent_to)
    delivered = loss["expected"] - loss["lost"]
    inbox = parley and any(not r.counts for r in receivers)
    inbox_events = sum(len(members[r]) - 1 for r, v in sent_to.items() for _ in v) if inbox else 0
    events = delivered + inbox_events
    hot = None
    if spy is not None and spy.wait() is not None:
        hot = summarize(spy_path, top=12)
    ms = lambda v, f: round(percentile(v, f) / 1000, 2) if v else None  # noqa: E731
    return {
        "rate_target": rate,
        "sent": counter - first,
        "rate_achieved": round((counter - first) / send_s, 1),
        **loss,
        "p50_ms": ms(lat, 0.5),
        "p99_ms": ms(lat, 0.99),
        "ack_p50_ms": ms(ack, 0.5),
        "ack_p99_ms": ms(ack, 0.99),
        "acks_missing": len(sent_ns) if parley else None,
        "server_cpu_s": round(cpu, 3),
        "server_cpu_share": round(cpu / wall, 3),
        "client_cpu_share": client_share,
        "deliveries_per_s": round(delivered / send_s, 1),
        "deliveries_per_message": round(loss["expected"] / max(expected, 1), 1),
        "inbox_events": inbox_events,
        "cpu_us_per_delivered_event": round(cpu / max(events, 1) * 1e6, 2),
        **(_churned(churn) if churn else {}),
        **(_seen_by_server(metrics0, metrics1) if metrics0 and metrics1 else {}),
        **({"profile": hot} if hot else {}),
    }, counter


def _seen_by_server(before, after) -> dict:
    """GC pauses, and the server's own hub-to-subscribers latency: a send reaching the hub
    to its event written to the room's sockets, without the load client's lag (the
    upper bounds of the histogram's buckets that hold p50 and p99)."""
    name = "parley_append_to_delivery_seconds"
    bounds = {q: server_metrics.histogram_quantile(before, after, name, q) for q in (0.5, 0.99)}
    return {
        "gc_pause_s": server_metrics.gc_pauses(before, after),
        "server_hub_to_written_ms_le": {
            f"p{round(q * 100)}": None if b is None else round(b * 1000, 1)
            for q, b in bounds.items()
        },
    }


def _churned(churn: Churn) -> dict:
    ms = sorted(churn.handshake_ms)
    return {
        "reconnects": churn.done,
        "reconnects_failed": churn.failed,
        "reconnects_with_since": churn.resumed_with_seq,
        "reconnect_p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 1) if ms else None,
    }


async def _drain(tally, receivers, quiet: float = 1.0, limit: float = 15.0) -> None:
    """Wait until no delivery arrived for ``quiet`` seconds (at most ``limit``)."""
    deadline = time.monotonic() + limit
    seen = -1
    while time.monotonic() < deadline:
        now = len(tally.latency)
        if now == seen:
            return
        seen = now
        await asyncio.sleep(quiet)


def run_scenario(
    servers: tuple[str, ...] = ("parley", "daphne"),
    users: int = 1000,
    rooms: int = 100,
    per_user: int = 5,
    rates: tuple[float, ...] = (50.0,),
    duration: float = 10.0,
    peer_users: int = 200,
    typing: int = 3,
    seed: int = 1,
    profile: bool = False,
    peer_rates: tuple[float, ...] | None = None,
    reconnects: float = 0.01,
) -> dict:
    """Each of ``servers`` (a fresh one each) at each of ``rates`` msgs/s in turn, on the
    same connections, up to the first rate that fails ``step_passes``; the peer climbs
    ``peer_rates`` (default: ``rates``), which start lower: it fails far sooner. Each
    second ``reconnects`` of Parley's room readers drop and resume with ``since``."""
    pin_client()
    raise_fd_limit()
    workdir = RESULTS_DIR / "scenario"
    clean_workdir(workdir)
    tag = secrets.token_hex(2)
    results = []
    data = prepare_parley(workdir, users=(), rooms=()) if "parley" in servers else None
    try:
        for name in servers:
            n = users if name == "parley" else min(users, peer_users)
            r = rooms if name == "parley" else max(2, rooms * n // users)
            sizes = zipf_sizes(r, n, per_user)
            members = assign(n, sizes, seed)
            slugs = [f"sc{tag}x{i}" for i in range(r)]
            cookies: list[str] = [""] * n
            if name == "parley":
                db_url = data.fresh_db_url()
                log(f"provisioning {n} users, {r} rooms")
                cookies = provision(
                    db_url, data.static_root, workdir, [f"u{tag}-{i}" for i in range(n)], slugs,
                    members,
                )  # fmt: skip
                # The room check at its default (every 5 s): its cost is part of the run.
                server = start_parley(workdir, db_url, data.static_root)
            else:
                server = start_daphne(workdir, "memory")
            try:
                loop = new_loop()
                try:
                    out = loop.run_until_complete(
                        _run(
                            server,
                            cookies,
                            members,
                            slugs,
                            rates if name == "parley" else (peer_rates or rates),
                            duration,
                            typing,
                            seed,
                            workdir / "spy" if profile and name == "parley" else None,
                            reconnects,
                        )
                    )
                finally:
                    loop.close()
            finally:
                server.stop()
            out.update(users=n, rooms=r, per_user=per_user, largest_room=sizes[0])
            log(json.dumps(out))
            results.append(out)
    finally:
        if data is not None:
            data.drop()
    return {"test": "scenario", "runs": results, **compare(results)}


def compare(runs: list[dict]) -> dict:
    """Best rate and deliveries/s at p99 within the limit, per server core (one each)."""
    best = {r["server"]: r["best"] for r in runs}
    park, peer = best.get("parley"), best.get("daphne-memory")
    out = {"best_rate": {k: v and v["rate_target"] for k, v in best.items()}}
    out["best_deliveries_per_s_per_core"] = {
        k: v and round(v["deliveries_per_s"] / max(v["server_cpu_share"], 1e-9), 1)
        for k, v in best.items()
    }
    if park and peer:
        out["ratio_deliveries_per_s"] = round(
            park["deliveries_per_s"] / peer["deliveries_per_s"], 2
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10000)
    parser.add_argument("--rooms", type=int, default=1000)
    parser.add_argument("--per-user", type=int, default=5)
    parser.add_argument("--rate", type=float, default=None, help="one rate, msgs/s (no sweep)")
    parser.add_argument("--sweep", default="25,1.5,2000", help="start,factor,top msgs/s")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--peer-users", type=int, default=1000)
    parser.add_argument("--servers", default="parley,daphne")
    parser.add_argument("--profile", action="store_true", help="py-spy Parley per step")
    parser.add_argument(
        "--reconnects", type=float, default=0.01, help="readers resuming with since, per second"
    )
    parser.add_argument("--quick", action="store_true", help="1000 users, 100 rooms, 8 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.users, args.rooms, args.duration, args.peer_users = 1000, 100, 8.0, 200
    start, factor, top = (float(x) for x in args.sweep.split(","))
    rates = (args.rate,) if args.rate else tuple(ladder(start, factor, top))
    report = run_scenario(
        tuple(args.servers.split(",")), args.users, args.rooms, args.per_user, rates,
        args.duration, args.peer_users, profile=args.profile, reconnects=args.reconnects,
    )  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
