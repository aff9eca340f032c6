"""Checks reliability-run histories against the database log (issue 15, part 1).

    python bench/reliability/checker.py --log log.jsonl --rooms rooms.json h1.jsonl h2.jsonl
    python bench/reliability/checker.py --database sqlite:///run/db.sqlite3 --rooms ... h*.jsonl

Proves, per room (the history format is in history.py):

- ``log``: the log itself holds each seq of a room once, from 1 to its last, no gap;
- ``acked``: every acknowledged write is in the log exactly once, by (room, user,
  client_id), at the seq the ack gave;
- ``indeterminate``: no write answered with an error or lost in flight is in the log twice;
  a write answered ``unavailable`` whose row was made before that answer (the log's
  ``created_at``, when it has one) is counted as ``unavailable_committed``: not a false
  ack, but a refusal that only a client retrying with its ``client_id`` sees through;
- ``connections``: every live connection (ws, sse, poll) saw an ordered run of seqs
  without a duplicate or a gap, starting right after its ``since`` when it gave one, and
  only seqs the log has, each the log's event when the client noted which
  (``event_id`` = ``user/client_id``); inbox and IRC connections (which carry several
  rooms and not every event) must not repeat or reorder a room's seqs;
- ``access``: no client opened, or saw an event of, a room it may not read;
- ``caught_up``: every connection closed with reason ``end`` saw its room's last seq.

``rooms`` (JSON): slug -> ``null`` for a room anyone may read, or the list of its members.
Rooms absent from it are taken as public. The log: rows ``{"room", "seq", "kind", "user",
"client_id"}`` (and optionally ``created_at``, epoch seconds) as JSON Lines, or read
straight from the database (``--database``).
Prints the report as JSON, then a summary; exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).parent))
    import history as history_format
else:
    from . import history as history_format

Access = dict[str, "set[str] | None"]
LIVE_DOORS = ("ws", "sse", "poll")
# {epoch}: created_at as epoch seconds, in each database's own words.
_LOG_QUERY = (
    "SELECT r.slug, m.seq, m.kind, u.username, m.client_id, {epoch} FROM chat_message m "
    "JOIN chat_room r ON r.id = m.room_id LEFT JOIN auth_user u ON u.id = m.user_id "
    "ORDER BY r.slug, m.seq"
)
_SQLITE_EPOCH = "(julianday(m.created_at) - 2440587.5) * 86400.0"
_POSTGRES_EPOCH = "EXTRACT(EPOCH FROM m.created_at)::float8"
MAX_LISTED = 50  # problems listed per check; all are counted


def read_log(database_url: str) -> list[dict]:
    """The event log, by plain SQL (no Django needed): SQLite or PostgreSQL."""
    if database_url.startswith("sqlite:///"):
        import sqlite3

        path = database_url.removeprefix("sqlite:///")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            rows = conn.execute(_LOG_QUERY.format(epoch=_SQLITE_EPOCH)).fetchall()
    else:
        import psycopg

        with psycopg.connect(database_url, connect_timeout=10) as conn:
            rows = conn.execute(_LOG_QUERY.format(epoch=_POSTGRES_EPOCH)).fetchall()
    keys = ("room", "seq", "kind", "user", "client_id", "created_at")
    return [dict(zip(keys, row, strict=True)) for row in rows]


class _Report:
    def __init__(self) -> None:
        self.counts: dict[str, Counter] = defaultdict(Counter)
        self.problems: dict[str, list[str]] = defaultdict(list)
        self.violations: Counter = Counter()

    def ok(self, check: str, what: str = "checked") -> None:
        self.counts[check][what] += 1

    def bad(self, check: str, message: str) -> None:
        self.violations[check] += 1
        if len(self.problems[check]) < MAX_LISTED:
            self.problems[check].append(message)


def _readable(access: Access, room: str, user: str | None) -> bool:
    members = access.get(room)
    return members is None or (user is not None and user in members)


def check(records: Iterable[dict], log: list[dict], access: Access) -> dict:
    """The report: ``ok``, ``counts`` and ``violations`` per check, ``problems`` listed."""
    report = _Report()
    by_cid: dict[tuple, list[int]] = defaultdict(list)
    log_rows: dict[str, dict[int, dict]] = defaultdict(dict)
    last_seq: dict[str, int] = defaultdict(int)
    for row in log:
        room, seq = row["room"], row["seq"]
        if seq in log_rows[room]:
            report.bad("log", f"{room}: seq {seq} twice")
        log_rows[room][seq] = row
        last_seq[room] = max(last_seq[room], seq)
        if row.get("client_id"):
            by_cid[(room, row["user"], row["client_id"])].append(seq)
    for room, top in last_seq.items():
        missing = [seq for seq in range(1, top + 1) if seq not in log_rows[room]]
        if missing:
            report.bad("log", f"{room}: no event at seqs {missing[:10]}")
        else:
            report.ok("log", "rooms")

    acks: dict[tuple, list[int]] = defaultdict(list)
    doubtful: set[tuple] = set()
    refused_at: dict[tuple, float] = {}  # answered `unavailable`: when (the first time)
    conns: dict[str, dict] = {}
    intruders: dict[str, dict] = {}  # conn -> its open, of a room its user may not read
    for rec in records:
        kind = rec.get("kind")
        if kind == "ack":
            acks[(rec["room"], rec["user"], rec["client_id"])].append(rec["seq"])
        elif kind in ("send_error", "send_lost"):
            key = (rec["room"], rec["user"], rec["client_id"])
            doubtful.add(key)
            if rec.get("code") == "unavailable" and rec.get("t") is not None:
                refused_at.setdefault(key, rec["t"])
        elif kind == "open":
            conns[rec["conn"]] = {**rec, "seqs": defaultdict(list), "end": False}
            if not _readable(access, rec["room"], rec["user"]):
                # Judged at its close: a client that writes ``open`` before its answer
                # (bench/chaos.py) records a refusal as a close "refused ..." instead.
                intruders[rec["conn"]] = rec
        elif kind == "refused":
            report.ok("access", "refused")
        elif kind == "event":
            conn = conns.get(rec["conn"])
            if conn is None:
                report.bad("connections", f"event on unopened connection {rec['conn']}")
                continue
            if not _readable(access, rec["room"], rec["user"]):
                report.bad(
                    "access", f"{rec['client']} ({rec['user']}) saw {rec['room']}#{rec['seq']}"
                )
            else:
                report.ok("access", "events")
            conn["seqs"][rec["room"]].append(rec["seq"])
            if rec.get("event_id") is not None:
                _check_identity(report, rec, log_rows[rec["room"]].get(rec["seq"]))
        elif kind == "close" and rec["conn"] in conns:
            conns[rec["conn"]]["end"] = rec.get("reason") == "end"
            opened = intruders.pop(rec["conn"], None)
            if opened is not None:
                refused = str(rec.get("reason", "")).startswith("refused")
                if refused and not conns[rec["conn"]]["seqs"]:
                    report.ok("access", "refused")
                else:
                    report.bad(
                        "access", f"{opened['client']} ({opened['user']}) opened {opened['room']}"
                    )
    for opened in intruders.values():  # never closed: it was let in
        report.bad("access", f"{opened['client']} ({opened['user']}) opened {opened['room']}")

    for key, seqs in acks.items():
        room, user, cid = key
        in_log = by_cid.get(key, [])
        if seqs == [None] * len(seqs):
            # An ack without a seq: the write changed nothing (a reaction already there).
            if in_log:
                report.bad("acked", f"{room} {user} {cid}: acked as no-op, in the log {in_log}")
            else:
                report.ok("acked", "no_op")
        elif len(in_log) != 1:
            report.bad("acked", f"{room} {user} {cid}: acked, {len(in_log)} times in the log")
        elif any(seq != in_log[0] for seq in seqs):
            report.bad("acked", f"{room} {user} {cid}: acked as {seqs}, log has {in_log[0]}")
        else:
            report.ok("acked")
    for key in doubtful - acks.keys():
        n = len(by_cid.get(key, []))
        if n > 1:
            report.bad("indeterminate", f"{key[0]} {key[1]} {key[2]}: {n} times in the log")
        else:
            report.ok("indeterminate", "in_log" if n else "absent")
    for key, when in refused_at.items():
        rows = [log_rows[key[0]][seq] for seq in by_cid.get(key, [])]
        if any(r.get("created_at") is not None and r["created_at"] < when for r in rows):
            report.ok("indeterminate", "unavailable_committed")
    for key, seqs in by_cid.items():
        if len(seqs) > 1 and key not in acks and key not in doubtful:
            report.bad("indeterminate", f"{key}: one client_id, {len(seqs)} rows {seqs}")

    log_seqs = {room: rows.keys() for room, rows in log_rows.items()}
    for conn_id, conn in conns.items():
        _check_connection(report, conn_id, conn, log_seqs, last_seq)
    violations = sum(report.violations.values())
    return {
        "ok": violations == 0,
        "violation_count": violations,
        "violations": dict(report.violations),
        "counts": {check: dict(c) for check, c in report.counts.items()},
        "log_events": len(log),
        "rooms": {room: last_seq[room] for room in sorted(last_seq)},
        "problems": dict(report.problems),
    }


def _check_identity(report: _Report, rec: dict, row: dict | None) -> None:
    """The event a client got at a seq is the log's event there (``user/client_id``)."""
    if row is None:
        return  # a seq the log lacks: _check_connection reports it
    if rec["event_id"] != f"{row['user']}/{row['client_id']}":
        report.bad(
            "connections",
            f"{rec['client']} {rec['conn']}: got {rec['event_id']} at {rec['room']}#{rec['seq']},"
            f" the log has {row['user']}/{row['client_id']}",
        )


def _check_connection(report: _Report, conn_id: str, conn: dict, log_seqs, last_seq) -> None:
    live = conn["door"] in LIVE_DOORS
    who = f"{conn['client']} {conn['door']} {conn_id}"
    for room, seqs in conn["seqs"].items():
        if any(b <= a for a, b in itertools.pairwise(seqs)):
            dupes = [s for s, n in Counter(seqs).items() if n > 1]
            report.bad("connections", f"{who} {room}: not increasing (repeated: {dupes[:5]})")
            continue
        if not live:
            report.ok("connections", "multi_room")
            report.ok("connections", "events")
            continue
        start = conn["since"] + 1 if conn.get("since") is not None else seqs[0]
        expected = list(range(start, seqs[-1] + 1))
        if seqs != expected:
            missing = sorted(set(expected) - set(seqs))
            report.bad("connections", f"{who} {room}: gap, missing {missing[:10]}")
            continue
        phantom = [s for s in seqs if s not in log_seqs.get(room, ())]
        if phantom:
            report.bad("connections", f"{who} {room}: seqs not in the log {phantom[:10]}")
            continue
        report.ok("connections")
        report.ok("connections", "events")
        for _ in seqs[1:]:
            report.ok("connections", "events")
    if live and conn["end"]:
        seen = conn["seqs"].get(conn["room"], [])
        top = seen[-1] if seen else conn.get("since") or 0
        if top != last_seq[conn["room"]]:
            report.bad(
                "caught_up",
                f"{who} {conn['room']}: ended at {top}, room is at {last_seq[conn['room']]}",
            )
        else:
            report.ok("caught_up")


def load_access(path: str | Path | None) -> Access:
    if path is None:
        return {}
    raw = json.loads(Path(path).read_text())
    return {slug: (None if members is None else set(members)) for slug, members in raw.items()}


def summary(report: dict) -> str:
    lines = [f"checker: {'OK' if report['ok'] else 'VIOLATIONS'}; {report['log_events']} events"]
    for name in ("log", "acked", "indeterminate", "connections", "access", "caught_up"):
        counts = report["counts"].get(name, {})
        shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "nothing"
        lines.append(f"  {name:14} {shown}; violations {report['violations'].get(name, 0)}")
    for name, problems in report["problems"].items():
        lines.extend(f"  ! {name}: {p}" for p in problems[:10])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("histories", nargs="+")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--log", help="the event log as JSON Lines")
    source.add_argument("--database", help="DATABASE_URL to read the log from")
    parser.add_argument("--rooms", help="JSON: slug -> null (public) or [members]")
    args = parser.parse_args(argv)
    log = read_log(args.database) if args.database else list(history_format.read([args.log]))
    report = check(history_format.read(args.histories), log, load_access(args.rooms))
    print(json.dumps(report, indent=2, sort_keys=True))
    print(summary(report), file=sys.stderr)
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
