"""``AsyncClient``: the asyncio client (httpx.AsyncClient for the API, websockets'
asyncio client for the live stream). The same methods as ``Client``, awaited."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from parley_client import _core
from parley_client.errors import ConnectionFailed, ParleyError
from parley_client.sync import _json


class AsyncClient:
    """See ``Client``: token auth, idempotent writes retried with their client_id."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retry_for: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry_for = retry_for
        self._headers = {"Authorization": f"Bearer {token}", "User-Agent": _core.USER_AGENT}
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def call(self, call: _core.Call, *, retry: bool = True) -> Any:
        policy = _core.Retry(self.retry_for, time.monotonic())
        while True:
            try:
                response = await self._http.request(
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
            await asyncio.sleep(wait)

    async def me(self) -> dict:
        return await self.call(_core.Call("GET", "/api/me/"))

    async def rooms(self) -> list[dict]:
        return (await self.call(_core.Call("GET", "/api/rooms/")))["rooms"]

    async def room(self, room: str) -> dict:
        return await self.call(_core.Call("GET", _core.room_path(room)))

    async def history(
        self,
        room: str,
        *,
        before: int | None = None,
        after: int | None = None,
        limit: int | None = None,
    ) -> dict:
        return await self.call(_core.history_call(room, before, after, limit))

    async def send(
        self,
        room: str,
        body: str,
        client_id: str | None = None,
        reply_to: int | None = None,
        attachments: Iterable[str] = (),
    ) -> dict:
        cid = client_id or _core.new_client_id()
        return await self.call(_core.send_call(room, body, cid, reply_to, attachments))

    async def edit(self, room: str, seq: int, body: str, client_id: str | None = None) -> dict:
        payload = {"body": body, "client_id": client_id or _core.new_client_id("e")}
        path = _core.room_path(room, "messages", str(seq))
        return await self.call(_core.Call("PATCH", path, body=payload))

    async def delete(self, room: str, seq: int, client_id: str | None = None) -> dict:
        params = {"client_id": client_id or _core.new_client_id("d")}
        path = _core.room_path(room, "messages", str(seq))
        return await self.call(_core.Call("DELETE", path, params=params))

    async def react(
        self, room: str, seq: int, emoji: str, op: str = "add", client_id: str | None = None
    ) -> dict:
        payload = {"emoji": emoji, "op": op, "client_id": client_id or _core.new_client_id("r")}
        path = _core.room_path(room, "messages", str(seq), "reactions")
        return await self.call(_core.Call("POST", path, body=payload))

    async def mark_read(self, room: str, seq: int) -> dict:
        return await self.call(
            _core.Call("POST", _core.room_path(room, "read"), body={"seq": seq})
        )

    async def dm(self, user: str) -> dict:
        return await self.call(_core.Call("POST", "/api/dms/", body={"user": user}))

    def events(
        self, room: str, since: int | None = None, *, ephemeral: bool = False
    ) -> AsyncEventStream:
        """See ``Client.events``: ``async for event in client.events("lobby")``."""
        return AsyncEventStream(self, _core.StreamState(room, since, ephemeral))

    def inbox(self) -> AsyncEventStream:
        return AsyncEventStream(self, _core.StreamState(None))


class AsyncEventStream(AsyncIterator[dict]):
    def __init__(self, client: AsyncClient, state: _core.StreamState) -> None:
        self.client = client
        self.state = state
        self._ws: ClientConnection | None = None
        self._closed = False

    @property
    def last_seq(self) -> int | None:
        return self.state.last_seq

    async def __anext__(self) -> dict:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._ws is None:
                await self._connect()
                continue
            try:
                raw = await self._ws.recv()
            except ConnectionClosed as exc:
                await self._drop()
                rcvd = exc.rcvd
                wait = self.state.closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "")
                await asyncio.sleep(wait)
                continue
            frame = self.state.take(raw)
            if frame is not None:
                return frame

    async def next(self, timeout: float | None = None) -> dict:
        """The next frame; ``TimeoutError`` if none came within ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    async def _connect(self) -> None:
        try:
            self._ws = await connect(
                self.state.url(self.client.base_url),
                additional_headers=self.client._headers,
                open_timeout=10,
                max_size=None,
            )
        except InvalidStatus as exc:
            response = exc.response
            error = _core.error_from(
                response.status_code, _json(response.body), response.headers.get("retry-after")
            )
            await asyncio.sleep(self.state.refused(error))
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            await asyncio.sleep(self.state.refused(ConnectionFailed(str(exc))))

    async def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()

    async def aclose(self) -> None:
        self._closed = True
        await self._drop()

    async def __aenter__(self) -> AsyncEventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
