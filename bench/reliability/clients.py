"""Recording clients for every door of Parley, writing the history format (history.py).

Each client signs in with a bearer token (``Authorization: Bearer prl_...``), runs on
asyncio, and records what it sends and sees into a shared ``History``:

    hist = History("h.jsonl")
    ws = RoomWS(base, "lobby", "alice", token, hist, client="alice-ws-1")
    await ws.open(since=0)
    await ws.send("hi")
    await ws.close("end")

``RoomWS`` (``/ws/rooms/<slug>/``), ``RoomSSE`` (``/events/rooms/<slug>/``), ``RoomPoll``
(``/poll/rooms/<slug>/``, GET loop and POST sends), ``InboxWS`` (``/ws/me/``: ``activity``
events carry room and seq) and ``IRCClient`` (``--irc-port``; lines carry no seq, so it
records its refusals and counts lines, and sends through ``PRIVMSG``). A refused open is a
``refused`` record and ``open`` returns False.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

try:
    from .history import History
except ImportError:  # run from bench/reliability on sys.path
    from history import History

_cids = itertools.count(1)
_tls: ssl.SSLContext | None = None


def http_client(**options: Any) -> httpx.AsyncClient:
    """An httpx client that shares one TLS context: httpx builds one per client
    otherwise (certifi's bundle read and parsed), and that was 43% of a soak client
    process's CPU, every visit opening a client (plain HTTP needs none of it)."""
    global _tls
    if _tls is None:
        _tls = ssl.create_default_context()
    return httpx.AsyncClient(verify=_tls, trust_env=False, **options)


DURABLE = ("message", "edited", "reaction", "deleted")


class _Client:
    door = ""

    def __init__(self, base: str, room: str, user: str, token: str, hist: History, client: str):
        self.base, self.room, self.user, self.token = base.rstrip("/"), room, user, token
        self.hist, self.client = hist, client
        self.conn: str | None = None
        self.last_seq = 0
        # Set by close(): the reason the reader's end is recorded with, not "dropped".
        self.closing: str | None = None
        self._task: asyncio.Task | None = None

    def _rec(self, kind: str, **fields: Any) -> None:
        self.hist.record(self.client, self.user, kind, **fields)

    def _opened(self, since: int | None) -> None:
        self.conn = self.hist.new_conn()
        self._rec("open", room=self.room, conn=self.conn, door=self.door, since=since)

    def _event(self, ev: Any) -> None:
        if isinstance(ev, dict) and ev.get("type") in DURABLE and "seq" in ev:
            self.last_seq = max(self.last_seq, ev["seq"])
            noted = ev["type"] == "message" and ev.get("client_id") is not None
            self._rec("event", room=ev.get("room", self.room), conn=self.conn, seq=ev["seq"],
                      event_id=f"{ev.get('user')}/{ev['client_id']}" if noted else None,
                      type=ev["type"])  # fmt: skip

    def new_cid(self) -> str:
        return f"{self.client}-{next(_cids)}"

    def _close(self, reason: str) -> None:
        if self.conn is not None:
            self._rec("close", conn=self.conn, reason=self.closing or reason)
            self.conn = None

    async def close(self, reason: str = "left") -> None:
        self.closing = self.closing or reason
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._close(reason)


class RoomWS(_Client):
    door = "ws"
    path = "/ws/rooms/{room}/"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ws = None
        self.pending: dict[str, asyncio.Future] = {}

    def _url(self, since: int | None) -> str:
        url = self.base.replace("http", "ws", 1) + self.path.format(room=self.room)
        return url + (f"?since={since}" if since is not None else "")

    async def open(self, since: int | None = None) -> bool:
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            self.ws = await connect(self._url(since), additional_headers=headers, max_size=2**22)
        except InvalidStatus as exc:
            self._rec("refused", room=self.room, door=self.door, status=exc.response.status_code)
            return False
        self._opened(since)
        self._task = asyncio.create_task(self._pump())
        return True

    async def _pump(self) -> None:
        try:
            async for raw in self.ws:
                self._frame(json.loads(raw))
        except (ConnectionClosed, OSError):
            pass
        finally:
            for cid, fut in self.pending.items():
                if not fut.done():
                    self._rec("send_lost", room=self.room, client_id=cid)
                    fut.set_result(None)
            self.pending.clear()
            self._close("dropped")

    def _frame(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind in ("ack", "error") and frame.get("client_id") in self.pending:
            cid = frame["client_id"]
            if kind == "ack":
                self._rec("ack", room=self.room, client_id=cid, seq=frame["seq"])
            else:
                self._rec("send_error", room=self.room, client_id=cid, code=frame.get("code"))
            self.pending.pop(cid).set_result(frame)
        else:
            self._event(frame)

    async def request(self, frame: dict, timeout: float = 30.0) -> dict | None:
        """Send a frame with a client_id (send, edit, react) and wait for its answer."""
        cid = frame.setdefault("client_id", self.new_cid())
        fut = asyncio.get_running_loop().create_future()
        self.pending[cid] = fut
        self._rec("send", room=self.room, client_id=cid)
        try:
            await self.ws.send(json.dumps(frame))
            return await asyncio.wait_for(fut, timeout)
        except (ConnectionClosed, OSError, TimeoutError):
            if self.pending.pop(cid, None) is not None:
                self._rec("send_lost", room=self.room, client_id=cid)
            return None

    async def send(self, body: str, **extra: Any) -> dict | None:
        return await self.request({"type": "send", "body": body, **extra})

    async def read(self, seq: int) -> None:
        with contextlib.suppress(ConnectionClosed, OSError):
            await self.ws.send(json.dumps({"type": "read", "seq": seq}))

    async def close(self, reason: str = "left") -> None:
        self.closing = reason
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)
        await super().close(reason)


class InboxWS(RoomWS):
    """``/ws/me/``: ``activity`` events name their room and seq (not every event does)."""

    door = "inbox"
    path = "/ws/me/"

    def __init__(self, base: str, user: str, token: str, hist: History, client: str):
        super().__init__(base, "*", user, token, hist, client)

    def _frame(self, frame: dict) -> None:
        if frame.get("type") == "activity":
            self._rec("event", room=frame["room"], conn=self.conn, seq=frame["seq"],
                      event_id=None, type="activity")  # fmt: skip


class _HTTPClient(_Client):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = http_client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"},
            timeout=httpx.Timeout(30.0, read=90.0),
        )  # fmt: skip

    async def post(self, frame: dict) -> dict | None:
        """A write through the long-poll POST: ``send`` and friends, recorded."""
        cid = frame.setdefault("client_id", self.new_cid())
        self._rec("send", room=self.room, client_id=cid)
        try:
            resp = await self.http.post(f"/poll/rooms/{self.room}/", json=frame)
        except httpx.HTTPError:
            self._rec("send_lost", room=self.room, client_id=cid)
            return None
        if resp.status_code in (200, 201) and "seq" in resp.json():
            self._rec("ack", room=self.room, client_id=cid, seq=resp.json()["seq"])
            return resp.json()
        try:
            code = resp.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = f"http_{resp.status_code}"
        self._rec("send_error", room=self.room, client_id=cid, code=code)
        return None

    async def upload(self, name: str, data: bytes) -> dict | None:
        resp = await self.http.post(
            f"/api/rooms/{self.room}/uploads/", files={"file": (name, data)}
        )
        ok = resp.status_code == 201
        self._rec("upload_ok" if ok else "upload_error", room=self.room, status=resp.status_code)
        return resp.json()["upload"] if ok else None

    async def close(self, reason: str = "left") -> None:
        await super().close(reason)
        await self.http.aclose()


class RoomSSE(_HTTPClient):
    door = "sse"

    async def open(self, since: int | None = None) -> bool:
        params = {"since": since} if since is not None else {}
        req = self.http.build_request("GET", f"/events/rooms/{self.room}/", params=params)
        resp = await self.http.send(req, stream=True)
        if resp.status_code != 200:
            await resp.aclose()
            self._rec("refused", room=self.room, door=self.door, status=resp.status_code)
            return False
        self._opened(since)
        self._task = asyncio.create_task(self._pump(resp))
        return True

    async def _pump(self, resp: httpx.Response) -> None:
        data: list[str] = []
        try:
            async for line in resp.aiter_lines():
                if line == "" and data:
                    with contextlib.suppress(ValueError):
                        self._event(json.loads("\n".join(data)))
                    data = []
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
        except httpx.HTTPError:
            pass
        finally:
            await resp.aclose()
            self._close("dropped")


class RoomPoll(_HTTPClient):
    door = "poll"

    async def open(self, since: int | None = None) -> bool:
        resp = await self.http.get(f"/poll/rooms/{self.room}/", params={"since": 0, "timeout": 0})
        if resp.status_code != 200:
            self._rec("refused", room=self.room, door=self.door, status=resp.status_code)
            return False
        # The probe's events are not recorded: the loop below starts at ``since``.
        start = since if since is not None else resp.json()["last_seq"]
        self._opened(start)
        self._task = asyncio.create_task(self._pump(start))
        return True

    async def _pump(self, since: int) -> None:
        try:
            while True:
                params = {"since": since, "timeout": 20}
                resp = await self.http.get(f"/poll/rooms/{self.room}/", params=params)
                if resp.status_code != 200:
                    break
                body = resp.json()
                for ev in body["events"]:
                    self._event(ev)
                since = body["last_seq"]
        except httpx.HTTPError:
            pass
        finally:
            self._close("dropped")


class IRCClient(_Client):
    """IRC on ``--irc-port``: PASS token + NICK, JOIN #room, PRIVMSG sends (no ack)."""

    door = "irc"

    def __init__(self, host: str, port: int, room: str, user: str, token: str, hist: History,
                 client: str):  # fmt: skip
        super().__init__("", room, user, token, hist, client)
        self.host, self.port = host, port
        self.lines = 0
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, since: int | None = None) -> bool:
        reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"PASS {self.token}\r\nNICK {self.user}\r\nUSER {self.user} 0 * :x\r\n"
                          f"JOIN #{self.room}\r\n".encode())  # fmt: skip
        while True:
            line = await asyncio.wait_for(reader.readline(), 30)
            if not line:
                self._rec("refused", room=self.room, door=self.door, status="closed")
                return False
            parts = line.decode(errors="replace").split()
            if len(parts) > 1 and parts[1] in ("473", "474", "403", "464", "465"):
                self._rec("refused", room=self.room, door=self.door, status=parts[1])
                self.writer.close()
                return False
            if len(parts) > 2 and parts[1] == "366":  # end of NAMES: joined
                break
        self._opened(None)
        self._task = asyncio.create_task(self._pump(reader))
        return True

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                self.lines += 1
                if line.startswith(b"PING"):
                    self.writer.write(b"PONG" + line[4:])
        except OSError:
            pass
        finally:
            self._close("dropped")

    async def say(self, text: str) -> None:
        self.writer.write(f"PRIVMSG #{self.room} :{text}\r\n".encode())
        await self.writer.drain()

    async def close(self, reason: str = "left") -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                self.writer.write(b"QUIT :bye\r\n")
                self.writer.close()
        await super().close(reason)
