"""A real HTTP receiver of webhook deliveries, for integration and scale tests.

It listens on 127.0.0.1 (a thread per request) and answers each POST as ``behave(n,
delivery)`` says (the n-th request overall; the parsed delivery): a plain status, a
reply body, a hang past the sender's deadline, a 100 MB answer, a redirect. Every
request is recorded with its headers, body, arrival and end times and whether its
signature was valid, so a test can check order, coverage, signatures and overlap.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from chat.webhooks import signing


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    hang: float = 0.0  # seconds to wait before answering (the sender's deadline cuts it)
    huge: int = 0  # bytes of answer to stream (with that Content-Length) instead of body
    location: str | None = None
    delay: float = 0.0  # seconds to take before a normal answer


@dataclass
class Delivery:
    index: int
    headers: dict[str, str]
    raw: bytes
    started: float
    ended: float = 0.0
    signed: bool = False
    streamed: int = 0  # bytes of a huge answer written before the sender cut it
    cut: bool = False
    data: dict = field(default_factory=dict)

    @property
    def event(self) -> dict:
        return self.data.get("event", {})

    @property
    def seq(self) -> int:
        return self.event.get("seq", -1)


class Receiver:
    def __init__(self, secret: str, behave=None) -> None:
        self.secret = secret
        self.behave = behave or (lambda n, delivery: Answer())
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                receiver._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        delivery = Delivery(0, headers, raw, started)
        delivery.signed = signing.verify(self.secret, raw, headers.get("x-parley-signature"))
        with contextlib.suppress(ValueError):
            delivery.data = json.loads(raw)
        with self.lock:
            delivery.index = len(self.deliveries)
            self.deliveries.append(delivery)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            self._answer(handler, delivery, self.behave(delivery.index, delivery))
        except (BrokenPipeError, ConnectionResetError):
            delivery.cut = True
        finally:
            delivery.ended = time.monotonic()
            with self.lock:
                self.in_flight -= 1

    def _answer(self, handler, delivery: Delivery, answer: Answer) -> None:
        if answer.hang:
            time.sleep(answer.hang)
        if answer.delay:
            time.sleep(answer.delay)
        handler.send_response(answer.status)
        if answer.location:
            handler.send_header("Location", answer.location)
        size = answer.huge or len(answer.body)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(size))
        handler.end_headers()
        if not answer.huge:
            handler.wfile.write(answer.body)
            return
        chunk = b"x" * 65536
        while delivery.streamed < answer.huge:
            handler.wfile.write(chunk)
            delivery.streamed += len(chunk)
        handler.wfile.flush()

    # -- what a test checks ----------------------------------------------------------

    def seqs(self, room: str | None = None, ok_only: bool = False) -> list[int]:
        with self.lock:
            return [d.seq for d in self.deliveries if room is None or d.event.get("room") == room]

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(f"{what}: not after {timeout}s; got {self.seqs()}")
