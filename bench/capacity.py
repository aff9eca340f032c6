#!/usr/bin/env python
"""The capacity model of docs/CAPACITY.md, derived from one ``make bench`` run's JSON.

    bench/.venv-bench/bin/python bench/capacity.py                  # from run-latest.json
    bench/.venv-bench/bin/python bench/capacity.py --json bench/results/run-X.json --write

Every figure comes from a measured per-event cost of that run: nothing here is measured
and nothing is typed in by hand but the assumptions, which are named (``Assumptions``) and
printed with the tables. ``--write`` replaces the part of docs/CAPACITY.md between its
``model`` markers (run_all.py does that after every full run); the prose around it says
what the numbers mean and is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

from report import replace_marked
from targets import _events_per_s, get

BENCH = Path(__file__).resolve().parent
DOC = BENCH.parent / "docs" / "CAPACITY.md"
START, END = "<!-- model:start -->", "<!-- model:end -->"
CORE_US = 1e6  # a core's CPU microseconds per second


@dataclasses.dataclass(frozen=True)
class Assumptions:
    """What the model assumes beyond the run; each is printed beside the tables."""

    utilisation: float = 0.7  # plan each core to this share, for bursts and GC
    memory_gib: float = 16.0  # memory given to Parley processes on a machine
    sockets_per_user: int = 2  # the browser client: one inbox stream + one open room
    messages_per_user_hour: float = 6.0  # an active user: a message every 10 minutes
    postgres_write_cores: int = 8  # a large single primary's cores for the write path


def costs(results: dict) -> dict:
    """The per-event costs of one run (None where its phase did not run)."""
    p = results.get("phases", {})
    out: dict = {}
    fan = get(p, "fanout_ws", "parley")
    if fan:
        out["delivery_batched_us"] = fan["cpu_s_per_1000"] * 1000
        out["single_room_per_s"] = fan["delivered_per_s"]
    lat = get(p, "latency", "parley")
    if lat:
        out["delivery_paced_us"] = lat["cpu_s_per_1000"] * 1000
    idle = get(p, "idle", "runs", "parley")
    if idle:
        out["idle_kib"] = idle.get("rss_per_conn_kib")
        out["idle_us_per_s"] = idle.get("idle_cpu_us_per_conn_s")
        steps = idle.get("steps") or []
        out["connect_ms"] = steps[-1]["cpu_per_connect_ms"] if steps else None
        out["idle_held"] = idle.get("alive_after_hold")
    runs = {r["server"]: r for r in get(p, "scenario", "runs", default=[]) or []}
    # The best rate kept at p99 <= 100 ms; with none, the lowest rate tried: its costs are
    # measured all the same (a server past its capacity still spends what it spends).
    best = get(runs, "parley", "best") or (get(runs, "parley", "steps") or [None])[0]
    if best:
        seconds = best["sent"] / max(best["rate_achieved"], 1e-9)
        share = max(best["server_cpu_share"], 1e-9)
        out["scenario"] = {
            "users": runs["parley"]["users"],
            "rooms": runs["parley"]["rooms"],
            "rate": best["rate_achieved"],
            "p99_ms": best["p99_ms"],
            "kept": best is runs["parley"].get("best"),
            "cpu_share": best["server_cpu_share"],
            "events_per_msg": _events_per_s(best) * seconds / max(best["sent"], 1),
            "us_per_event": best["cpu_us_per_delivered_event"],
            "us_per_msg": share * CORE_US / best["rate_achieved"],
            "events_per_core_s": _events_per_s(best) / share,
            "connect_ms": runs["parley"].get("connect_cpu_ms_per_socket"),
        }
    durable = p.get("durable") or {}
    for key in ("sqlite-w1", "postgres-w1", "postgres-w2"):
        row = durable.get(key)
        if row:
            out[key] = {
                k: row.get(k)
                for k in (
                    "committed_per_s",
                    "server_cpu_us_per_message",
                    "postgres_cpu_us_per_message",
                    "redis_cpu_us_per_message",
                    "redis_commands_per_message",
                )
            }
    ratio = get(p, "workers", "cpu_ratio_w2_over_w1")
    if ratio:
        out["workers_cpu_ratio"] = ratio
    return out


def _n(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    if digits == 0 or abs(x) >= 100:
        return f"{round(x):,}"
    return f"{x:,.{digits}f}"


def _redis_per_msg(c: dict, processes: int) -> float | None:
    """Redis CPU per message when ``processes`` subscribe to its room: the one-worker cost
    plus, per further subscriber, the two-worker run's increment (at least 0)."""
    one = get(c, "postgres-w1", "redis_cpu_us_per_message")
    two = get(c, "postgres-w2", "redis_cpu_us_per_message")
    if one is None:
        return None
    step = max((two or one) - one, 0.0)
    return one + step * (processes - 1)


def model(results: dict, a: Assumptions = Assumptions()) -> str:
    c = costs(results)
    sc = c.get("scenario")
    lines = [f"From `{results.get('json', 'a run')}` ({_when(results)}), with "
             f"`bench/capacity.py`. Assumptions: cores planned to "
             f"{a.utilisation:.0%}; {a.memory_gib:g} GiB for Parley per machine; "
             f"{a.sockets_per_user} sockets per user; an active user sends "
             f"{a.messages_per_user_hour:g} messages an hour; PostgreSQL's write path "
             f"gets {a.postgres_write_cores} cores of one primary.", ""]  # fmt: skip
    lines += ["### Measured per-event costs", "", "| cost | value | from |", "|---|---|---|"]
    step = "-"
    if sc:
        step = f"scenario at {_n(sc['rate'])} msgs/s, p99 {_n(sc['p99_ms'])} ms" + (
            "" if sc["kept"] else " (no rate kept p99 <= 100 ms: the lowest tried)"
        )
    rows = [
        ("CPU per room delivery, batched (one room, 1000 receivers, window 20)",
         f"{_n(c.get('delivery_batched_us'), 1)} us", "fanout_ws"),
        ("CPU per room delivery, paced (1000 receivers at 10 msgs/s)",
         f"{_n(c.get('delivery_paced_us'), 1)} us", "latency"),
        ("CPU per delivered event, many rooms (typing, inbox, resumes and the write included)",
         f"{_n(sc and sc['us_per_event'], 1)} us", step),
        ("CPU per message sent, many rooms (all of the above per message)",
         f"{_n(sc and sc['us_per_msg'])} us", step),
        ("delivered events per message, many rooms", _n(sc and sc["events_per_msg"], 1),
         "scenario"),
        ("memory per idle WebSocket", f"{_n(c.get('idle_kib'), 2)} KiB",
         f"idle ({c.get('idle_held')} held)"),
        ("CPU per idle WebSocket (pings included)", f"{_n(c.get('idle_us_per_s'), 2)} us/s",
         "idle"),
        ("CPU per connect, anonymous WebSocket to a public room",
         f"{_n(c.get('connect_ms'), 2)} ms", "idle, last step"),
        ("CPU per connect, signed in (an inbox or a room, with its reads)",
         f"{_n(sc and sc['connect_ms'], 2)} ms", "scenario's connect phase"),
        ("Parley CPU per durable send, SQLite / PostgreSQL",
         f"{_n(get(c, 'sqlite-w1', 'server_cpu_us_per_message'))} / "
         f"{_n(get(c, 'postgres-w1', 'server_cpu_us_per_message'))} us", "durable"),
        ("PostgreSQL CPU per durable send",
         _n(get(c, "postgres-w1", "postgres_cpu_us_per_message")) + " us", "durable, postgres-w1"),
        ("Redis CPU per durable send, 1 / 2 subscribed workers",
         f"{_n(get(c, 'postgres-w1', 'redis_cpu_us_per_message'), 1)} / "
         f"{_n(get(c, 'postgres-w2', 'redis_cpu_us_per_message'), 1)} us", "durable"),
        ("Redis commands per durable send", _n(get(c, "postgres-w1",
         "redis_commands_per_message"), 2), "durable"),
        ("CPU per delivery, 2 workers + Redis over 1 worker", _n(c.get("workers_cpu_ratio"), 2),
         "workers"),
    ]  # fmt: skip
    lines += [f"| {what} | {value} | {src} |" for what, value, src in rows]
    lines += [
        "",
        "### One of each",
        "",
        "| resource | carries | breaks first on |",
        "|---|---|---|",
    ]
    lines += _one_of_each(c, a)
    lines += ["", "### 1x, 10x, 100x", "", *_scaling(c, a)]
    return "\n".join(lines)


def _when(results: dict) -> str:
    import time

    started = results.get("started")
    mode = "quick" if results.get("quick") else "full"
    if not started:
        return mode
    return f"{mode} run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}"


def _one_of_each(c: dict, a: Assumptions) -> list[str]:
    rows = []
    sc = c.get("scenario")
    if sc and c.get("idle_us_per_s") and c.get("idle_kib"):
        per_user = (a.sockets_per_user * c["idle_us_per_s"]
                    + a.messages_per_user_hour / 3600 * sc["us_per_msg"])  # fmt: skip
        users_cpu = a.utilisation * CORE_US / per_user
        users_mem = a.memory_gib * 2**20 / (a.sockets_per_user * c["idle_kib"])
        rows.append(
            f"| one Parley core | {_n(users_cpu)} active users "
            f"({_n(a.utilisation * CORE_US / sc['us_per_msg'])} msgs/s, "
            f"{_n(a.utilisation * sc['events_per_core_s'])} delivered events/s at the "
            f"scenario's room sizes); {_n(a.utilisation * CORE_US / c['idle_us_per_s'])} idle "
            f"sockets by CPU | CPU: messages x deliveries. The sockets' memory only at "
            f"{_n(users_mem)} users per {a.memory_gib:g} GiB (the rooms' rings aside) |"
        )
    pg = get(c, "postgres-w1", "postgres_cpu_us_per_message")
    if pg:
        rows.append(
            f"| one PostgreSQL core | {_n(a.utilisation * CORE_US / pg)} durable msgs/s "
            f"(at the durable bench's batches) | CPU of the commit path; one primary takes "
            f"every room's writes |"
        )
    redis = _redis_per_msg(c, 1)
    if redis:
        rows.append(
            f"| one Redis (one thread) | {_n(a.utilisation * CORE_US / redis)} msgs/s "
            f"with one subscribed worker, {_n(a.utilisation * CORE_US / _redis_per_msg(c, 8))}"
            f" with 8 | its single thread: every message of every room, times the workers "
            f"subscribed to that room |"
        )
    return rows


def _scaling(c: dict, a: Assumptions) -> list[str]:
    sc = c.get("scenario")
    pg = get(c, "postgres-w1", "postgres_cpu_us_per_message")
    if not sc or not pg:
        return ["(needs the scenario and durable PostgreSQL phases)"]
    per_user_msgs = a.messages_per_user_hour / 3600
    lines = ["| users | msgs/s | Parley cores | Parley processes | PostgreSQL cores "
             "| Redis thread | breaks first |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    idle = c.get("idle_us_per_s") or 0.0
    for users in (10_000, 100_000, 1_000_000, 10_000_000):
        msgs = users * per_user_msgs
        cpu = users * a.sockets_per_user * idle + msgs * sc["us_per_msg"]
        cores = cpu / (a.utilisation * CORE_US)
        procs = max(1, math.ceil(cores))
        pg_cores = msgs * pg / (a.utilisation * CORE_US)
        # A message reaches every worker holding a member of its room: at most all of them.
        redis_share = msgs * (_redis_per_msg(c, procs) or 0.0) / CORE_US
        first = []
        if redis_share > a.utilisation:
            first.append("one Redis thread: shard pub/sub by room")
        if pg_cores > a.postgres_write_cores:
            first.append("one PostgreSQL primary: partition the log by room")
        lines.append(
            f"| {_n(users)} | {_n(msgs)} | {_n(cores, 1)} | {procs} | {_n(pg_cores, 1)} "
            f"| {redis_share:.0%} | {'; '.join(first) or 'nothing: add Parley processes'} |"
        )
    return lines


def write(text: str, doc: Path = DOC) -> None:
    replace_marked(doc, START, END, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=BENCH / "results" / "run-latest.json")
    parser.add_argument("--write", action="store_true", help=f"rewrite the model in {DOC}")
    args = parser.parse_args(argv)
    text = model(json.loads(args.json.read_text()))
    if args.write:
        write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
