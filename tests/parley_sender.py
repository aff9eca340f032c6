#!/usr/bin/env python
"""A process with no reactor that posts through the Python API (``chat.parley.send``), as
a Celery worker or a cron script would: for the delay tests and bench/parley_delay.py.

    python tests/parley_sender.py ROOM USER COUNT GAP_SECONDS

Configured by the environment like the server it posts to (DATABASE_URL, REDIS_URL, ...).
Sends COUNT messages, GAP_SECONDS apart on average (spread from half to one and a half
times, so that the sends fall anywhere in the servers' check interval), and prints one
JSON line per send: ``{"seq", "called", "returned"}`` (after one unmeasured warm-up send),
times from ``time.time()`` (the clients measuring the delay run on the same machine).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")


def main(argv: list[str]) -> int:
    room, user, count, gap = argv[0], argv[1], int(argv[2]), float(argv[3])
    import django

    django.setup()
    from chat import parley

    run = f"{os.getpid()}-{random.getrandbits(32):08x}"
    # One send first, not measured: the first call of a process opens its connections
    # and builds the renderer (hundreds of ms), which a worker pays once, not per task.
    warm = parley.send(room, user, "delay probe warm-up", client_id=f"{run}-warm-up")
    print(json.dumps({"warm_up": warm["seq"]}), flush=True)
    for index in range(count):
        time.sleep(gap * random.uniform(0.5, 1.5))
        called = time.time()
        event = parley.send(room, user, f"delay probe {index}", client_id=f"{run}-{index}")
        returned = time.time()
        print(
            json.dumps({"seq": event["seq"], "called": called, "returned": returned}), flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
