#!/usr/bin/env python
"""What the inbox stream costs: server CPU per delivered message in a room of N members,
each with a room WebSocket, without and with an inbox stream (``/ws/me/``) each, in ONE
run on one server (issue 10: "it must cost little when a room of 1000 members gets a
message").

    .venv/bin/python bench/inbox_cost.py --members 1000 --messages 300

Phases, on the same fresh server (pinned to core 0, clients on core 1):

1. ``rooms``: N members connected to the room; one sender sends ``--messages`` messages
   (at most ``--window`` not yet received by everyone);
2. ``rooms+inbox``: the same, with each member's inbox stream open too (every message is
   then an ``activity`` frame to every member but its sender, with their own counts);
3. ``rooms again``: the inboxes closed, to show how much the figure drifts on its own.

Each phase reports server CPU seconds per message sent and per 1000 room deliveries; the
ratio is phase 2 over the mean of phases 1 and 3. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

from common import (
    PARLEY_PY,
    REPO,
    RESULTS_DIR,
    clean_workdir,
    log,
    parley_env,
    pin_client,
    prepare_parley,
    raise_fd_limit,
    start_parley,
)
from loadclient import ReceiverPool, new_loop
from wsload import _drive

HOST = "127.0.0.1"
ROOM = "inbox-bench"

# Users with sessions, made the way django.contrib.auth.login makes them (one password
# hash for all: the login form would spend ~0.3 s of CPU per user), and the room with
# them all as members (m2m_changed gives each a read position).
_PROVISION = """
import json
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from chat.models import Room
spec = json.loads({spec!r})
password = make_password("bench-inbox-pw")
User.objects.bulk_create(
    [User(username=name, password=password) for name in spec["users"]], ignore_conflicts=True
)
users = list(User.objects.filter(username__in=spec["users"]))
store = import_module(settings.SESSION_ENGINE).SessionStore
cookies = {{}}
for user in users:
    session = store()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    cookies[user.username] = "sessionid=" + session.session_key
room, _ = Room.objects.get_or_create(slug=spec["room"], defaults=dict(name=spec["room"]))
room.members.add(*users)
print("PROVISIONED " + json.dumps(cookies))
"""


def provision(db_url: str, static_root: Path, users: list[str]) -> dict[str, str]:
    spec = json.dumps({"users": users, "room": ROOM})
    done = subprocess.run(
        [str(PARLEY_PY), "manage.py", "shell", "-c", _PROVISION.format(spec=spec)],
        cwd=REPO,
        env=parley_env(db_url, static_root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("PROVISIONED ")), None)
    if line is None:
        raise RuntimeError(f"provisioning failed:\n{done.stdout[-2000:]}{done.stderr[-3000:]}")
    return json.loads(line.removeprefix("PROVISIONED "))


def connect_each(pool: ReceiverPool, port: int, path: str, cookies: list[str]) -> int:
    """One WebSocket per cookie (each member its own user), spread over the pool's
    processes; how many connected."""
    connected = 0
    procs = len(pool.conns)
    for start in range(0, len(cookies), procs):
        batch = cookies[start : start + procs]
        commands = [
            {"cmd": "connect", "n": 1, "transport": "ws", "host": HOST, "port": port,
             "path": path, "cookie": cookie, "concurrency": 1}
            for cookie in batch
        ]  # fmt: skip
        commands += [{**commands[0], "n": 0}] * (procs - len(batch))
        answers = pool._ask_all(commands, 60)
        connected += sum(a["connected"] for a in answers)
    return connected


def phase(name: str, server, pool: ReceiverPool, cookies: list[str], args, sender: str) -> dict:
    """The members connect to the room (afresh: a receiver counts each message number
    once, and every phase numbers its messages from 0), then the messages are sent."""
    members = connect_each(pool, server.port, f"/ws/rooms/{ROOM}/", cookies)
    time.sleep(2.0)  # hellos done, presence settled (coalesced to one broadcast a second)
    loop = new_loop()
    try:
        drive = loop.run_until_complete(
            _drive(
                server,
                pool,
                members,
                room=ROOM,
                cookie=sender,
                rate=None,
                window=args.window,
                duration=args.duration,
                max_messages=args.messages,
                settle=1.0,
                drain_timeout=30.0,
            )
        )
    finally:
        loop.close()
    delivered = pool.delivered()
    pool.close_receivers()
    sent = drive["sent"]
    result = {
        "phase": name,
        "room_connections": members,
        "sent": sent,
        "send_errors": drive["send_errors"],
        "room_deliveries": delivered,
        "expected": sent * members,
        "server_cpu_s": round(drive["cpu"], 3),
        "cpu_ms_per_message": round(drive["cpu"] / max(sent, 1) * 1000, 3),
        "cpu_s_per_1000_deliveries": round(drive["cpu"] / max(delivered, 1) * 1000, 5),
    }
    log(f"{name}: {json.dumps(result)}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--duration", type=float, default=60.0, help="per phase, at most")
    args = parser.parse_args(argv)
    pin_client()
    raise_fd_limit()
    workdir = RESULTS_DIR / "inbox_cost"
    clean_workdir(workdir)
    data = prepare_parley(workdir, users=(), rooms=(ROOM,))
    db_url = data.fresh_db_url()
    tag = secrets.token_hex(2)
    members = [f"m{tag}-{i}" for i in range(args.members)]
    # A sender per phase: the sender's client_ids are b0, b1, ... in every phase, and the
    # same user's would be answered as resends (guarantee 4), appending nothing.
    senders = [f"s{tag}-{i}" for i in range(3)]
    log(f"provisioning {args.members} members and their sessions")
    cookies = provision(db_url, data.static_root, members + senders)
    member_cookies = [cookies[n] for n in members]
    sender_cookies = [cookies[n] for n in senders]
    server = start_parley(
        workdir, db_url, data.static_root, extra_env={"CHAT_ROOM_CHECK_SECONDS": "3600"}
    )
    rooms_pool, inbox_pool = ReceiverPool(procs=2), ReceiverPool(procs=2)
    try:
        results = [phase("rooms", server, rooms_pool, member_cookies, args, sender_cookies[0])]
        log(f"connecting {args.members} inbox WebSockets")
        inboxes = connect_each(inbox_pool, server.port, "/ws/me/", member_cookies)
        results.append(
            phase("rooms+inbox", server, rooms_pool, member_cookies, args, sender_cookies[1])
        )
        inbox_pool.close_receivers()
        time.sleep(1.0)
        results.append(
            phase("rooms again", server, rooms_pool, member_cookies, args, sender_cookies[2])
        )
    finally:
        rooms_pool.shutdown()
        inbox_pool.shutdown()
        server.stop()
        data.drop()
    base = (results[0]["cpu_ms_per_message"] + results[2]["cpu_ms_per_message"]) / 2
    report = {
        "test": "inbox_cost",
        "members": args.members,
        "inbox_connections": inboxes,
        "phases": results,
        "ratio_cpu_per_message_with_inbox": round(results[1]["cpu_ms_per_message"] / base, 3),
        "inbox_cpu_ms_per_message": round(results[1]["cpu_ms_per_message"] - base, 3),
        # Each message is an activity frame to every inbox but the sender's (it has none).
        "inbox_cpu_us_per_activity_frame": round(
            (results[1]["cpu_ms_per_message"] - base) * 1000 / max(inboxes, 1), 3
        ),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
