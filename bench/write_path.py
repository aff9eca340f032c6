#!/usr/bin/env python
"""What one group commit costs when its sends are spread over many rooms.

    .venv/bin/python bench/write_path.py [--db sqlite|postgres] [--rooms 200] [--batches 200]
        [--profile FILE]

The many-room scenario (bench/scenario.py) showed the cost of a message sent, not of its
fan-out: with few senders per room, each batch holds sends of different rooms. This
times ``chat.log.append_events`` (the store thread's whole transaction) in-process, for
batches of B sends in B distinct rooms (B = 1, 4, 16, 64) and in ONE room, and counts
the queries each batch makes (Django's CaptureQueriesContext). ``--profile FILE`` writes
a cProfile of the B=16 case, summarized by cumulative time.

Prints one JSON object: per batch shape, ms per batch, ms per send, queries per batch.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import secrets
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def setup(db: str, workdir: Path) -> str:
    if db == "sqlite":
        url = f"sqlite:///{workdir / 'write.sqlite3'}"
    else:
        name = f"bench_write_{secrets.token_hex(4)}"
        import psycopg

        with psycopg.connect(ADMIN_URL, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        url = f"postgres://postgres@127.0.0.1:5432/{name}"
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return url


def provision(rooms: int, users: int) -> tuple[list[str], list[tuple[int, str]]]:
    from django.contrib.auth import get_user_model

    from chat.models import Room

    model = get_user_model()
    made = model.objects.bulk_create(model(username=f"u{i}") for i in range(users))
    made = list(model.objects.filter(username__in=[u.username for u in made]))
    slugs = [f"room-{i}" for i in range(rooms)]
    Room.objects.bulk_create(Room(slug=s, name=s, is_public=True) for s in slugs)
    through = Room.members.through
    room_ids = dict(Room.objects.values_list("slug", "id"))
    through.objects.bulk_create(
        through(room_id=room_ids[s], user_id=u.pk) for s in slugs for u in made
    )
    return slugs, [(u.pk, u.username) for u in made]


def run(batches: int, shape: int, one_room: bool, slugs, users) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.live.records import SendRequest
    from chat.log import append_events

    queries = 0
    started = time.perf_counter()
    for b in range(batches):
        requests = []
        for i in range(shape):
            slug = slugs[0] if one_room else slugs[(b * shape + i) % len(slugs)]
            user_id, username = users[(b + i) % len(users)]
            requests.append(
                SendRequest(slug, user_id, username, f"hello {b}:{i}", secrets.token_hex(8))
            )
        with CaptureQueriesContext(connection) as ctx:
            results = append_events(requests)
        queries += len(ctx.captured_queries)
        assert all(r.created for r in results), results
    elapsed = time.perf_counter() - started
    return {
        "batch": shape,
        "rooms_per_batch": 1 if one_room else shape,
        "ms_per_batch": round(elapsed / batches * 1000, 3),
        "ms_per_send": round(elapsed / (batches * shape) * 1000, 3),
        "queries_per_batch": round(queries / batches, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--profile", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = setup(args.db, Path(tmp))
        slugs, users = provision(args.rooms, args.users)
        out = {"db": args.db, "rooms": args.rooms, "shapes": []}
        run(20, 4, False, slugs, users)  # warm-up: caches, prepared statements
        for shape in (1, 4, 16, 64):
            out["shapes"].append(run(max(10, args.batches // shape), shape, False, slugs, users))
        out["shapes"].append(run(max(10, args.batches // 16), 16, True, slugs, users))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            run(max(10, args.batches // 16), 16, False, slugs, users)
            profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
            args.profile.write_text(text.getvalue())
        from django.db import connection

        connection.close()
        if args.db == "postgres":
            import psycopg

            name = url.rsplit("/", 1)[1]
            with psycopg.connect(ADMIN_URL, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(json.dumps(out))


if __name__ == "__main__":
    main()
