"""A scripted session of a Debian IRC client against ``serve.py --irc-port``: suckless'
ii (apt-get install ii; scripts/install-irc-client.sh), a file-based client: commands go
into FIFOs, what the server says comes out in files. It joins a room, gets its history,
sends a message a browser's WebSocket receives, receives one that browser sends, and
exchanges a direct message. ii sends PASS <token> + NICK + USER, negotiates nothing
(no CAP): the plain RFC 1459 path."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from irc_testing import free_port
from live_clients import WSClient, provision, run
from parley_testing import ServerProcess
from token_testing import make_tokens

pytestmark = pytest.mark.skipif(
    shutil.which("ii") is None, reason="ii is not installed (scripts/install-irc-client.sh)"
)
PASSWORD = "pw-irc-debian-7710"


def wait_file(path: Path, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in (content := path.read_text(errors="replace")):
            return content
        time.sleep(0.05)
    shown = path.read_text(errors="replace") if path.exists() else "(no file)"
    raise AssertionError(f"{path}: no {text!r} within {timeout}s; it holds:\n{shown}")


def say(fifo: Path, line: str) -> None:
    deadline = time.monotonic() + 15
    while not fifo.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def test_ii_joins_gets_history_and_chats_both_ways(tmp_path):
    irc_port = free_port()
    server = ServerProcess(
        tmp_path / "server", env={"CHAT_RATE_LIMIT": "0"}, args=["--irc-port", str(irc_port)]
    ).start()
    ii = None
    try:
        accounts = provision(
            server, users=[("iggy", PASSWORD), ("webb", PASSWORD)], rooms=["ii-room"]
        )
        token = make_tokens(server, ("ii", "iggy"))["ii"]
        webb = accounts["webb"]
        home = tmp_path / "irc"

        async def session():
            nonlocal ii
            ws = await WSClient.connect(server, "ii-room", webb)
            try:
                await ws.send_and_ack("history before ii came", "h-1")
                ii = subprocess.Popen(
                    [
                        "ii",
                        "-s",
                        "127.0.0.1",
                        "-p",
                        str(irc_port),
                        "-n",
                        "iggy",
                        "-k",
                        "PARLEY_TOKEN",
                        "-i",
                        str(home),
                    ],
                    env={**os.environ, "PARLEY_TOKEN": token},
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                root = home / "127.0.0.1"
                wait_file(root / "out", "Welcome to Parley")
                say(root / "in", "/j #ii-room")
                channel = root / "#ii-room"
                wait_file(channel / "out", "history before ii came")
                say(channel / "in", "hello from ii")
                event = await ws.wait_for(
                    lambda f: f.get("type") == "message" and f.get("user") == "iggy",
                    15,
                    what="ii's message",
                )
                assert event["body"] == "hello from ii"
                await ws.send_and_ack("hello ii, from the browser", "w-1")
                out = wait_file(channel / "out", "hello ii, from the browser")
                # ii writes "<nick> text" lines: the same order as the room's log.
                order = [line.split(" ", 1)[1] for line in out.splitlines() if "<" in line]
                texts = [t for t in order if "<iggy>" in t or "<webb>" in t]
                assert texts == [
                    "<webb> history before ii came",
                    "<iggy> hello from ii",
                    "<webb> hello ii, from the browser",
                ]
            finally:
                await ws.conn.close()
            # A direct message: ii's "/j nick text" is PRIVMSG nick.
            say(root / "in", "/j webb psst, webb")
            async with httpx.AsyncClient(base_url=server.url, trust_env=False) as http:
                headers = {"Cookie": webb.cookie_header, "X-CSRFToken": webb.csrftoken}
                answer = await http.post("/api/dms/", json={"user": "iggy"}, headers=headers)
            dm = await WSClient.connect(server, answer.json()["slug"], webb, since=0)
            try:
                got = await dm.wait_for(
                    lambda f: f.get("type") == "message" and f.get("user") == "iggy",
                    15,
                    what="ii's direct message",
                )
                assert got["body"] == "psst, webb"
                await dm.send_and_ack("hi iggy, privately", "w-dm")
            finally:
                await dm.conn.close()
            wait_file(root / "webb" / "out", "hi iggy, privately")
            transcript = (root / "out").read_text() + (channel / "out").read_text()
            (tmp_path / "ii-session.txt").write_text(transcript)

        run(session(), timeout=90)
    finally:
        if ii is not None:
            ii.terminate()
            ii.wait(5)
        server.stop()
