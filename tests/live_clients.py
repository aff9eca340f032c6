"""Real clients of Parley's live chat (PROTOCOL.md), for integration tests and benchmarks.

Every client records everything it receives, in order, from a background reader task, and
every wait has a deadline: a server that stops answering makes the caller fail with a
message saying what was awaited and what had arrived, instead of hanging.

    account = login(server, "alice", "pw")
    async with await WSClient.connect(server, "lobby", account) as ws:
        await ws.send("hi", client_id="c-1")
        ack = await ws.wait_ack("c-1")

``SSEClient`` reads ``/events/rooms/<slug>/`` over httpx, ``PollClient`` long-polls and
POSTs, ``RawWebSocket`` speaks the WebSocket framing by hand on a blocking socket (for
frames a well-behaved library will not send, and for a consumer that never reads).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import json
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

DURABLE_TYPES = ("message", "edited", "reaction", "deleted")
# One line per request drowns the interesting part of a failure report.
logging.getLogger("httpx").setLevel(logging.WARNING)
DEFAULT_TIMEOUT = 10.0


def run(coro, timeout: float = 60.0):
    """``asyncio.run`` with an overall deadline, for sync tests."""

    async def bounded():
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


# --------------------------------------------------------------------------- accounts


@dataclass(frozen=True)
class Account:
    """A signed-in user: its session and CSRF cookies (from `login` or `provision`)."""

    username: str
    sessionid: str
    csrftoken: str

    @property
    def cookie_header(self) -> str:
        return f"sessionid={self.sessionid}; csrftoken={self.csrftoken}"


def login(server, username: str, password: str) -> Account:
    """Sign in through ``/accounts/login/`` (see parley_testing.login_client)."""
    from parley_testing import login_client

    client = login_client(server, username, password)
    try:
        return Account(username, client.cookies["sessionid"], client.cookies["csrftoken"])
    finally:
        client.close()


def login_many(server, credentials: Iterable[tuple[str, str]]) -> dict[str, Account]:
    """Sign several users in at once (password hashing dominates; it runs in parallel)."""
    credentials = list(credentials)
    with ThreadPoolExecutor(max_workers=8) as pool:
        accounts = list(pool.map(lambda c: login(server, *c), credentials))
    return {account.username: account for account in accounts}


_PROVISION = """
import json
from importlib import import_module
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.middleware.csrf import _get_new_csrf_string
from chat.models import Room
spec = json.loads({spec!r})
hashes = {{}}
sessions = {{}}
store = import_module(settings.SESSION_ENGINE).SessionStore
for u in spec["users"]:
    if u["password"] not in hashes:
        hashes[u["password"]] = make_password(u["password"])
    user, _ = User.objects.update_or_create(username=u["username"], defaults=dict(
        password=hashes[u["password"]], is_staff=u["staff"], is_superuser=u["staff"]))
    if spec["sessions"]:
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        sessions[user.username] = [session.session_key, _get_new_csrf_string()]
for r in spec["rooms"]:
    room, _ = Room.objects.update_or_create(slug=r["slug"], defaults=dict(
        name=r["slug"], is_public=r["public"], is_archived=r["archived"]))
    room.members.set(User.objects.filter(username__in=r["members"]))
print("PROVISIONED " + json.dumps(sessions))
"""


def provision(
    server, users: Iterable = (), rooms: Iterable = (), sessions: bool = True
) -> dict[str, Account]:
    """Create users and rooms in ONE ``manage.py shell`` (each run costs a Django start).

    ``users``: ``(username, password)`` or ``(username, password, staff)``.
    ``rooms``: a slug, or a dict ``{"slug", "public"=True, "archived"=False, "members"=[]}``.

    With ``sessions``, each user also gets a signed-in session, made the way
    ``django.contrib.auth.login`` makes one, and a CSRF token; returns their Accounts.
    (Much cheaper than the login form, whose password hashing costs ~0.5 s of CPU per user;
    ``login`` goes through the real form.)
    """
    spec = {"users": [], "rooms": [], "sessions": sessions}
    for user in users:
        username, password, *rest = user
        spec["users"].append(
            {"username": username, "password": password, "staff": bool(rest and rest[0])}
        )
    for room in rooms:
        if isinstance(room, str):
            room = {"slug": room}
        spec["rooms"].append(
            {
                "slug": room["slug"],
                "public": room.get("public", True),
                "archived": room.get("archived", False),
                "members": list(room.get("members", [])),
            }
        )
    out = server.shell(_PROVISION.format(spec=json.dumps(spec)))
    line = next(x for x in out.splitlines() if x.startswith("PROVISIONED "))
    made = json.loads(line.removeprefix("PROVISIONED "))
    return {name: Account(name, key, csrf) for name, (key, csrf) in made.items()}


_SHARED: dict[str, Any] = {}


def shared_server(tmp_path_factory, name: str, env: dict[str, str]):
    """One server per ``name`` for the whole test session, killed when Python exits.

    For modules that need the same non-default settings (e.g. no rate limit): each
    extra server costs seconds of start-up.
    """
    if name not in _SHARED:
        from parley_testing import ServerProcess

        server = ServerProcess(tmp_path_factory.mktemp(name), env=env).start()
        atexit.register(server.kill)
        _SHARED[name] = server
    return _SHARED[name]


# --------------------------------------------------------------------------- plain HTTP


def history(server, slug: str, account: Account | None = None) -> list[dict]:
    """The whole log of a room through the history API, oldest first."""
    headers = {"Cookie": account.cookie_header} if account else {}
    events: list[dict] = []
    before = None
    with httpx.Client(base_url=server.url, timeout=DEFAULT_TIMEOUT, trust_env=False) as client:
        for _ in range(10_000):
            params = {"limit": 200}
            if before is not None:
                params["before"] = before
            response = client.get(f"/api/rooms/{slug}/messages/", params=params, headers=headers)
            assert response.status_code == 200, (response.status_code, response.text)
            page = response.json()
            events[:0] = page["events"]
            if not page["has_more"] or not page["events"]:
                return events
            before = page["events"][0]["seq"]
    raise AssertionError("history did not end")


def wait_healthy(server, timeout: float = 30.0) -> None:
    """Wait until ``/healthz`` answers 200 (e.g. after a restart on the same port)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(server.url + "/healthz", timeout=2.0, trust_env=False)
            if response.status_code == 200:
                return
            last = response.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{server.url}/healthz not healthy after {timeout}s: {last!r}")


# --------------------------------------------------------------------------- helpers


def durable(events: Iterable[dict]) -> list[dict]:
    """The durable events (``message``, ``edited``, ``reaction``, ``deleted``) among frames."""
    return [e for e in events if isinstance(e, dict) and e.get("type") in DURABLE_TYPES]


IDENTITY = ("type", "room", "seq", "user", "body", "client_id", "target", "deleted")


def identities(events: Iterable[dict]) -> list[tuple]:
    """Durable events without their ``ts``, for comparisons about order and content.

    (Tests about "the same event everywhere" compare whole events, ``ts`` included.)
    """
    return [tuple(e.get(k) for k in IDENTITY) for e in durable(events)]


def seqs(events: Iterable[dict]) -> list[int]:
    return [e["seq"] for e in durable(events)]


def assert_exact_seqs(events: Iterable[dict], first: int, last: int, who: str = "") -> None:
    """The durable events are exactly ``first..last``: in order, no gap, no duplicate."""
    got = seqs(events)
    expected = list(range(first, last + 1))
    if got != expected:
        missing = sorted(set(expected) - set(got))
        extra = sorted(s for s in set(got) if s not in set(expected))
        dupes = sorted({s for s in got if got.count(s) > 1})
        raise AssertionError(
            f"{who}: expected seqs {first}..{last} in order; got {len(got)} events, "
            f"missing {missing[:20]}, unexpected {extra[:20]}, duplicated {dupes[:20]}, "
            f"out of order: {got != sorted(got)}; first 30: {got[:30]}"
        )


class _Recorder:
    """Frames received by a background reader; ``wait_for`` scans them with a deadline."""

    kind = "client"

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.closed = False
        self._changed = asyncio.Event()
        self._cursor = 0

    def _record(self, frame: Any) -> None:
        self.frames.append(frame)
        self._changed.set()

    def _mark_closed(self) -> None:
        self.closed = True
        self._changed.set()

    def describe_close(self) -> str:
        return "closed"

    async def wait_for(
        self,
        predicate: Callable[[Any], bool],
        timeout: float = DEFAULT_TIMEOUT,
        start: int = 0,
        what: str = "a frame",
    ) -> Any:
        """The first frame from index ``start`` on that satisfies ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        index = start
        while True:
            while index < len(self.frames):
                frame = self.frames[index]
                index += 1
                if predicate(frame):
                    return frame
            if self.closed:
                raise AssertionError(
                    f"{self.kind} {self.describe_close()} while waiting for {what}; "
                    f"last frames: {self.frames[-5:]}"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.kind}: no {what} within {timeout}s; "
                    f"{len(self.frames)} frames, last: {self.frames[-5:]}"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def recv_json(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """The next frame not yet returned by ``recv_json``."""
        frame = await self.wait_for(
            lambda _f: True, timeout, start=self._cursor, what="the next frame"
        )
        self._cursor += 1
        return frame

    def events(self) -> list[dict]:
        return [f for f in self.frames if isinstance(f, dict)]

    def durable(self) -> list[dict]:
        return durable(self.events())

    def last_seq(self) -> int:
        found = seqs(self.events())
        return found[-1] if found else 0

    async def wait_seq(self, seq: int, timeout: float = DEFAULT_TIMEOUT) -> list[dict]:
        """Wait for a durable event with ``seq >= seq``; returns the durable events so far."""
        await self.wait_for(
            lambda f: (
                isinstance(f, dict) and f.get("type") in DURABLE_TYPES and f.get("seq", 0) >= seq
            ),
            timeout,
            what=f"durable event seq>={seq}",
        )
        return self.durable()

    async def settle(self, quiet: float = 0.3, timeout: float = 5.0) -> None:
        """Wait until nothing new has arrived for ``quiet`` seconds (bounded by ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            count = len(self.frames)
            await asyncio.sleep(quiet)
            if len(self.frames) == count:
                return


# --------------------------------------------------------------------------- WebSocket


def ws_url(server, slug: str, since: int | None = None) -> str:
    base = server.url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    query = f"?since={since}" if since is not None else ""
    return f"{base}/ws/rooms/{slug}/{query}"


def browser_origin(server, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{server.port}"


class WSClient(_Recorder):
    """``websockets`` connection to ``/ws/rooms/<slug>/`` whose frames are recorded."""

    kind = "websocket"

    def __init__(self, conn: ClientConnection) -> None:
        super().__init__()
        self.conn = conn
        self._reader = asyncio.create_task(self._pump())

    @classmethod
    async def connect(
        cls,
        server,
        slug: str,
        account: Account | None = None,
        *,
        since: int | None = None,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
        open_timeout: float = DEFAULT_TIMEOUT,
        **kwargs: Any,
    ) -> WSClient:
        """Open a room stream. Raises ``websockets.exceptions.InvalidStatus`` if refused."""
        extra = dict(headers or {})
        if account is not None:
            extra["Cookie"] = account.cookie_header
        if origin is not None:
            extra["Origin"] = origin
        conn = await connect(
            ws_url(server, slug, since),
            additional_headers=extra,
            compression=None,
            proxy=None,
            ping_interval=None,
            open_timeout=open_timeout,
            close_timeout=2,
            max_size=2**24,
            **kwargs,
        )
        return cls(conn)

    async def _pump(self) -> None:
        try:
            async for message in self.conn:
                if isinstance(message, bytes):
                    self._record({"__binary__": message})
                    continue
                try:
                    self._record(json.loads(message))
                except ValueError:
                    self._record({"__not_json__": message})
        except ConnectionClosed:
            pass
        finally:
            self._mark_closed()

    @property
    def close_code(self) -> int | None:
        """The code of the close frame the server sent (None: none received)."""
        return self.conn.close_code

    def describe_close(self) -> str:
        return f"closed (code {self.close_code}, reason {self.conn.close_reason!r})"

    async def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> int | None:
        """Wait until the server closes the connection; returns its close code."""
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        except TimeoutError:
            raise AssertionError(
                f"websocket still open after {timeout}s; last frames: {self.frames[-5:]}"
            ) from None
        return self.close_code

    async def send_json(self, frame: Any) -> None:
        await self.conn.send(json.dumps(frame))

    async def send_raw(self, data: str | bytes | Iterable) -> None:
        await self.conn.send(data)

    async def send(self, body: Any, client_id: str | None = None) -> str | None:
        """``{"type": "send", ...}`` without waiting for its ack."""
        await self.send_json({"type": "send", "body": body, "client_id": client_id})
        return client_id

    async def typing(self) -> None:
        await self.send_json({"type": "typing"})

    async def wait_reply(self, client_id: str, timeout: float = DEFAULT_TIMEOUT) -> dict:
        """The ``ack`` or ``error`` that answers the send of ``client_id``."""
        return await self.wait_for(
            lambda f: (
                isinstance(f, dict)
                and f.get("type") in ("ack", "error")
                and f.get("client_id") == client_id
            ),
            timeout,
            what=f"ack/error for {client_id!r}",
        )

    async def wait_ack(self, client_id: str, timeout: float = DEFAULT_TIMEOUT) -> int:
        reply = await self.wait_reply(client_id, timeout)
        assert reply["type"] == "ack", f"send {client_id!r} got {reply}"
        return reply["seq"]

    async def send_and_ack(
        self, body: str, client_id: str, timeout: float = DEFAULT_TIMEOUT
    ) -> int:
        start = len(self.frames)
        await self.send(body, client_id)
        reply = await self.wait_for(
            lambda f: (
                isinstance(f, dict)
                and f.get("type") in ("ack", "error")
                and f.get("client_id") == client_id
            ),
            timeout,
            start=start,
            what=f"ack for {client_id!r}",
        )
        assert reply["type"] == "ack", f"send {client_id!r} got {reply}"
        return reply["seq"]

    async def wait_error(
        self, code: str | None = None, start: int = 0, timeout: float = DEFAULT_TIMEOUT
    ) -> dict:
        """The next ``error`` frame from index ``start`` (any code; checked by the caller)."""
        return await self.wait_for(
            lambda f: isinstance(f, dict) and f.get("type") == "error",
            timeout,
            start=start,
            what=f"error {code or ''}".strip(),
        )

    def acks(self) -> dict[str, int]:
        return {
            f["client_id"]: f["seq"]
            for f in self.events()
            if f.get("type") == "ack" and f.get("client_id") is not None
        }

    async def close(self) -> None:
        await self.conn.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader

    async def __aenter__(self) -> WSClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --------------------------------------------------------------------------- SSE


async def handshake_refusal(server, slug: str, account: Account | None) -> int | None:
    """The HTTP status a new WebSocket to ``slug`` is refused with, or None when it is let
    in (it is closed again at once)."""
    try:
        ws = await WSClient.connect(server, slug, account)
    except InvalidStatus as error:
        return error.response.status_code
    await ws.close()
    return None


@dataclass
class SSEEvent:
    id: str | None
    event: str | None
    data: Any  # parsed JSON (the raw text if it is not JSON)


class SSEClient(_Recorder):
    """``GET /events/rooms/<slug>/`` over httpx streaming; ``frames`` are the parsed data.

    ``raw`` keeps the SSE fields of each event (id/event lines), ``comments`` the comment
    lines (``: ping``) with their arrival time.
    """

    kind = "sse"

    def __init__(self, client: httpx.AsyncClient, response: httpx.Response) -> None:
        super().__init__()
        self.client = client
        self.response = response
        self.status = response.status_code
        self.headers = response.headers
        self.raw: list[SSEEvent] = []
        self.comments: list[tuple[float, str]] = []
        self.retry: str | None = None
        self.body = b""
        self._reader: asyncio.Task | None = None
        if self.status == 200:
            self._reader = asyncio.create_task(self._pump())
        else:
            self.closed = True

    @classmethod
    async def connect(
        cls,
        server,
        slug: str,
        account: Account | None = None,
        *,
        since: int | None = None,
        last_event_id: int | str | None = None,
        origin: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SSEClient:
        """Open the stream; check ``.status`` (non-200 bodies are read into ``.body``)."""
        extra = {"Accept": "text/event-stream", **(headers or {})}
        if account is not None:
            extra["Cookie"] = account.cookie_header
        if last_event_id is not None:
            extra["Last-Event-ID"] = str(last_event_id)
        if origin is not None:
            extra["Origin"] = origin
        params = {"since": since} if since is not None else {}
        client = httpx.AsyncClient(
            base_url=server.url, timeout=httpx.Timeout(DEFAULT_TIMEOUT, read=None), trust_env=False
        )
        request = client.build_request(
            "GET", f"/events/rooms/{slug}/", params=params, headers=extra
        )
        response = await client.send(request, stream=True)
        sse = cls(client, response)
        if response.status_code != 200:
            sse.body = await response.aread()
            await response.aclose()
            await client.aclose()
        return sse

    async def _pump(self) -> None:
        fields: dict[str, str] = {}
        data: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    # As EventSource does: a block without data lines dispatches nothing
                    # (it may still carry "retry:" or "id:").
                    if data:
                        text = "\n".join(data)
                        try:
                            parsed = json.loads(text)
                        except ValueError:
                            parsed = text
                        self.raw.append(SSEEvent(fields.get("id"), fields.get("event"), parsed))
                        self._record(parsed)
                    if "retry" in fields:
                        self.retry = fields["retry"]
                    fields, data = {}, []
                    continue
                if line.startswith(":"):
                    self.comments.append((time.monotonic(), line[1:].strip()))
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            self._mark_closed()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        await self.response.aclose()
        await self.client.aclose()

    async def __aenter__(self) -> SSEClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --------------------------------------------------------------------------- long-poll


class PollClient(_Recorder):
    """Long-poll ``GET`` (optionally as a background loop recording events) and ``POST``."""

    kind = "long-poll"

    def __init__(self, server, slug: str, account: Account | None = None) -> None:
        super().__init__()
        self.server = server
        self.slug = slug
        self.account = account
        self.path = f"/poll/rooms/{slug}/"
        self.http = httpx.AsyncClient(
            base_url=server.url, timeout=httpx.Timeout(DEFAULT_TIMEOUT, read=75.0), trust_env=False
        )
        self.since: int | None = None
        self.responses = 0
        self.error: str | None = None
        self._loop_task: asyncio.Task | None = None

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {}
        if self.account is not None:
            headers["Cookie"] = self.account.cookie_header
        headers.update(extra or {})
        return headers

    async def get(
        self,
        since: int | str | None = None,
        timeout: int | str | None = None,
        headers: dict[str, str] | None = None,
        params: dict | None = None,
    ) -> httpx.Response:
        query = dict(params or {})
        if since is not None:
            query["since"] = since
        if timeout is not None:
            query["timeout"] = timeout
        return await self.http.get(self.path, params=query, headers=self._headers(headers))

    async def post(
        self,
        body: Any = None,
        client_id: str | None = None,
        *,
        csrf: str | bool | None = True,
        payload: Any = ...,
        content: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """POST a send. ``csrf=True``: the account's token; a string: that token; None: none.

        ``payload`` replaces the JSON body; ``content`` sends raw bytes instead.
        """
        extra = {"Content-Type": "application/json"}
        if csrf is True and self.account is not None:
            extra["X-CSRFToken"] = self.account.csrftoken
        elif isinstance(csrf, str):
            extra["X-CSRFToken"] = csrf
        extra.update(headers or {})
        if content is None:
            if payload is ...:
                payload = {"body": body, "client_id": client_id}
            content = json.dumps(payload)
        return await self.http.post(self.path, content=content, headers=self._headers(extra))

    async def send_ok(self, body: str, client_id: str | None = None) -> int:
        """POST and insist on 201/200; returns the seq."""
        response = await self.post(body, client_id)
        assert response.status_code in (200, 201), (response.status_code, response.text)
        return response.json()["seq"]

    def start(self, since: int | None, hold: int = 10) -> None:
        """Poll in the background from ``since``, recording events like a stream does."""
        self.since = since
        self._loop_task = asyncio.create_task(self._poll_loop(hold))

    async def _poll_loop(self, hold: int) -> None:
        try:
            for _ in range(100_000):
                response = await self.get(self.since, hold)
                self.responses += 1
                if response.status_code != 200:
                    self.error = f"{response.status_code} {response.text[:300]}"
                    return
                answer = response.json()
                for event in answer["events"]:
                    self._record(event)
                self.since = answer["last_seq"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            self.error = repr(exc)
        finally:
            self._mark_closed()

    def describe_close(self) -> str:
        return f"stopped polling ({self.error})"

    async def collect(
        self, since: int, until_seq: int, timeout: float = DEFAULT_TIMEOUT, hold: int = 5
    ) -> list[dict]:
        """Poll from ``since`` until an event with ``seq >= until_seq``; returns them all."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        events: list[dict] = []
        while loop.time() < deadline:
            response = await self.get(since, hold)
            assert response.status_code == 200, (response.status_code, response.text)
            answer = response.json()
            events.extend(answer["events"])
            since = answer["last_seq"]
            if events and events[-1].get("seq", 0) >= until_seq:
                return events
        raise AssertionError(f"long-poll: no seq {until_seq} within {timeout}s; got {events[-3:]}")

    async def close(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        await self.http.aclose()

    async def __aenter__(self) -> PollClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# --------------------------------------------------------------------------- raw WebSocket


class RawWebSocket:
    """WebSocket framing by hand on a blocking socket.

    For what a library will not do: frames that lie about their length, fragments that
    never end, and a client that never reads (a slow consumer, with a tiny receive buffer).
    """

    def __init__(self, sock: socket.socket, leftover: bytes, status: int, head: str) -> None:
        self.sock = sock
        self.buffer = leftover
        self.status = status
        self.head = head

    @classmethod
    def connect(
        cls,
        server,
        slug: str,
        account: Account | None = None,
        *,
        since: int | None = None,
        origin: str | None = None,
        rcvbuf: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> RawWebSocket:
        parts = urlsplit(server.url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the advertised window stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect((parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        query = f"?{urlencode({'since': since})}" if since is not None else ""
        lines = [
            f"GET /ws/rooms/{slug}/{query} HTTP/1.1",
            f"Host: {parts.hostname}:{parts.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        if account is not None:
            lines.append(f"Cookie: {account.cookie_header}")
        if origin is not None:
            lines.append(f"Origin: {origin}")
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
            if len(data) > 65536:
                break
        head, _, rest = data.partition(b"\r\n\r\n")
        text = head.decode("latin-1")
        status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/") else 0
        return cls(sock, rest, status, text)

    def send_frame(
        self, opcode: int, payload: bytes, fin: bool = True, declared: int | None = None
    ) -> None:
        """Send one masked frame; ``declared`` lies about the payload length in the header."""
        length = len(payload) if declared is None else declared
        head = bytes([(0x80 if fin else 0) | opcode])
        if length < 126:
            head += bytes([0x80 | length])
        elif length < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def _read_exact(self, count: int) -> bytes:
        while len(self.buffer) < count:
            chunk = self.sock.recv(max(65536, count - len(self.buffer)))
            if not chunk:
                raise EOFError("connection closed by the server")
            self.buffer += chunk
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_frame(self) -> tuple[int, bytes]:
        """``(opcode, payload)`` of the next frame (fragments are returned as they come)."""
        first, second = self._read_exact(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exact(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exact(8))
        if second & 0x80:
            mask = self._read_exact(4)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read_exact(length)))
        else:
            payload = self._read_exact(length)
        return first & 0x0F, payload

    def read_until_close(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[int | None, list]:
        """Read frames until a close frame or EOF; returns (close code, text frames read).

        A close code of None means the connection ended without a close frame (EOF/reset).
        Raises AssertionError if the connection is still open after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        texts: list[str] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"raw websocket still open after {timeout}s")
            self.sock.settimeout(remaining)
            try:
                opcode, payload = self.read_frame()
            except (EOFError, ConnectionResetError, BrokenPipeError):
                return None, texts
            except TimeoutError:
                raise AssertionError(
                    f"raw websocket still open after {timeout}s ({len(texts)} frames read)"
                ) from None
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return code, texts
            if opcode == 0x1:
                texts.append(payload.decode("utf-8", "replace"))

    def tcp_state(self) -> int:
        """Linux TCP state of the socket (1 established, 7 closed, 8 close-wait, ...)."""
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return info[0]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
