"""The Python API from a process with no reactor reaches live clients within 1 s, on SQLite
with no Redis (PROTOCOL.md "Python API for Django code"): a real ``serve.py``, a real
WebSocket client, and a separate process posting with ``chat.parley.send`` (and with
``manage.py parley_send``).

The server's room check is put out of the way (an hour), so only the cursor check can
deliver; the control server, with the cursor check off too, shows that without it the
event does not come within the second.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest
from live_clients import provision, run
from parley_delays import TimedWSClient, delays_to, send_from_another_process, summary
from parley_testing import REPO, ServerProcess

SLUG = "pyapi"
PASSWORD = "correct-horse-battery-9"
COMMAND = [sys.executable, str(REPO / "manage.py")]
QUIET = {"CHAT_ROOM_CHECK_SECONDS": "3600", "CHAT_RATE_LIMIT": "0"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    made = ServerProcess(tmp_path_factory.mktemp("pyapi"), env=QUIET).start()
    provision(made, users=[("alice", PASSWORD), ("bot", PASSWORD)], rooms=[SLUG])
    yield made
    made.stop()


def test_parley_send_from_another_process_arrives_within_a_second(server, capsys):
    account = provision(server, users=[("alice", PASSWORD)])["alice"]

    async def main():
        ws = await TimedWSClient.connect(server, SLUG, account)
        try:
            await ws.wait_for(lambda f: f.get("type") == "hello", what="hello")
            sends = await send_from_another_process(server.env, SLUG, "bot", 20, 0.3)
            return await delays_to([ws], sends, within=3.0), sends
        finally:
            await ws.close()

    delays, sends = run(main())
    figures = summary(delays, sends)
    with capsys.disabled():
        print(f"\nparley.send -> WebSocket, SQLite, no Redis: {figures}")
    assert len(delays) == 20
    assert max(delays) < 1.0, figures


def test_the_management_command_from_a_script(server):
    account = provision(server, users=[("alice", PASSWORD)])["alice"]

    async def main():
        ws = await TimedWSClient.connect(server, SLUG, account)
        try:
            await ws.wait_for(lambda f: f.get("type") == "hello", what="hello")
            done = await asyncio.to_thread(
                subprocess.run,
                [*COMMAND, "parley_send", SLUG, "bot", "deploy ✅", "--client-id", "deploy-1"],
                cwd=REPO,
                env=server.env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            returned = time.time()
            assert done.returncode == 0, done.stderr
            event = json.loads(done.stdout)
            frame = await ws.wait_for(
                lambda f: f.get("type") == "message" and f.get("seq") == event["seq"],
                timeout=3,
                what="the command's message",
            )
            # Within a second of the command's return (its Django start-up is not the API's).
            assert ws.arrived[event["seq"]] - returned < 1.0
            return event, frame
        finally:
            await ws.close()

    event, frame = run(main())
    assert frame["body"] == "deploy ✅" and frame["user"] == "bot"
    assert frame == {**event, **frame} and event["client_id"] == "deploy-1"
    # The same client_id again posts nothing and prints the original event.
    again = subprocess.run(
        [*COMMAND, "parley_send", SLUG, "bot", "deploy ✅", "--client-id", "deploy-1"],
        cwd=REPO,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(again.stdout)["seq"] == event["seq"]
    refused = subprocess.run(
        [*COMMAND, "parley_send", "no-such-room", "bot", "x"],
        cwd=REPO,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "not_found" in refused.stderr


def test_a_delete_and_a_reaction_from_manage_py_shell(server):
    """What an admin does from ``manage.py shell``: no longer a 5 s wait."""
    account = provision(server, users=[("alice", PASSWORD)])["alice"]
    seq = json.loads(server.manage("parley_send", SLUG, "bot", "to be deleted"))["seq"]
    script = (
        "import json; from chat import parley; "
        f"r = parley.react({SLUG!r}, 'alice', {seq}, '👍'); "
        f"d = parley.delete({SLUG!r}, 'bot', {seq}); "
        "print(json.dumps([r['seq'], d['seq']]))"
    )

    async def main():
        ws = await TimedWSClient.connect(server, SLUG, account, since=seq - 1)
        try:
            await ws.wait_seq(seq)
            out = await asyncio.to_thread(server.manage, "shell", "-c", script)
            returned = time.time()
            reacted, deleted = json.loads(out.strip().splitlines()[-1])
            await ws.wait_seq(deleted, timeout=3)
            return [ws.arrived[s] - returned for s in (reacted, deleted)], ws.durable()
        finally:
            await ws.close()

    delays, events = run(main())
    assert max(delays) < 1.0, delays
    assert [e["type"] for e in events if e["seq"] > seq] == ["reaction", "deleted"]


def test_without_the_cursor_check_the_event_waits(tmp_path):
    """The control: the same send to a server whose cursor check is off arrives only
    when the client resumes (no room check within the test), so the test above cannot
    pass by another way."""
    env = {**QUIET, "CHAT_CURSOR_CHECK_SECONDS": "0"}
    control = ServerProcess(tmp_path / "control", env=env).start()
    try:
        account = provision(control, users=[("alice", PASSWORD), ("bot", PASSWORD)], rooms=[SLUG])[
            "alice"
        ]

        async def main():
            ws = await TimedWSClient.connect(control, SLUG, account)
            try:
                await ws.wait_for(lambda f: f.get("type") == "hello", what="hello")
                sends = await send_from_another_process(control.env, SLUG, "bot", 1, 0.1)
                await asyncio.sleep(1.5)
                return ws.arrived, sends
            finally:
                await ws.close()

        arrived, sends = run(main())
        assert sends and sends[0]["seq"] not in arrived
    finally:
        control.stop()
