"""The reliability checker (bench/reliability/checker.py) on hand-made histories: each
test breaks one property and the checker must name it; the clean history passes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.reliability import checker  # noqa: E402
from bench.reliability.history import History  # noqa: E402

ACCESS = {"lobby": None, "secret": {"alice"}}


def log_rows() -> list[dict]:
    rows = [
        {"room": "lobby", "seq": 1, "kind": "message", "user": "alice", "client_id": "a1"},
        {"room": "lobby", "seq": 2, "kind": "message", "user": "bob", "client_id": "b1"},
        {"room": "lobby", "seq": 3, "kind": "edited", "user": "alice", "client_id": None},
        {"room": "secret", "seq": 1, "kind": "message", "user": "alice", "client_id": "a2"},
    ]
    return rows


def rec(kind: str, client: str = "alice-ws", user: str = "alice", **fields) -> dict:
    return {"t": 0.0, "client": client, "user": user, "kind": kind, **fields}


def clean_history() -> list[dict]:
    return [
        rec("open", room="lobby", conn="c1", door="ws", since=None),
        rec("send", room="lobby", client_id="a1"),
        rec("event", room="lobby", conn="c1", seq=1, event_id="alice/a1", type="message"),
        rec("ack", room="lobby", client_id="a1", seq=1),
        rec("event", room="lobby", conn="c1", seq=2, event_id=None, type="message"),
        rec("close", conn="c1", reason="left"),
        rec("open", room="lobby", conn="c2", door="sse", since=2),
        rec("event", room="lobby", conn="c2", seq=3, event_id=None, type="edited"),
        rec("close", conn="c2", reason="end"),
        rec("send", room="lobby", client="bob-poll", user="bob", client_id="b1"),
        rec("send_lost", room="lobby", client="bob-poll", user="bob", client_id="b1"),
        rec("send", room="lobby", client="bob-poll", user="bob", client_id="b9"),
        rec("send_error", room="lobby", client="bob-poll", user="bob", client_id="b9",
            code="unavailable", t=50.0),
        rec("refused", room="secret", client="bob-ws", user="bob", door="ws", status=403),
        rec("open", room="secret", conn="c3", door="poll", since=0),
        rec("event", room="secret", conn="c3", seq=1, event_id=None, type="message"),
        rec("ack", room="secret", client_id="a2", seq=1),
        rec("open", room="*", conn="c4", door="inbox", since=None),
        rec("event", room="secret", conn="c4", seq=1, event_id=None, type="message"),
        rec("event", room="lobby", conn="c4", seq=3, event_id=None, type="edited"),
    ]  # fmt: skip


def test_clean_history_passes():
    report = checker.check(clean_history(), log_rows(), ACCESS)
    assert report["ok"], report["problems"]
    assert report["counts"]["acked"]["checked"] == 2
    assert report["counts"]["caught_up"]["checked"] == 1
    assert report["counts"]["access"]["refused"] == 1
    assert report["counts"]["indeterminate"] == {"in_log": 1, "absent": 1}


def broken(check: str, history: list[dict], log: list[dict] | None = None) -> None:
    report = checker.check(history, log_rows() if log is None else log, ACCESS)
    assert not report["ok"]
    assert set(report["violations"]) == {check}, report["problems"]


def test_acked_write_missing_from_log():
    history = clean_history()
    history.append(rec("send", room="lobby", client_id="a3"))
    history.append(rec("ack", room="lobby", client_id="a3", seq=4))
    broken("acked", history)


def test_acked_write_twice_in_log():
    log = [*log_rows(), {"room": "lobby", "seq": 4, "kind": "message", "user": "alice",
                         "client_id": "a1"}]  # fmt: skip
    history = [*clean_history()]
    # the reader that stays to the end must still be caught up to the new top
    history.insert(8, rec("event", room="lobby", conn="c2", seq=4, event_id=None, type="m"))
    broken("acked", history, log)


def test_no_op_ack_that_wrote_anyway():
    history = clean_history()
    history.append(rec("ack", room="lobby", client="bob-poll", user="bob", client_id="b1",
                       seq=None))  # fmt: skip
    broken("acked", history)


def test_ack_with_the_wrong_seq():
    history = clean_history()
    history[3] = rec("ack", room="lobby", client_id="a1", seq=2)
    broken("acked", history)


def test_indeterminate_write_twice():
    log = [*log_rows(), {"room": "lobby", "seq": 4, "kind": "message", "user": "bob",
                         "client_id": "b9"}, {"room": "lobby", "seq": 5, "kind": "message",
                         "user": "bob", "client_id": "b9"}]  # fmt: skip
    history = clean_history()
    history.insert(8, rec("event", room="lobby", conn="c2", seq=4, event_id=None, type="m"))
    history.insert(9, rec("event", room="lobby", conn="c2", seq=5, event_id=None, type="m"))
    broken("indeterminate", history, log)


def test_gap_in_a_connection():
    history = [r for r in clean_history() if not (r.get("conn") == "c1" and r.get("seq") == 1)]
    history.insert(0, rec("open", room="lobby", conn="c0", door="ws", since=0))
    history.insert(1, rec("event", room="lobby", conn="c0", seq=2, event_id=None, type="m"))
    broken("connections", history)


def test_gap_after_since():
    history = clean_history()
    history[6] = rec("open", room="lobby", conn="c2", door="sse", since=1)
    broken("connections", history)


def test_duplicate_in_a_connection():
    history = clean_history()
    history.insert(3, rec("event", room="lobby", conn="c1", seq=1, event_id=None, type="m"))
    broken("connections", history)


def test_reordered_in_a_multi_room_connection():
    history = clean_history()
    history.append(rec("event", room="lobby", conn="c4", seq=2, event_id=None, type="m"))
    broken("connections", history)


def test_event_not_in_the_log():
    history = clean_history()
    history.insert(5, rec("event", room="lobby", conn="c1", seq=3, event_id=None, type="m"))
    history.insert(6, rec("event", room="lobby", conn="c1", seq=4, event_id=None, type="m"))
    broken("connections", history)


def test_event_of_a_room_the_user_may_not_read():
    history = clean_history()
    history.append(
        rec("open", room="*", client="bob-in", user="bob", conn="c9", door="inbox", since=None)
    )
    history.append(rec("event", room="secret", client="bob-in", user="bob", conn="c9", seq=1,
                       event_id=None, type="message"))  # fmt: skip
    broken("access", history)


def test_opened_a_room_the_user_may_not_read():
    history = clean_history()
    history.append(rec("open", room="secret", client="bob-ws", user="bob", conn="c8",
                       door="ws", since=None))  # fmt: skip
    broken("access", history)


def test_reader_at_the_end_not_caught_up():
    history = [r for r in clean_history() if not (r.get("conn") == "c2" and r["kind"] == "event")]
    broken("caught_up", history)


@pytest.fixture
def run_files(tmp_path):
    hist = History(tmp_path / "h.jsonl")
    for r in clean_history():
        hist.record(r.pop("client"), r.pop("user"), r.pop("kind"), **{
            k: v for k, v in r.items() if k != "t"})  # fmt: skip
    hist.close()
    db = tmp_path / "db.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            "CREATE TABLE chat_room (id INTEGER PRIMARY KEY, slug TEXT);"
            "CREATE TABLE auth_user (id INTEGER PRIMARY KEY, username TEXT);"
            "CREATE TABLE chat_message (id INTEGER PRIMARY KEY, room_id INT, seq INT,"
            " kind TEXT, user_id INT, client_id TEXT, created_at TEXT);"
            "INSERT INTO chat_room VALUES (1, 'lobby'), (2, 'secret');"
            "INSERT INTO auth_user VALUES (1, 'alice'), (2, 'bob');"
        )
        ids = {"lobby": 1, "secret": 2, "alice": 1, "bob": 2}
        for r in log_rows():
            conn.execute(
                "INSERT INTO chat_message (room_id, seq, kind, user_id, client_id)"
                " VALUES (?, ?, ?, ?, ?)",
                (ids[r["room"]], r["seq"], r["kind"], ids[r["user"]], r["client_id"]),
            )
    rooms = tmp_path / "rooms.json"
    rooms.write_text(json.dumps({"lobby": None, "secret": ["alice"]}))
    return tmp_path / "h.jsonl", db, rooms


def test_command_line_reads_sqlite_and_exits_by_verdict(run_files, tmp_path):
    hist, db, rooms = run_files
    command = [sys.executable, str(REPO / "bench/reliability/checker.py"), str(hist),
               "--database", f"sqlite:///{db}", "--rooms", str(rooms)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"]
    with open(hist, "a") as f:
        f.write(json.dumps(rec("event", room="lobby", conn="c1", seq=2, event_id=None,
                               type="m")) + "\n")  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "connections" in json.loads(done.stdout)["violations"]


def test_a_gap_or_a_repeat_in_the_log_itself():
    rows = log_rows()
    broken("log", clean_history(), [*rows, {**rows[3], "client_id": None}])  # secret#1 twice
    gap = [*rows, {"room": "secret", "seq": 3, "kind": "message", "user": "alice",
                   "client_id": None}]  # fmt: skip
    broken("log", clean_history(), gap)  # secret has 1 and 3


def test_an_event_that_is_not_the_logs_event_at_its_seq():
    history = clean_history()
    history[2] = rec("event", room="lobby", conn="c1", seq=1, event_id="bob/b1", type="message")
    broken("connections", history)


def test_unavailable_for_a_write_that_committed_is_counted_not_failed():
    log = [*log_rows(), {"room": "lobby", "seq": 4, "kind": "message", "user": "bob",
                         "client_id": "b9", "created_at": 49.0}]  # fmt: skip
    history = clean_history()
    history.insert(8, rec("event", room="lobby", conn="c2", seq=4, event_id=None, type="m"))
    report = checker.check(history, log, ACCESS)
    assert report["ok"], report["problems"]
    assert report["counts"]["indeterminate"]["unavailable_committed"] == 1
    later = [*log[:-1], {**log[-1], "created_at": 51.0}]  # committed by a retry after it
    report = checker.check(history, later, ACCESS)
    assert "unavailable_committed" not in report["counts"]["indeterminate"]
