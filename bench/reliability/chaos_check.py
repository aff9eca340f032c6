"""What the chaos run checks of its history and the database log.

``check`` is the history checker's contract (issue 15, part 1), written against the
agreed record format: bench/reliability/checker.py (H5's) is the checker of record and
chaos.py runs it when it is there; this one runs always, so that a chaos run proves the
same properties on its own and the two can be compared. Besides, it checks what only the
chaos run produces: sends answered ``unavailable`` whose row was made before that
answer came (the write committed after all: not a false ack, but a false refusal that a
client without retries would believe; counted, not failed).

``log`` rows: ``{"room", "seq", "kind", "user", "client_id", "created_at"}`` (epoch
seconds); ``rooms``: slug -> ``None`` (public) or the set of member usernames (private).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable


def check(history: Iterable[dict], log: list[dict], rooms: dict[str, set[str] | None]) -> dict:
    problems: list[str] = []
    by_seq: dict[tuple[str, int], dict] = {}
    by_cid: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    last: dict[str, int] = defaultdict(int)
    for row in log:
        key = (row["room"], row["seq"])
        if key in by_seq:
            problems.append(f"log: seq {key} twice")
        by_seq[key] = row
        last[row["room"]] = max(last[row["room"]], row["seq"])
        if row["client_id"] is not None:
            by_cid[(row["room"], row["user"], row["client_id"])].append(row["seq"])
    for room, top in last.items():
        missing = [s for s in range(1, top + 1) if (room, s) not in by_seq]
        if missing:
            problems.append(f"log: {room} has gaps at {missing[:10]}")
    for (room, user, cid), seqs in by_cid.items():
        if len(seqs) > 1:
            problems.append(f"duplicate: {user}'s {cid} in {room} at seqs {seqs}")

    acked: dict[tuple[str, str, str], int] = {}
    counts: dict[str, int] = defaultdict(int)
    errors: dict[str, int] = defaultdict(int)
    # `unavailable` for a write whose row was made before that answer came: the write
    # committed after all (not a false ack; a client that does not retry is misled).
    unavailable_but_stored: set[tuple[str, str, str]] = set()
    conns = _Connections(by_seq, rooms, problems)
    for rec in history:  # one pass: the history of a long run is read from its file
        kind = rec["kind"]
        counts[kind] += 1
        if kind in ("open", "event"):
            conns.feed(rec)
        elif kind == "ack":
            key = (rec["room"], rec["user"], rec["client_id"])
            row = by_seq.get((rec["room"], rec["seq"]))
            if row is None or row["client_id"] != rec["client_id"] or row["user"] != rec["user"]:
                problems.append(f"false ack: {key} acked seq {rec['seq']}, log has {row}")
            if acked.setdefault(key, rec["seq"]) != rec["seq"]:
                problems.append(f"ack disagrees: {key} acked {acked[key]} and {rec['seq']}")
        elif kind == "send_error":
            errors[rec["code"]] += 1
            key = (rec["room"], rec["user"], rec["client_id"])
            if rec["code"] == "unavailable" and key in by_cid:
                row = by_seq[(rec["room"], by_cid[key][0])]
                if row.get("created_at") is not None and row["created_at"] < rec["t"]:
                    unavailable_but_stored.add(key)
    return {
        "ok": not problems,
        "problems": problems[:50],
        "problem_count": len(problems),
        "records": dict(counts),
        "acked_writes": len(acked),
        "log_events": len(by_seq),
        "log_events_with_client_id": len(by_cid),
        "send_errors": dict(errors),
        "unavailable_but_committed": len(unavailable_but_stored),
        "unavailable_but_committed_examples": sorted(unavailable_but_stored)[:10],
        "connections": conns.summary(),
    }


class _Connections:
    """Per connection: seqs since+1, since+2, ... with no gap, duplicate or reorder, each
    the log's event at that seq, in a room its user may read."""

    def __init__(self, by_seq: dict, rooms: dict, problems: list[str]) -> None:
        self.by_seq, self.rooms, self.problems = by_seq, rooms, problems
        self.expect: dict[str, int] = {}
        self.opened = self.resumed = self.events = 0

    def feed(self, rec: dict) -> None:
        if rec["kind"] == "open":
            self.opened += 1
            self.resumed += rec["since"] > 0
            self.expect[rec["conn"]] = rec["since"] + 1
            return
        self.events += 1
        conn, seq, problems = rec["conn"], rec["seq"], self.problems
        if seq != self.expect.get(conn):
            problems.append(f"order: {conn} got seq {seq}, expected {self.expect.get(conn)}")
        self.expect[conn] = seq + 1
        row = self.by_seq.get((rec["room"], seq))
        if row is None:
            problems.append(f"phantom: {conn} got {rec['room']}#{seq}, not in the log")
        elif rec.get("event_id") != f"{row['user']}/{row['client_id']}":
            problems.append(f"mismatch: {conn} got {rec['event_id']} at {seq}, log {row}")
        members = self.rooms.get(rec["room"])
        if members is not None and rec["user"] not in members:
            problems.append(f"access: {rec['user']} saw private {rec['room']}#{seq}")

    def summary(self) -> dict:
        return {"opened": self.opened, "resumed_with_since": self.resumed, "events": self.events}


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
