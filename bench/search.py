"""Search latency at scale: N messages (default 1M), then search p50/p99 for a few queries,
on SQLite (a throwaway file) and PostgreSQL (a throwaway database on 127.0.0.1:5432, user
postgres, dropped at the end).

    .venv/bin/python bench/search.py --vendor sqlite --messages 1000000
    .venv/bin/python bench/search.py --vendor postgresql --messages 1000000

Each run is its own process (Django is set up once per database). The log is built with
raw executemany in batches of 10,000 rows per transaction. SQLite: the FTS5 index is kept
by the migration's triggers while loading (what production does); PostgreSQL: the GIN
index is dropped for the load and made again after it (a rebuild), then ANALYZE. Bodies
are 6-20 words drawn Zipf-like from a 20,000-word vocabulary; 40 rooms of which 10 are
private, the searcher a member of 3 of those; 1% of messages deleted. Timed: the whole of
``chat.search.search`` (the index query, the rows, the highlight), 50 runs per query after
3 warm-up runs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VOCAB = 20_000
ROOMS = 40
PRIVATE = 10
USERS = 20
BATCH = 10_000


def words() -> list[str]:
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz"
    seen: dict[str, None] = {}
    while len(seen) < VOCAB:
        seen["".join(rng.choice(letters) for _ in range(rng.randint(3, 9)))] = None
    return list(seen)


def setup_django(vendor: str) -> tuple[str, object]:
    if vendor == "sqlite":
        path = Path(tempfile.mkdtemp(prefix="parley-bench-search-")) / "bench.sqlite3"
        os.environ["DATABASE_URL"] = f"sqlite:///{path}"
        cleanup = path
    else:
        import psycopg

        name = f"parley_bench_search_{secrets.token_hex(4)}"
        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as admin:
            admin.autocommit = True
            admin.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{name}"
        cleanup = name
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return os.environ["DATABASE_URL"], cleanup


def drop(vendor: str, cleanup) -> None:
    from django.db import connections

    connections.close_all()
    if vendor == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(str(cleanup) + suffix).unlink(missing_ok=True)
        cleanup.parent.rmdir()
    else:
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 user=postgres dbname=test") as admin:
            admin.autocommit = True
            admin.execute(f'DROP DATABASE IF EXISTS "{cleanup}" WITH (FORCE)')


def build(vendor: str, total: int, vocab: list[str]) -> dict:
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from chat.models import Room

    users = User.objects.bulk_create([User(username=f"u{i}") for i in range(USERS)])
    rooms = Room.objects.bulk_create(
        [Room(slug=f"r{i}", name=f"r{i}", is_public=i >= PRIVATE) for i in range(ROOMS)]
    )
    searcher = users[0]
    for room in rooms[:3]:
        room.members.add(searcher)
    rng = random.Random(11)
    cum = []
    acc = 0.0
    for rank in range(1, VOCAB + 1):
        acc += 1 / rank**1.07
        cum.append(acc)
    seqs = dict.fromkeys((r.id for r in rooms), 0)
    room_ids = [r.id for r in rooms]
    user_ids = [u.id for u in users]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    if vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX chat_message_search")
    sql = (
        "INSERT INTO chat_message (room_id, seq, kind, user_id, body, html, mentions, "
        "emoji, op, created_at, deleted_at) VALUES (%s, %s, 'message', %s, %s, %s, '[]', "
        "'', '', %s, %s)"
    )
    done = 0
    while done < total:
        rows = []
        for i in range(done, min(total, done + BATCH)):
            room = rng.choice(room_ids)
            seqs[room] += 1
            body = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(6, 20)))
            ts = start + timedelta(seconds=i)
            deleted = ts if rng.random() < 0.01 else None
            rows.append((room, seqs[room], rng.choice(user_ids), body, body, ts, deleted))
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        done += len(rows)
    loaded = time.perf_counter() - started
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(
                "CREATE INDEX chat_message_search ON chat_message USING gin (search_vector) "
                "WHERE kind = 'message' AND deleted_at IS NULL"
            )
            cursor.execute("ANALYZE")
        else:
            cursor.execute("ANALYZE")
    indexed = time.perf_counter() - started
    for room in rooms:
        Room.objects.filter(pk=room.id).update(last_seq=seqs[room.id])
    return {
        "messages": total,
        "load_seconds": round(loaded, 1),
        "load_and_index_seconds": round(indexed, 1),
        "searcher": searcher,
    }


def measure(searcher, vocab: list[str], runs: int) -> list[dict]:
    from chat import search

    queries = {
        "common word (rank 3)": vocab[2],
        "mid word (rank 300)": vocab[299],
        "rare word (rank 15000)": vocab[14999],
        "two words, common + mid": f"{vocab[2]} {vocab[299]}",
        "three common words": f"{vocab[0]} {vocab[1]} {vocab[4]}",
        "phrase of two common": f'"{vocab[0]} {vocab[1]}"',
        "no match": "qqqqzzzz",
        "common word in one room": (vocab[2], "r12"),
        "rare word in one room": (vocab[14999], "r12"),
    }
    out = []
    for label, q in queries.items():
        room = None
        if isinstance(q, tuple):
            q, room = q
        times = []
        for i in range(runs + 3):
            t = time.perf_counter()
            results, has_more = search.search(searcher, q, room=room)
            if i >= 3:
                times.append((time.perf_counter() - t) * 1000)
        times.sort()
        p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
        out.append(
            {
                "query": label,
                "q": q,
                "results": len(results),
                "has_more": has_more,
                "p50_ms": round(statistics.median(times), 2),
                "p99_ms": round(p99, 2),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vendor", choices=["sqlite", "postgresql"], required=True)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    _, cleanup = setup_django(args.vendor)
    try:
        vocab = words()
        built = build(args.vendor, args.messages, vocab)
        searcher = built.pop("searcher")
        rows = measure(searcher, vocab, args.runs)
    finally:
        drop(args.vendor, cleanup)
    print(json.dumps({"vendor": args.vendor, **built}))
    print(f"{'query':28} {'results':>7} {'p50 ms':>8} {'p99 ms':>8}")
    for row in rows:
        more = "+" if row["has_more"] else ""
        print(
            f"{row['query']:28} {str(row['results']) + more:>7} "
            f"{row['p50_ms']:>8} {row['p99_ms']:>8}"
        )


if __name__ == "__main__":
    main()
