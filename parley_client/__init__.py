"""A Python client for Parley's HTTP API and live streams (PROTOCOL.md), for scripts and
bots. Sign in with a token made at ``/accounts/tokens/``::

    from parley_client import Client

    with Client("https://chat.example.com", "prl_...") as parley:
        parley.send("lobby", "Deploy finished")
        for event in parley.events("lobby"):
            print(event["user"], event.get("body"))

``AsyncClient`` is the same for asyncio (``await`` the calls, ``async for`` the events).
Writes are idempotent (a client_id each, resent as it is on ``unavailable``, a lost
connection or ``rate_limited``); events resume after any disconnect with ``since``, each
durable event handed on once, in seq order.
"""

from parley_client.aio import AsyncClient, AsyncEventStream
from parley_client.errors import (
    AccessLost,
    BadRequest,
    ConnectionFailed,
    Forbidden,
    NotFound,
    ParleyError,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from parley_client.sync import Client, EventStream

__all__ = [
    "AccessLost",
    "AsyncClient",
    "AsyncEventStream",
    "BadRequest",
    "Client",
    "ConnectionFailed",
    "EventStream",
    "Forbidden",
    "NotFound",
    "ParleyError",
    "RateLimited",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
]
