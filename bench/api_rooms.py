"""Time ``GET /api/rooms/`` for a user in 200 rooms holding 100k messages (issue 10).

The room list carries each room's unread and mention counts (chat/counts.py: one
statement, at most 100 index entries per room). This builds that data set in a fresh
database with raw ``executemany`` inserts (seconds, not the minutes of the append path),
then times the whole view through Django's test client, in this process, and prints the
median of ``--runs`` as JSON.

    .venv/bin/python bench/api_rooms.py --db sqlite
    .venv/bin/python bench/api_rooms.py --db postgres      # 127.0.0.1:5432, user postgres

The data set: ``--rooms`` public rooms, ``--messages`` messages spread evenly over them
from 50 other users (every 10th by the reader, every 25th deleted, every 50th mentioning
the reader). Every user is a member of every room; a third of their rooms are read to
the end, a third to the middle, a third not at all (every count there is capped).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-rooms-"))
    pg_name = f"parley_bench_{secrets.token_hex(4)}"
    if args.db == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    else:
        _pg_admin(f'CREATE DATABASE "{pg_name}"')
        os.environ["DATABASE_URL"] = PG.format(name=pg_name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost")
    sys.path.insert(0, str(REPO))
    try:
        result = run(args)
        result["db"] = args.db
        print(json.dumps(result, indent=2))
    finally:
        if args.db == "postgres":
            from django.db import connections

            connections.close_all()
            _pg_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


def _pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=5432, user="postgres", dbname="test", autocommit=True
    ) as conn:
        conn.execute(statement)


def run(args) -> dict:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    started = time.perf_counter()
    reader_id = build(args.rooms, args.messages)
    built = time.perf_counter() - started

    from django.contrib.auth import get_user_model
    from django.test import Client

    from chat.counts import counts

    client = Client()
    client.force_login(get_user_model().objects.get(pk=reader_id))

    def timed(call) -> list[float]:
        call()  # warm: connection, caches
        samples = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            call()
            samples.append((time.perf_counter() - t0) * 1000)
        return samples

    def get_rooms():
        response = client.get("/api/rooms/")
        assert response.status_code == 200, response.content[:300]
        return response

    body = get_rooms().json()
    api = timed(get_rooms)
    alone = timed(lambda: counts(reader_id))
    shown = body["rooms"]
    return {
        "rooms": args.rooms,
        "messages": args.messages,
        "build_seconds": round(built, 1),
        "runs": args.runs,
        "api_rooms_median_ms": round(statistics.median(api), 2),
        "api_rooms_p90_ms": round(statistics.quantiles(api, n=10)[-1], 2),
        "counts_median_ms": round(statistics.median(alone), 2),
        "listed": len(shown),
        "unread_total": sum(r["unread"] for r in shown),
        "mentions_total": sum(r["mentions"] for r in shown),
        "plan": plan(reader_id),
    }


def build(room_count: int, message_count: int) -> int:
    """The data set, with raw inserts; returns the reader's user id."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from chat.counts import MEMBERS, MENTIONS, MESSAGES, POSITIONS, ROOMS

    users = get_user_model()
    # No passwords: hashing 51 of them would take longer than the rest of the build.
    users.objects.bulk_create(
        users(username=name, password="!") for name in ["reader", *(f"user{i}" for i in range(50))]
    )
    reader = users.objects.get(username="reader")
    others = list(users.objects.exclude(pk=reader.pk).values_list("pk", flat=True))
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    per_room = message_count // room_count
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {ROOMS} (slug, name, kind, description, is_public, is_archived,"
            " created_at, last_seq, slow_mode_seconds)"
            " VALUES (%s, %s, 'room', '', %s, %s, %s, %s, 0)",
            [
                (f"room-{i:03}", f"Room {i:03}", True, False, now, per_room)
                for i in range(room_count)
            ],
        )
        cursor.execute(f"SELECT id FROM {ROOMS} ORDER BY id")
        room_ids = [row[0] for row in cursor.fetchall()]
        messages, mentions = [], []
        for room_id in room_ids:
            for seq in range(1, per_room + 1):
                author = reader.pk if seq % 10 == 0 else others[seq % len(others)]
                deleted = now if seq % 25 == 0 else None
                messages.append((room_id, seq, author, f"message {seq}", now, deleted))
                if seq % 50 == 7:
                    mentions.append((room_id, seq, reader.pk))
        cursor.executemany(
            f"INSERT INTO {MESSAGES} (room_id, seq, kind, user_id, body, html, mentions,"
            " client_id, target, reply_to, emoji, op, created_at, edited_at, deleted_at)"
            " VALUES (%s, %s, 'message', %s, %s, '', '[]', NULL, NULL, NULL, '', '', %s, NULL,"
            " %s)",
            messages,
        )
        cursor.executemany(
            f"INSERT INTO {MENTIONS} (room_id, seq, user_id) VALUES (%s, %s, %s)", mentions
        )
        cursor.executemany(
            f"INSERT INTO {MEMBERS} (room_id, user_id) VALUES (%s, %s)",
            # The others are members too: the reader's rows are 1 in 51 of the table.
            [(room_id, user) for room_id in room_ids for user in (reader.pk, *others)],
        )
        # A third read to the end, a third to the middle, a third not at all.
        read_to = [(per_room, per_room // 2, 0)[i % 3] for i in range(len(room_ids))]
        cursor.executemany(
            f"INSERT INTO {POSITIONS} (room_id, user_id, read_seq) VALUES (%s, %s, %s)",
            [(room_id, reader.pk, seq) for room_id, seq in zip(room_ids, read_to, strict=True)],
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return reader.pk


def plan(reader_id: int) -> str:
    """The database's plan of the counts statement (to see it walks the indexes)."""
    from django.db import connection

    from chat import counts as module

    sql = module._SELECT.format(source=f"{module.MEMBERS} mb", where="WHERE mb.user_id = %s")
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + sql, [reader_id])
            return " | ".join(str(row[-1]) for row in cursor.fetchall())
        cursor.execute("EXPLAIN " + sql, [reader_id])
        return "\n".join(row[0] for row in cursor.fetchall())


if __name__ == "__main__":
    main()
