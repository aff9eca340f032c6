"""A scripted IRC client for tests against a real server: the ``irc`` library from PyPI
(jaraco's irc.client), its reactor run in a thread, every event recorded, waited on from
the test (plain threads: callable from sync tests and from asyncio ones via to_thread)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

import irc.client

DEFAULT_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class IRCTestClient:
    def __init__(self) -> None:
        self.reactor = irc.client.Reactor()
        self.events: list[irc.client.Event] = []
        self._lock = threading.Lock()
        self.reactor.add_global_handler("all_events", self._record, -10)
        self.connection = self.reactor.server()
        self._stop = False
        self._thread: threading.Thread | None = None

    def _record(self, connection, event) -> None:
        with self._lock:
            self.events.append(event)

    def connect(self, port: int, nick: str, password: str | None = None, sasl: bool = False):
        self.connection.connect(
            "127.0.0.1",
            port,
            nick,
            password=password,
            username=nick,
            sasl_login=nick if sasl else None,
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop:
            self.reactor.process_once(0.05)

    def send(self, line: str) -> None:
        self.connection.send_raw(line)

    def wait(
        self,
        test: Callable[[irc.client.Event], bool],
        what: str,
        start: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> irc.client.Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                for event in self.events[start:]:
                    if test(event):
                        return event
            time.sleep(0.02)
        with self._lock:
            seen = [(e.type, e.target, e.arguments) for e in self.events[-15:]]
        raise AssertionError(f"IRC: no {what} within {timeout}s; last events: {seen}")

    def wait_type(self, kind: str, start: int = 0, **kwargs) -> irc.client.Event:
        return self.wait(lambda e: e.type == kind, kind, start, **kwargs)

    def mark(self) -> int:
        with self._lock:
            return len(self.events)

    def of_type(self, kind: str) -> list[irc.client.Event]:
        with self._lock:
            return [e for e in self.events if e.type == kind]

    def close(self) -> None:
        self._stop = True
        if self._thread is not None:
            self._thread.join(2)
        with contextlib.suppress(Exception):
            self.connection.close()


def tags(event) -> dict[str, str | None]:
    return {tag["key"]: tag["value"] for tag in event.tags or ()}
