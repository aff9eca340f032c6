"""The chaos run's plan and bookkeeping (bench/chaos.py drives it): who the clients are,
when each fault fires, the run itself (clients in asyncio, faults on threads of their
own), and what the history says about each fault window afterwards."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import json
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import checker
from chaos_load import Load, Spec, run_clients

REPO = Path(__file__).resolve().parent.parent.parent
PRIVATE = "chaos-private"
SLOT_S = 45.0  # room one fault and its recovery take when rounds are fitted to the run


@dataclass
class Plan:
    specs: list[Spec]
    rooms: dict[str, list[str] | None]  # slug -> members (private) or None (public)
    tokens: dict[str, str] = field(default_factory=dict)

    def access(self) -> dict[str, set[str] | None]:
        return {s: (set(m) if m is not None else None) for s, m in self.rooms.items()}

    def readers(self) -> list[Spec]:
        return [s for s in self.specs if s.door in ("ws", "sse", "poll") and s.user != "intruder"]

    def room_of(self) -> dict[str, str]:
        return {s.name: s.room for s in self.readers()}

    def provision(self, env: dict[str, str]) -> None:
        """Migrate, then make every user (no password: tokens only), room and token in
        one ``manage.py shell``."""
        users = sorted({s.user for s in self.specs})
        spec = json.dumps({"users": users, "rooms": self.rooms})
        done = subprocess.run(
            [str(REPO / ".venv/bin/python"), "manage.py", "shell", "-c", _PROVISION % spec],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        line = next((x for x in done.stdout.splitlines() if x.startswith("TOKENS ")), None)
        if line is None:
            raise RuntimeError(f"provisioning failed:\n{done.stdout}{done.stderr[-3000:]}")
        self.tokens = json.loads(line.removeprefix("TOKENS "))
        for s in self.specs:
            s.token = self.tokens[s.user]


_PROVISION = """
import json
from django.contrib.auth.models import User
from chat import tokens
from chat.models import Room
from project.prepare import migrate
migrate()
spec = json.loads(%r)
made = [User(username=n) for n in spec["users"]]
for u in made:
    u.set_unusable_password()
User.objects.bulk_create(made)
out = {}
for u in User.objects.filter(username__in=spec["users"]):
    out[u.username] = tokens.make(u, "chaos")[1]
for slug, members in spec["rooms"].items():
    room = Room.objects.create(slug=slug, name=slug, is_public=members is None)
    if members:
        room.members.set(User.objects.filter(username__in=members))
print("TOKENS " + json.dumps(out))
"""


def plan_clients(n: int) -> Plan:
    """Rooms of ~50 clients; in each, per ten clients: 8 WebSocket (2 of them sending),
    1 SSE, 1 long-poll. Room 0 is private (its clients are its members); uploaders go to
    the public rooms; one intruder keeps trying the private room and must see nothing."""
    count = max(2, n // 50)
    slugs = [PRIVATE] + [f"chaos-{k}" for k in range(1, count)]
    specs: list[Spec] = []
    for i in range(n):
        room, j = slugs[i % count], (i // count) % 10
        door = "ws" if j < 8 else ("sse" if j == 8 else "poll")
        specs.append(Spec(f"c{i}", f"u{i}", "", room, door, sends=j in (0, 4)))
    for k in range(max(1, n // 100)):
        specs.append(Spec(f"up{k}", f"up{k}", "", slugs[1 + k % (count - 1)], "upload", True))
    specs.append(Spec("intruder", "intruder", "", PRIVATE, "ws"))
    rooms: dict[str, list[str] | None] = {slug: None for slug in slugs}
    rooms[PRIVATE] = sorted(s.user for s in specs if s.room == PRIVATE and s.user != "intruder")
    return Plan(specs, rooms)


def schedule(run_s: float, kill_every: float, rounds: int, names: tuple[str, ...]) -> list:
    """Two lanes of (at second, fault): worker kills every ``kill_every`` s, and the
    other faults one at a time, ``rounds`` of each, evenly over the fault window (which
    leaves a warm-up before it and a quiet end after it, for the clients to catch up)."""
    start, end = min(20.0, 0.1 * run_s), run_s - min(40.0, 0.2 * run_s)
    window = end - start
    rounds = rounds or max(1, int(window // (len(names) * SLOT_S)))
    slot = window / (len(names) * rounds)
    others = [(start + k * slot, names[k % len(names)]) for k in range(len(names) * rounds)]
    kills, at = [], start + min(5.0, slot / 2)
    while at < end:
        kills.append((at, "worker_kill"))
        at += kill_every
    return [kills, others]


def _lane(lane, t0, injectors, faults: list, stop: threading.Event, log) -> None:
    for at, name in lane:
        if stop.wait(max(0.0, t0 + at - time.time())):
            return
        started = time.time()
        try:
            details = injectors[name]()
        except Exception as error:  # a failed injection is a finding: kept, not raised
            details = {"error": repr(error)}
        ended = time.time()
        faults.append({"fault": name, "t_start": started, "t_end": ended, **details})
        log(f"{name} at {started - t0:.0f}s: {details}")


async def drive(
    load: Load, plan: Plan, lanes: list, injectors: dict, run_s: float,
    tops: Callable[[], dict[str, int]], log,
) -> tuple[list[dict], float]:  # fmt: skip
    """Run the clients for ``run_s`` with the faults on their threads, then let every
    pending send finish and every reader catch up to its room's last seq, then stop."""
    load.sending.set()
    loop = asyncio.get_running_loop()
    t0 = time.time()
    tasks = await run_clients(load, plan.specs)
    faults: list[dict] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_lane, args=(lane, t0, injectors, faults, stop, log), daemon=True)
        for lane in lanes
    ]
    for thread in threads:
        thread.start()
    await asyncio.sleep(max(0.0, t0 + run_s - time.time()))
    stop.set()
    await loop.run_in_executor(None, lambda: [t.join(180) for t in threads])
    load.sending.clear()
    deadline = time.monotonic() + 90
    while any(s.current is not None for s in load.senders) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    top = await loop.run_in_executor(None, tops)
    readers = plan.readers()
    while time.monotonic() < deadline:
        if all(load.last_seen.get(s.name, 0) >= top.get(s.room, 0) for s in readers):
            break
        await asyncio.sleep(0.5)
    load.stopping.set()
    _, pending = await asyncio.wait(tasks, timeout=15)
    for task in pending:
        task.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.gather(*tasks, return_exceptions=True)
    return faults, t0


def read_log(db_url: str) -> list[dict]:
    return checker.read_log(db_url)


def room_tops(db_url: str) -> dict[str, int]:
    return {row["room"]: row["seq"] for row in read_log(db_url)}  # ordered: last wins


def verify_uploads(base: str, records: Iterable[dict], tokens: dict[str, str]) -> dict:
    """Every upload answered 201 must be served back with the bytes that were sent: a
    201 for a file the full disk did not take would be a false ack."""
    import httpx

    answered, errors = [], Counter()
    for rec in records:
        if rec["kind"] == "upload_ok":
            answered.append(rec)
        elif rec["kind"] == "upload_error":
            errors[f"{rec['status']} {rec['code']}"] += 1
    bad: list[str] = []
    with httpx.Client(base_url=base, timeout=15, trust_env=False) as http:
        for rec in answered:
            got = http.get(rec["url"], headers={"Authorization": f"Bearer {tokens[rec['user']]}"})
            if got.status_code != 200 or hashlib.sha256(got.content).hexdigest() != rec["sha256"]:
                bad.append(f"{rec['upload']}: {got.status_code}, {len(got.content)} bytes")
    return {
        "answered_201": len(answered),
        "served_back_intact": len(answered) - len(bad),
        "bad": bad[:20],
        "refused": dict(errors),
    }


def summarize_faults(faults: list[dict], t0: float, records: Iterable[dict]) -> dict:
    """Per fault: how often, when (s from the start), what it did, and what the clients
    saw from its start to 5 s after its end (one pass over the history)."""
    faults = sorted(faults, key=lambda f: f["t_start"])
    starts = [f["t_start"] for f in faults]
    longest = max((f["t_end"] + 5 - f["t_start"] for f in faults), default=0.0)
    seen = [Counter() for _ in faults]
    outside = Counter()  # failures with no fault to explain them
    for rec in records:
        kind = rec["kind"]
        if kind in ("send_error", "upload_error"):
            kind = f"{kind} {rec['code']}"
        index, matched = bisect.bisect_right(starts, rec["t"]) - 1, False
        while index >= 0 and starts[index] >= rec["t"] - longest:
            if rec["t"] <= faults[index]["t_end"] + 5:
                seen[index][kind] += 1
                matched = True
            index -= 1
        if not matched and kind.startswith(("send_error", "send_lost", "upload_error")):
            outside[kind] += 1
    out: dict[str, dict] = defaultdict(lambda: {"count": 0, "injections": []})
    for f, counts in zip(faults, seen, strict=True):
        entry = out[f["fault"]]
        entry["count"] += 1
        details = {k: v for k, v in f.items() if k not in ("fault", "t_start", "t_end")}
        overlaps = {
            g["fault"]
            for g in faults
            if g is not f and g["t_start"] <= f["t_end"] + 5 and g["t_end"] >= f["t_start"]
        }
        entry["injections"].append(
            {
                "at_s": round(f["t_start"] - t0, 1),
                "took_s": round(f["t_end"] - f["t_start"], 1),
                **details,
                "clients_saw": dict(sorted(counts.items())),
                # what else was injected in that window: its effects are mixed in
                "overlaps": sorted(overlaps),
            }
        )
    return {**out, "failures_outside_fault_windows": dict(outside)}


def summarize_clients(records: Iterable[dict]) -> dict:
    kinds, errors, closes = Counter(), Counter(), Counter()
    resumes = 0
    for rec in records:
        kind = rec["kind"]
        kinds[kind] += 1
        if kind == "send_error":
            errors[rec["code"]] += 1
        elif kind == "close":
            closes[rec["reason"].split(":")[0]] += 1
        elif kind == "open":
            resumes += rec["since"] > 0
    return {
        "send_attempts": kinds["send"],
        "acks": kinds["ack"],
        "send_errors": dict(errors),
        "send_lost": kinds["send_lost"],
        "connections_opened": kinds["open"],
        "resumes_with_since": resumes,
        "closes": dict(closes),
        "events_received": kinds["event"],
        "uploads_ok": kinds["upload_ok"],
        "uploads_refused": kinds["upload_error"],
    }


def caught_up(last_seen: dict[str, int], room_of: dict[str, str], log: list[dict]) -> dict:
    """Whether every reading client ended at its room's last seq (it resumed through
    every fault and missed nothing at the end)."""
    top: dict[str, int] = defaultdict(int)
    for row in log:
        top[row["room"]] = max(top[row["room"]], row["seq"])
    behind = {}
    for name, room in room_of.items():
        if last_seen.get(name, 0) < top[room]:
            behind[name] = (last_seen.get(name, 0), top[room])
    examples = dict(list(behind.items())[:10])
    return {"clients": len(room_of), "behind": len(behind), "examples": examples}


def passed(result: dict, rounds: int, names: tuple[str, ...]) -> bool:
    """The run passes when every fault was injected often enough, without an injection
    error, every killed worker was replaced, the checker is clean, every reader ended
    at its room's last seq, clients did resume, and every 201 upload came back intact."""
    faults = result["faults"]
    everything = (*names, "worker_kill")
    if any(faults.get(n, {}).get("count", 0) < (rounds if n in names else 1) for n in everything):
        return False
    injections = [i for n in everything for i in faults[n]["injections"]]
    return (
        all("error" not in i for i in injections)
        and all(i["back_s"] is not None for i in faults["worker_kill"]["injections"])
        and result["checker"]["ok"]
        and result["caught_up"]["behind"] == 0
        and result["clients"]["resumes_with_since"] > 0
        and not result["uploads"]["bad"]
    )
