"""Light load clients: raw WebSocket, SSE and long-poll receivers spread over processes.

Two cores are all there is, and the server under test needs one: the receivers must cost
far less per message than the server does. So they are not built on a WebSocket library:

- each receiver is an ``asyncio.Protocol`` (on uvloop when the venv has it) that writes
  the HTTP upgrade itself, then walks frame headers only to find frame boundaries and
  answer pings; the payloads are never JSON-decoded;
- every message the sender sends has the body ``#<counter>:<send time in ns>#``, found in
  each read chunk with one compiled regex (C speed) whatever the server wraps around it
  (Parley's event, the peer's ``{"message": ...}``, an SSE ``data:`` line, a long-poll
  answer), which gives loss, duplicates, order and latency per receiver;
- the client frames of the sender are masked with an all-zero key, so masking is a no-op
  (a server cannot tell; browsers use random keys, which only costs the client).

``ReceiverPool`` starts worker processes (spawn), each holding a share of the receivers;
they report how many distinct messages they have so far in a shared array, which the
sender reads for end-to-end flow control (``window``) and to know when all arrived.
"""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import os
import re
import socket
import struct
import time
from collections import Counter
from multiprocessing import get_context

from common import cpu_seconds, pin_client, raise_fd_limit

# Parley's events carry the text twice, as ``body`` and as its rendering ``html`` (the
# same characters for a plain line); a marker counts once, where it is not the html.
MARK = re.compile(rb'(?<!"html":")#(\d+):(\d+)#')
LAST_SEQ = re.compile(rb'"last_seq":(\d+)')
CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")
ACK = b'{"type":"ack"'
ERROR = b'{"type":"error"'
ZERO_MASK = b"\x00\x00\x00\x00"
LINGER_RST = struct.pack("ii", 1, 0)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux 4.2+


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def upgrade_request(host: str, port: int, path: str, cookie: str | None = None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"Origin: http://{host}:{port}",  # the peer's AllowedHostsOriginValidator needs one
    ]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def get_request(host: str, port: int, path: str, cookie: str | None = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Accept: */*"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client frame masked with the all-zero key (the payload goes out unchanged)."""
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0xFE, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, length)
    return head + ZERO_MASK + payload


def body_marker(counter: int) -> str:
    return f"#{counter}:{time.time_ns()}#"


# --------------------------------------------------------------------------- receivers


class Receiver(asyncio.Protocol):
    """Base: connect, read the HTTP response head, then count markers in what follows."""

    expect_status = b" 101 "

    def __init__(self, worker: Worker, request: bytes) -> None:
        self.worker = worker
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future = worker.loop.create_future()
        self.head = b""
        self.open = False
        self.closed = False
        self.seen: bytearray | None = None
        self.last = -1
        self.unique = 0
        self.dup = 0
        self.ooo = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed before the handshake: {exc}"))
        elif not self.worker.closing:
            self.worker.dropped += 1

    def data_received(self, data: bytes) -> None:
        if self.open:
            self.feed(data)
            return
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > 65536:
                self.fail(b"response head too long")
            return
        status = self.head[: self.head.find(b"\r\n")]
        if self.expect_status not in status + b" ":
            self.fail(status)
            return
        rest, self.head = self.head[end + 4 :], b""
        self.open = True
        if not self.ready.done():
            self.ready.set_result(True)
        if rest:
            self.feed(rest)

    def fail(self, why: bytes) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why.decode("latin-1")[:80]))
        self.transport.close()

    def feed(self, data: bytes) -> None:
        raise NotImplementedError

    def count(self, found: list) -> None:
        """Markers (counter, sent ns) found in one read: loss, dups, order, latency."""
        now = time.time_ns()
        worker = self.worker
        seen = self.seen
        if seen is None:
            seen = self.seen = bytearray(worker.capacity)
        last = self.last
        new = 0
        latency = worker.latency.append
        for raw_counter, raw_sent in found:
            counter = int(raw_counter)
            if counter >= len(seen):
                seen.extend(bytes(counter + 1024 - len(seen)))
            if seen[counter]:
                self.dup += 1
                continue
            seen[counter] = 1
            new += 1
            if counter < last:
                self.ooo += 1
            else:
                last = counter
            latency((now - int(raw_sent)) // 1000)
        self.last = last
        self.unique += new
        worker.progress[worker.slot] += new
        worker.last_ns = now

    def abort(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:  # RST instead of FIN: no TIME_WAIT left on the client's ports
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
        transport.abort()


class WSReceiver(Receiver):
    def __init__(self, worker: Worker, request: bytes) -> None:
        super().__init__(worker, request)
        self.buf = b""

    def feed(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        size = len(buf)
        pos = 0
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if size - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            else:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            if opcode >= 8:
                self.control(opcode, buf[start:end])
            pos = end
        if pos:
            self.frames(buf, pos)
        self.buf = buf[pos:] if pos < size else b""

    def frames(self, buf: bytes, end: int) -> None:
        """The whole frames in ``buf[:end]`` (a subclass may read more than the markers)."""
        found = MARK.findall(buf, 0, end)
        if found:
            self.count(found)

    def control(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # ping -> pong with the same payload
            self.transport.write(client_frame(payload, 0xA))
        elif opcode == 0x8:  # close: note the code, answer, hang up
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.worker.close_codes[code] += 1
            with contextlib.suppress(Exception):
                self.transport.write(client_frame(payload[:2], 0x8))
            self.transport.close()


class SSEReceiver(Receiver):
    expect_status = b" 200 "

    def __init__(self, worker: Worker, request: bytes) -> None:
        super().__init__(worker, request)
        self.tail = b""

    def feed(self, data: bytes) -> None:
        buf = self.tail + data if self.tail else data
        cut = buf.rfind(b"\n\n")  # every SSE event ends with a blank line
        if cut < 0:
            self.tail = buf[-65536:]
            return
        found = MARK.findall(buf, 0, cut)
        if found:
            self.count(found)
        self.tail = buf[cut:]


class PollReceiver(Receiver):
    """GET ?timeout=0 first (learns last_seq), then GET ?since=<last_seq> in a loop."""

    expect_status = b" 200 "

    def __init__(self, worker: Worker, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        super().__init__(worker, get_request(host, port, f"{path}?timeout=0"))
        self.buf = b""
        self.body_length: int | None = None
        self.since: int | None = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.body_length is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end]
                status = head[: head.find(b"\r\n")]
                match = CONTENT_LENGTH.search(head)
                if self.expect_status not in status + b" " or match is None:
                    self.fail(status)
                    return
                self.body_length = int(match.group(1))
                self.buf = self.buf[end + 4 :]
            if len(self.buf) < self.body_length:
                return
            body, self.buf = self.buf[: self.body_length], self.buf[self.body_length :]
            self.body_length = None
            self.answered(body)

    def answered(self, body: bytes) -> None:
        if self.open:
            found = MARK.findall(body)
            if found:
                self.count(found)
        match = LAST_SEQ.search(body)
        if match:
            self.since = int(match.group(1))
        if not self.open:
            self.open = True
            if not self.ready.done():
                self.ready.set_result(True)
        if self.worker.closing or self.closed:
            return
        query = f"?timeout=30&since={self.since}" if self.since is not None else "?timeout=30"
        self.transport.write(get_request(self.host, self.port, self.path + query))


# --------------------------------------------------------------------------- worker


class Worker:
    """One client process: a share of the receivers, commanded through a pipe."""

    def __init__(self, loop, slot: int, progress, capacity: int) -> None:
        self.loop = loop
        self.slot = slot
        self.progress = progress
        self.capacity = capacity
        self.receivers: list[Receiver] = []
        self.latency = array.array("q")
        self.last_ns = 0
        self.dropped = 0
        self.closing = False
        self.close_codes: Counter = Counter()

    async def connect(self, spec: dict) -> dict:
        host, port, path = spec["host"], spec["port"], spec["path"]
        transport = spec["transport"]
        limit = asyncio.Semaphore(spec.get("concurrency", 50))
        timings: list[float] = []
        errors: Counter = Counter()

        def factory() -> Receiver:
            if transport == "ws":
                return WSReceiver(self, upgrade_request(host, port, path, spec.get("cookie")))
            if transport == "sse":
                return SSEReceiver(self, get_request(host, port, path, spec.get("cookie")))
            return PollReceiver(self, host, port, path)

        sources = spec.get("sources") or ()
        counter = iter(range(spec["n"]))

        async def one() -> None:
            async with limit:
                started = time.perf_counter()
                index = next(counter)
                try:
                    if sources:
                        opening = self._connect_from(
                            factory, sources[index % len(sources)], host, port
                        )
                    else:
                        opening = self.loop.create_connection(factory, host, port)
                    _t, proto = await asyncio.wait_for(opening, 30)
                    await asyncio.wait_for(proto.ready, 30)
                except (TimeoutError, OSError) as error:
                    errors[type(error).__name__ + ": " + str(error)[:60]] += 1
                    return
                timings.append(time.perf_counter() - started)
                self.receivers.append(proto)

        await asyncio.gather(*(one() for _ in range(spec["n"])))
        return {"connected": len(timings), "failed": sum(errors.values()), "handshake": timings,
                "errors": dict(errors)}  # fmt: skip

    async def _connect_from(self, factory, source: str, host: str, port: int):
        """A TCP connection bound to the local address ``source`` (port chosen at connect).

        One client address has only the ephemeral port range (about 28k ports) to any one
        server port; 127.0.0.2, 127.0.0.3 ... are loopback addresses too, each with a range
        of its own. IP_BIND_ADDRESS_NO_PORT defers the port to connect(), which then picks
        it by the whole 4-tuple instead of reserving it at bind().
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
            sock.setblocking(False)
            await self.loop.sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return await self.loop.create_connection(factory, sock=sock)

    def stats(self, expected: int) -> dict:
        alive = sum(1 for r in self.receivers if not r.closed)
        lost = sum(max(expected - r.unique, 0) for r in self.receivers)
        return {
            "receivers": len(self.receivers),
            "alive": alive,
            "unique": sum(r.unique for r in self.receivers),
            "dup": sum(r.dup for r in self.receivers),
            "ooo": sum(r.ooo for r in self.receivers),
            "lost": lost,
            "dropped": self.dropped,
            "close_codes": dict(self.close_codes),
            "last_ns": self.last_ns,
            "latency": self.latency.tobytes(),
        }

    def close_all(self) -> None:
        self.closing = True
        for receiver in self.receivers:
            receiver.abort()
        self.receivers.clear()
        self.latency = array.array("q")
        self.progress[self.slot] = 0


def _worker_main(conn, slot: int, progress, capacity: int) -> None:
    pin_client()
    raise_fd_limit()
    loop = new_loop()
    asyncio.set_event_loop(loop)
    worker = Worker(loop, slot, progress, capacity)

    async def serve() -> None:
        while True:
            # The pipe stays blocking (an event loop's reader would make it non-blocking,
            # and a large answer would then fail half-written): read it in a thread.
            command = await loop.run_in_executor(None, conn.recv)
            kind = command["cmd"]
            if kind == "connect":
                conn.send(await worker.connect(command))
            elif kind == "stats":
                conn.send(worker.stats(command["expected"]))
            elif kind == "close":
                worker.close_all()
                await asyncio.sleep(0.05)
                worker.closing = False
                worker.dropped = 0
                worker.close_codes.clear()
                conn.send({"closed": True})
            elif kind == "exit":
                worker.close_all()
                conn.send({"bye": True})
                return

    try:
        loop.run_until_complete(serve())
    finally:
        loop.close()


class ReceiverPool:
    """``procs`` worker processes holding receivers; all calls block with deadlines."""

    def __init__(self, procs: int = 2, capacity: int = 4096) -> None:
        ctx = get_context("spawn")
        self.progress = ctx.RawArray("q", procs)
        self.conns = []
        self.procs = []
        for slot in range(procs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main, args=(child, slot, self.progress, capacity), daemon=True
            )
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def _ask_all(self, commands: list[dict], timeout: float) -> list[dict]:
        for conn, command in zip(self.conns, commands, strict=True):
            conn.send(command)
        answers = []
        deadline = time.monotonic() + timeout
        for conn in self.conns:
            if not conn.poll(max(deadline - time.monotonic(), 0.01)):
                raise TimeoutError(f"client worker did not answer {commands[0]['cmd']}")
            answers.append(conn.recv())
        return answers

    def connect(
        self,
        n: int,
        transport: str,
        host: str,
        port: int,
        path: str,
        cookie: str | None = None,
        concurrency: int = 50,
        timeout: float = 300.0,
        sources: list[str] | None = None,
    ) -> dict:
        """Open ``n`` receivers over the workers; ``sources``: local addresses to bind the
        connections to, in turn (default: the kernel's choice, 127.0.0.1)."""
        shares = [n // len(self.conns) + (1 if i < n % len(self.conns) else 0)
                  for i in range(len(self.conns))]  # fmt: skip
        commands = [
            {"cmd": "connect", "n": share, "transport": transport, "host": host, "port": port,
             "path": path, "cookie": cookie, "concurrency": max(concurrency // len(shares), 1),
             "sources": list(sources or ())}
            for share in shares
        ]  # fmt: skip
        answers = self._ask_all(commands, timeout)
        errors: Counter = Counter()
        for answer in answers:
            errors.update(answer["errors"])
        return {
            "connected": sum(a["connected"] for a in answers),
            "failed": sum(a["failed"] for a in answers),
            "handshake": sorted(t for a in answers for t in a["handshake"]),
            "errors": dict(errors),
        }

    def cpu(self) -> float:
        """CPU seconds of the client: the workers and this (the sender's) process."""
        return cpu_seconds(os.getpid()) + sum(cpu_seconds(p.pid) for p in self.procs)

    def delivered(self) -> int:
        return sum(self.progress)

    def stats(self, expected: int, timeout: float = 60.0) -> dict:
        answers = self._ask_all([{"cmd": "stats", "expected": expected}] * len(self.conns),
                                timeout)  # fmt: skip
        latency = array.array("q")
        codes: Counter = Counter()
        for answer in answers:
            latency.frombytes(answer.pop("latency"))
            codes.update(answer.pop("close_codes"))
        total = {key: sum(a[key] for a in answers) for key in answers[0] if key != "last_ns"}
        total["last_ns"] = max(a["last_ns"] for a in answers)
        total["close_codes"] = dict(codes)
        total["latency_us"] = latency
        return total

    def close_receivers(self, timeout: float = 60.0) -> None:
        self._ask_all([{"cmd": "close"}] * len(self.conns), timeout)

    def shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self._ask_all([{"cmd": "exit"}] * len(self.conns), 30)
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)

    def __enter__(self) -> ReceiverPool:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


# --------------------------------------------------------------------------- sender


class Sender(asyncio.Protocol):
    """One WebSocket connection that sends marked messages and counts acks and echoes."""

    def __init__(self, loop, request: bytes) -> None:
        self.request = request
        self.ready: asyncio.Future = loop.create_future()
        self.transport = None
        self.head = b""
        self.open = False
        self.buf = b""
        self.acks = 0
        self.errors = 0
        self.echoes = 0
        self.closed = False
        self.error_samples: list[bytes] = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"sender closed: {exc}"))

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.head[: self.head.find(b"\r\n")] + b" ":
                self.ready.set_exception(ConnectionError(self.head[:200].decode("latin-1")))
                self.transport.close()
                return
            data, self.head, self.open = self.head[end + 4 :], b"", True
            self.ready.set_result(True)
        buf = self.buf + data if self.buf else data
        size, pos = len(buf), 0
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = (buf[pos + 2] << 8) | buf[pos + 3], pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            end = start + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            if opcode == 0x9:
                self.transport.write(client_frame(buf[start:end], 0xA))
            pos = end
        if pos:
            self.acks += buf.count(ACK, 0, pos)
            errors = buf.count(ERROR, 0, pos)
            if errors:
                self.errors += errors
                if len(self.error_samples) < 3:
                    at = buf.find(ERROR, 0, pos)
                    self.error_samples.append(buf[at : at + 160])
            self.echoes += len(MARK.findall(buf, 0, pos))
        self.buf = buf[pos:] if pos < size else b""

    def send_text(self, payload: bytes) -> None:
        self.transport.write(client_frame(payload))

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            with contextlib.suppress(Exception):
                self.transport.write(client_frame(b"\x03\xe8", 0x8))
            self.transport.close()


async def open_sender(host: str, port: int, path: str, cookie: str | None = None) -> Sender:
    loop = asyncio.get_running_loop()
    _t, sender = await asyncio.wait_for(
        loop.create_connection(
            lambda: Sender(loop, upgrade_request(host, port, path, cookie)), host, port
        ),
        30,
    )
    await asyncio.wait_for(sender.ready, 30)
    return sender


def percentile(sorted_values, fraction: float):
    if not sorted_values:
        return None
    index = min(round(fraction * (len(sorted_values) - 1)), len(sorted_values) - 1)
    return sorted_values[index]
