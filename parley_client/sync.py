"""``Client``: the blocking client (httpx for the API, websockets' sync client for the
live stream)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from parley_client import _core
from parley_client.errors import ConnectionFailed, ParleyError


class Client:
    """A Parley account's API, signed in with a token (``prl_...``, made at
    ``/accounts/tokens/``). Every write carries a client_id (made here unless given) and
    is retried with it on ``unavailable``, a lost connection and ``rate_limited``, for up
    to ``retry_for`` seconds: the server answers a resend with the original seq, so a
    retry never posts twice."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retry_for: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_for = retry_for
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": _core.USER_AGENT}
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the API ------------------------------------------------------------------------

    def call(self, call: _core.Call, *, retry: bool = True) -> Any:
        """Make ``call``, retried as ``Retry`` says; its JSON answer, or raise."""
        policy = _core.Retry(self.retry_for, time.monotonic())
        while True:
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params, json=call.body
                )
                return _core.decode(response.status_code, response.content, response.headers)
            except httpx.TransportError as exc:
                error: ParleyError = ConnectionFailed(str(exc) or type(exc).__name__)
            except ParleyError as exc:
                error = exc
            wait = policy.delay(error, time.monotonic()) if retry else None
            if wait is None:
                raise error
            time.sleep(wait)

    def me(self) -> dict:
        return self.call(_core.Call("GET", "/api/me/"))

    def rooms(self) -> list[dict]:
        return self.call(_core.Call("GET", "/api/rooms/"))["rooms"]

    def room(self, room: str) -> dict:
        return self.call(_core.Call("GET", _core.room_path(room)))

    def history(
        self,
        room: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> dict:
        """``{"events": [...], "has_more": bool}`` (PROTOCOL.md "HTTP API")."""
        return self.call(_core.history_call(room, before, after, limit))

    def send(
        self,
        room: str,
        body: str,
        client_id: str | None = None,
        reply_to: int | None = None,
        attachments: Iterable[str] = (),
    ) -> dict:
        """Post ``body``; ``{"seq", "event"}`` once stored (the same for a resend)."""
        cid = client_id or _core.new_client_id()
        return self.call(_core.send_call(room, body, cid, reply_to, attachments))

    def edit(self, room: str, seq: int, body: str, client_id: str | None = None) -> dict:
        payload = {"body": body, "client_id": client_id or _core.new_client_id("e")}
        return self.call(
            _core.Call("PATCH", _core.room_path(room, "messages", str(seq)), body=payload)
        )

    def delete(self, room: str, seq: int, client_id: str | None = None) -> dict:
        params = {"client_id": client_id or _core.new_client_id("d")}
        return self.call(
            _core.Call("DELETE", _core.room_path(room, "messages", str(seq)), params=params)
        )

    def react(
        self, room: str, seq: int, emoji: str, op: str = "add", client_id: str | None = None
    ) -> dict:
        payload = {"emoji": emoji, "op": op, "client_id": client_id or _core.new_client_id("r")}
        path = _core.room_path(room, "messages", str(seq), "reactions")
        return self.call(_core.Call("POST", path, body=payload))

    def mark_read(self, room: str, seq: int) -> dict:
        return self.call(_core.Call("POST", _core.room_path(room, "read"), body={"seq": seq}))

    def dm(self, user: str) -> dict:
        """The direct room with ``user`` (made if needed): its room object."""
        return self.call(_core.Call("POST", "/api/dms/", body={"user": user}))

    # -- live -----------------------------------------------------------------------------

    def events(
        self, room: str, since: int | None = None, *, ephemeral: bool = False
    ) -> EventStream:
        """The room's live events, over the WebSocket, as an iterator: each durable
        event once, in seq order, across reconnects (resumed with ``since``); with
        ``ephemeral``, presence, typing and read too. Without ``since`` it starts at the
        room's newest event. Ends by raising ``AccessLost`` (closed 4403) or
        ``Unauthorized``; ``close()`` it when done."""
        return EventStream(self, _core.StreamState(room, since, ephemeral))

    def inbox(self) -> EventStream:
        """The inbox stream (``/ws/me/``): hello, activity, read, rooms; a fresh hello
        after each reconnect."""
        return EventStream(self, _core.StreamState(None))


class EventStream(Iterator[dict]):
    """An iterator of a live stream's frames that reconnects by itself."""

    def __init__(self, client: Client, state: _core.StreamState) -> None:
        self.client = client
        self.state = state
        self._ws: ClientConnection | None = None
        self._closed = False

    @property
    def last_seq(self) -> int | None:
        return self.state.last_seq

    def __next__(self) -> dict:
        return self.next()

    def next(self, timeout: float | None = None) -> dict:
        """The next frame; ``TimeoutError`` if none came within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                raise StopIteration
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._ws is None:
                self._connect(left, deadline)
                continue
            try:
                raw = self._ws.recv(timeout=left)
            except TimeoutError:
                raise TimeoutError("no event in time") from None
            except ConnectionClosed as exc:
                self._drop()
                code = exc.rcvd.code if exc.rcvd is not None else None
                self._pause(self.state.closed(code, exc.rcvd.reason if exc.rcvd else ""), deadline)
                continue
            frame = self.state.take(raw)
            if frame is not None:
                return frame

    def _connect(self, timeout: float | None, deadline: float | None) -> None:
        try:
            self._ws = connect(
                self.state.url(self.client.base_url),
                additional_headers=self.client._headers,
                open_timeout=10 if timeout is None else max(0.1, min(10.0, timeout)),
                max_size=None,
                # Held across next() calls and closed by close(): not a ``with`` block.
                legacy=True,
            )
        except InvalidStatus as exc:
            response = exc.response
            error = _core.error_from(
                response.status_code, _json(response.body), response.headers.get("retry-after")
            )
            self._pause(self.state.refused(error), deadline)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            self._pause(self.state.refused(ConnectionFailed(str(exc))), deadline)

    def _pause(self, seconds: float, deadline: float | None) -> None:
        if deadline is not None and time.monotonic() + seconds > deadline:
            time.sleep(max(0.0, deadline - time.monotonic()))
            raise TimeoutError("no event in time (reconnecting)")
        time.sleep(seconds)

    def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()

    def close(self) -> None:
        self._closed = True
        self._drop()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _json(body: bytes | None) -> Any:
    import json

    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
