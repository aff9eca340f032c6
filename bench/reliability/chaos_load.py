"""The chaos run's clients: WebSocket senders and readers, SSE and long-poll readers, and
uploaders that attach what they upload through the REST API, all in one asyncio loop.

Every client records what it did and saw in the history format agreed with the checker
(JSON Lines; ``t``, ``client``, ``user``, ``kind``): ``send``, ``ack``, ``send_error``,
``send_lost``, ``open``, ``event``, ``close``. Uploaders add ``upload_ok`` /
``upload_error`` (the checker ignores kinds it does not know; chaos.py checks those).

A client behaves as a careful real one: it resumes every stream with ``since`` = the last
seq it saw, and retries a send with the SAME ``client_id`` until it is acknowledged
(after ``unavailable`` or a connection that died before the answer), so a duplicate in
the log would be the server's fault, not the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
from dataclasses import dataclass, field

import httpx
from clients import http_client
from history import History
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

DURABLE = {"message", "edited", "reaction", "deleted"}
ANSWER_TIMEOUT = 30.0  # a send unanswered this long counts as lost; the socket is dropped
MAX_ATTEMPTS = 40  # one client_id is retried at most this often, then given up


@dataclass
class Spec:
    name: str
    user: str
    token: str
    room: str
    door: str  # ws | sse | poll | upload
    sends: bool = False


@dataclass
class Load:
    base: str  # http://127.0.0.1:port
    history: History
    send_interval: float = 4.0
    sending: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    last_seen: dict[str, int] = field(default_factory=dict)  # client name -> last seq
    senders: list = field(default_factory=list)

    def ws_url(self, room: str, since: int) -> str:
        return self.base.replace("http", "ws", 1) + f"/ws/rooms/{room}/?since={since}"


def _auth(spec: Spec) -> dict[str, str]:
    return {"Authorization": f"Bearer {spec.token}"}


class Sender:
    """One client_id at a time, retried until acked: what a careful client does."""

    def __init__(self, load: Load, spec: Spec) -> None:
        self.load, self.spec = load, spec
        load.senders.append(self)
        self.count = 0
        self.current: str | None = None
        self.attempts = 0

    def next_id(self) -> str | None:
        if self.current is None and self.load.sending.is_set():
            self.count += 1
            self.current, self.attempts = f"{self.spec.name}-{self.count}", 0
        return self.current

    def record(self, kind: str, **fields) -> None:
        self.load.history.record(
            self.spec.name, self.spec.user, kind, room=self.spec.room, **fields
        )

    def attempt(self) -> str:
        self.attempts += 1
        self.record("send", client_id=self.current)
        return self.current

    def answered(self, cid: str, seq: int | None, code: str | None) -> None:
        if seq is not None:
            self.record("ack", client_id=cid, seq=seq)
            self.current = None
        else:
            self.record("send_error", client_id=cid, code=code)
            if self.attempts >= MAX_ATTEMPTS:
                self.current = None

    def lost(self, cid: str) -> None:
        self.record("send_lost", client_id=cid)
        if self.attempts >= MAX_ATTEMPTS:
            self.current = None


def _backoff(failures: int) -> float:
    return min(5.0, 0.2 * 2 ** min(failures, 5)) * random.uniform(0.5, 1.0)


class Stream:
    """Per client: numbering of its connections and the event records of each."""

    def __init__(self, load: Load, spec: Spec) -> None:
        self.load, self.spec = load, spec
        self.conns = 0
        self.conn = ""
        load.last_seen.setdefault(spec.name, 0)

    @property
    def last(self) -> int:
        return self.load.last_seen[self.spec.name]

    def open(self) -> int:
        self.conns += 1
        self.conn = f"{self.spec.name}#{self.conns}"
        self.load.history.record(
            self.spec.name, self.spec.user, "open", room=self.spec.room, conn=self.conn,
            door=self.spec.door, since=self.last,
        )  # fmt: skip
        return self.last

    def event(self, event: dict) -> None:
        if event.get("type") not in DURABLE or event.get("seq") is None:
            return
        seq = int(event["seq"])
        self.load.history.record(
            self.spec.name, self.spec.user, "event", room=self.spec.room, conn=self.conn,
            seq=seq, event_id=f"{event.get('user')}/{event.get('client_id')}",
            type=event["type"],
        )  # fmt: skip
        self.load.last_seen[self.spec.name] = max(self.last, seq)

    def close(self, reason: str) -> None:
        name, user = self.spec.name, self.spec.user
        self.load.history.record(name, user, "close", conn=self.conn, reason=reason)


async def ws_client(load: Load, spec: Spec) -> None:
    stream, sender = Stream(load, spec), Sender(load, spec) if spec.sends else None
    failures = 0
    while not load.stopping.is_set():
        since = stream.open()
        reason = "end"
        waiting: dict[str, asyncio.Future] = {}
        try:
            async with connect(
                load.ws_url(spec.room, since), additional_headers=_auth(spec), open_timeout=10,
                ping_interval=10, ping_timeout=20, max_size=2**22, max_queue=None,
            ) as ws:  # fmt: skip
                failures = 0

                async def read(ws=ws, waiting=waiting) -> None:
                    async for raw in ws:
                        frame = json.loads(raw)
                        kind, cid = frame.get("type"), frame.get("client_id")
                        if kind in ("ack", "error") and cid in waiting:
                            waiting.pop(cid).set_result(frame)
                        else:
                            stream.event(frame)

                reader = asyncio.create_task(read())
                try:
                    await _ws_send_loop(load, ws, sender, waiting, reader)
                finally:
                    reader.cancel()
                    with contextlib.suppress(BaseException):
                        await reader
        except InvalidStatus as error:
            reason = f"refused {error.response.status_code}"
        except (OSError, TimeoutError, WebSocketException) as error:
            reason = f"{type(error).__name__}: {error}"[:200]
        stream.close(reason)
        if sender is not None and sender.current is not None and waiting:
            sender.lost(sender.current)
        if reason != "end":
            failures += 1
            await asyncio.sleep(_backoff(failures))


async def _ws_send_loop(load: Load, ws, sender, waiting, reader) -> None:
    """Send one message at a time (retrying its client_id) until the run stops."""
    while not load.stopping.is_set():
        if reader.done():
            reader.result()  # raises what ended the stream
            raise ConnectionError("stream ended")
        cid = sender.next_id() if sender is not None else None
        if cid is None:
            await asyncio.wait([reader], timeout=0.5)
            continue
        future = asyncio.get_running_loop().create_future()
        waiting[cid] = future
        sender.attempt()  # before the frame goes out: from here on its fate is unknown
        await ws.send(json.dumps({"type": "send", "body": f"chaos {cid}", "client_id": cid}))
        done, _ = await asyncio.wait(
            [future, reader], timeout=ANSWER_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if future not in done:
            if reader in done:
                reader.result()
                raise ConnectionError("stream ended")
            raise TimeoutError("no answer to a send")
        frame = future.result()
        acked = frame["type"] == "ack"
        sender.answered(cid, frame.get("seq") if acked else None, frame.get("code"))
        pause = load.send_interval if acked else 1.0
        await asyncio.wait([reader], timeout=random.uniform(0.5, 1.5) * pause)


async def sse_client(load: Load, spec: Spec) -> None:
    stream, failures = Stream(load, spec), 0
    timeout = httpx.Timeout(10.0, read=40.0)
    async with http_client(base_url=load.base, timeout=timeout) as http:
        while not load.stopping.is_set():
            since = stream.open()
            reason = "end"
            try:
                url = f"/events/rooms/{spec.room}/?since={since}"
                async with http.stream("GET", url, headers=_auth(spec)) as answer:
                    if answer.status_code != 200:
                        raise ConnectionError(f"refused {answer.status_code}")
                    failures = 0
                    async for line in answer.aiter_lines():
                        if line.startswith("data:"):
                            stream.event(json.loads(line[5:]))
                        if load.stopping.is_set():
                            break
                    else:
                        raise ConnectionError("stream ended")
            except (OSError, ConnectionError, httpx.HTTPError) as error:
                reason = f"{type(error).__name__}: {error}"[:200]
            stream.close(reason)
            if reason != "end":
                failures += 1
                await asyncio.sleep(_backoff(failures))


async def poll_client(load: Load, spec: Spec) -> None:
    """One ``conn`` is a run of polls with no failure between them."""
    stream, failures = Stream(load, spec), 0
    timeout = httpx.Timeout(10.0, read=30.0)
    async with http_client(base_url=load.base, timeout=timeout) as http:
        while not load.stopping.is_set():
            stream.open()
            reason = "end"
            try:
                while not load.stopping.is_set():
                    url = f"/poll/rooms/{spec.room}/?since={stream.last}&timeout=5"
                    answer = await http.get(url, headers=_auth(spec))
                    if answer.status_code != 200:
                        raise ConnectionError(f"poll answered {answer.status_code}")
                    failures = 0
                    for event in answer.json()["events"]:
                        stream.event(event)
            except (OSError, ConnectionError, ValueError, httpx.HTTPError) as error:
                reason = f"{type(error).__name__}: {error}"[:200]
            stream.close(reason)
            if reason != "end":
                failures += 1
                await asyncio.sleep(_backoff(failures))


async def upload_client(load: Load, spec: Spec) -> None:
    """Upload a small file, then send a message with it attached (REST, retried by
    client_id). Each 201 upload is recorded with its hash: chaos.py fetches it back."""
    sender, failures = Sender(load, spec), 0
    timeout = httpx.Timeout(15.0)
    async with http_client(base_url=load.base, timeout=timeout) as http:
        pending: str | None = None  # an upload id not attached yet
        while not load.stopping.is_set():
            await asyncio.sleep(random.uniform(0.5, 1.5) * load.send_interval * (failures + 1))
            try:
                if pending is None:
                    pending = await _upload(load, spec, http)
                    if pending is None:
                        failures = min(failures + 1, 3)
                        continue
                cid = sender.next_id()
                if cid is None:
                    continue
                sender.attempt()
                answer = await http.post(
                    f"/api/rooms/{spec.room}/messages/", headers=_auth(spec),
                    json={"body": f"file {cid}", "client_id": cid, "attachments": [pending]},
                )  # fmt: skip
                if answer.status_code in (200, 201):
                    sender.answered(cid, answer.json()["seq"], None)
                    pending, failures = None, 0
                else:
                    sender.answered(cid, None, _error_code(answer))
                    failures = min(failures + 1, 3)
            except (OSError, ValueError, httpx.HTTPError):
                if sender.current is not None and sender.attempts:
                    sender.lost(sender.current)
                failures = min(failures + 1, 3)


async def _upload(load: Load, spec: Spec, http: httpx.AsyncClient) -> str | None:
    data = os.urandom(8192)
    try:
        answer = await http.post(
            f"/api/rooms/{spec.room}/uploads/", headers=_auth(spec),
            files={"file": ("chaos.bin", data, "application/octet-stream")},
        )  # fmt: skip
    except (OSError, httpx.HTTPError) as error:
        load.history.record(spec.name, spec.user, "upload_error", room=spec.room, status=None,
                         code=type(error).__name__)  # fmt: skip
        return None
    if answer.status_code == 201:
        upload = answer.json()["upload"]
        load.history.record(
            spec.name, spec.user, "upload_ok", room=spec.room, upload=upload["id"],
            url=upload["url"], sha256=hashlib.sha256(data).hexdigest(),
        )  # fmt: skip
        return upload["id"]
    load.history.record(spec.name, spec.user, "upload_error", room=spec.room,
                     status=answer.status_code, code=_error_code(answer))  # fmt: skip
    return None


def _error_code(answer: httpx.Response) -> str:
    """The protocol's error code, or ``http <status>`` for an answer that has none (a
    500 page, say: an answer all the same, not a lost request)."""
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        return answer.json()["error"]["code"]
    return f"http {answer.status_code}"


DOORS = {"ws": ws_client, "sse": sse_client, "poll": poll_client, "upload": upload_client}


async def run_clients(load: Load, specs: list[Spec], ramp: float = 5.0) -> list[asyncio.Task]:
    """Start every client, spread over ``ramp`` seconds (500 handshakes at once would
    only measure the accept queue)."""
    tasks = []
    for index, spec in enumerate(specs):
        tasks.append(asyncio.create_task(DOORS[spec.door](load, spec), name=spec.name))
        if index % 20 == 19:
            await asyncio.sleep(ramp * 20 / max(1, len(specs)))
    return tasks
