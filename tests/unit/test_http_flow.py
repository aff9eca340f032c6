"""Backpressure, body deadlines, the Server header, /metrics access and descriptor headroom.

A ``PausingTransport`` behaves as Twisted's TCP transport does towards its producer (the
channel): it pauses it on every write while more than 64 KiB is unsent, and resumes it
once the client has taken everything. WSGI responses run in real threads here, with a
stand-in reactor whose ``callFromThread`` queue the test runs, so that a WSGI thread can
really block on its connection.
"""

from __future__ import annotations

import queue
import threading
import time

import pytest
from test_server_parts import Leaf, Pending, Recorder, SyncPool, SyncReactor, connect, make_site
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from project import descriptors
from project.backpressure import SEND_STALL_TIMEOUT, WRITE_BUFFER_LIMIT
from project.env import parse_networks
from project.http import BODY_GRACE, BODY_MIN_RATE, ParleySite
from project.server import build_site

BUFFER_SIZE = 64 * 1024  # twisted.internet.abstract.FileDescriptor.bufferSize


class PausingTransport(StringTransport):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.paused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if len(self.value()) > BUFFER_SIZE and self.producer is not None:
            self.paused = True
            self.producer.pauseProducing()

    def writeSequence(self, data) -> None:
        self.write(b"".join(data))

    def read_all(self) -> bytes:
        """The client reads everything: the producer is resumed, as Twisted's doWrite does."""
        data = self.value()
        self.clear()
        if self.paused and self.producer is not None:
            self.paused = False
            self.producer.resumeProducing()
        return data


def connect_pausing(site: ParleySite):
    address = IPv4Address("TCP", "127.0.0.1", 40001)
    channel = site.buildProtocol(address)
    transport = PausingTransport(peerAddress=address)
    channel.makeConnection(transport)
    return channel, transport


def big_site(size: int) -> ParleySite:
    reactor = SyncReactor()
    root = Resource()
    root.putChild(b"big", Leaf(b"x" * size))
    return ParleySite(root, reactor=reactor)


PIPELINED = b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n"


def test_pipelined_requests_wait_while_the_client_reads_nothing():
    size = 300 * 1024
    channel, transport = connect_pausing(big_site(size))
    channel.dataReceived(PIPELINED * 20)
    # One answer sits unsent; Twisted alone wrote all twenty (6 MB) at once.
    assert len(transport.value()) < size + 1024
    received = b""
    for _ in range(40):
        received += transport.read_all()
        if received.count(b"HTTP/1.1 200 ") == 20 and len(received) > 20 * size:
            break
    assert received.count(b"HTTP/1.1 200 ") == 20
    assert received.count(b"\r\n\r\n" + b"x" * size) == 20  # whole, in order
    assert not transport.disconnecting


def test_a_client_that_never_reads_is_cut_after_the_stall_timeout():
    site = big_site(300 * 1024)
    channel, transport = connect_pausing(site)
    channel.dataReceived(PIPELINED * 3)
    site.reactor.advance(SEND_STALL_TIMEOUT - 1)
    assert not transport.disconnecting
    site.reactor.advance(1)
    assert transport.disconnecting  # aborted: the request behind it is never answered
    assert transport.value().count(b"HTTP/1.1 200 ") == 1


def test_a_slow_reader_that_keeps_reading_is_not_cut():
    site = big_site(300 * 1024)
    channel, transport = connect_pausing(site)
    channel.dataReceived(PIPELINED * 3)
    answered = 0
    for _ in range(3):
        site.reactor.advance(SEND_STALL_TIMEOUT - 1)
        answered += transport.read_all().count(b"HTTP/1.1 200 ")
    assert answered == 3
    assert not transport.disconnecting


class ThreadedReactor(SyncReactor):
    """callFromThread queues; the test runs the queue, as the reactor thread would."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: queue.Queue = queue.Queue()

    def callFromThread(self, f, *args, **kwargs):
        self.from_threads.put((f, args, kwargs))

    def run_calls(self, quiet: float = 0.3, limit: float = 10.0) -> None:
        """Run queued calls until none arrives for ``quiet`` seconds."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            try:
                f, args, kwargs = self.from_threads.get(timeout=quiet)
            except queue.Empty:
                return
            f(*args, **kwargs)
        raise AssertionError("the WSGI thread never went quiet")


class ThreadPerJob(SyncPool):
    def __init__(self) -> None:
        super().__init__()
        self.threads: list[threading.Thread] = []

    def callInThread(self, f, *args, **kwargs):
        thread = threading.Thread(target=f, args=args, kwargs=kwargs, daemon=True)
        self.threads.append(thread)
        thread.start()


def wsgi_site(body: bytes):
    reactor, pool = ThreadedReactor(), ThreadPerJob()
    site = make_site(Recorder(body), reactor=reactor, pool=pool)
    return site, reactor, pool


def test_a_big_wsgi_response_blocks_its_thread_not_the_reactor_and_stays_bounded():
    body = bytes(range(256)) * (16 * 1024)  # 4 MiB, one chunk, as Django hands it over
    site, reactor, pool = wsgi_site(body)
    channel, transport = connect_pausing(site)
    channel.dataReceived(b"GET /history/ HTTP/1.1\r\nHost: a\r\n\r\n")
    reactor.run_calls()
    assert len(transport.value()) <= WRITE_BUFFER_LIMIT  # not the 4 MiB
    assert not channel.write_gate.is_open
    (thread,) = pool.threads
    assert thread.is_alive()  # waiting for the client, in its own thread
    received = b""
    while thread.is_alive() or not reactor.from_threads.empty() or transport.value():
        received += transport.read_all()
        reactor.run_calls(quiet=0.05)
    head, _, got = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert got == body
    assert site.in_flight == 0


def test_a_stalled_wsgi_response_is_aborted_and_its_thread_released():
    site, reactor, pool = wsgi_site(b"y" * (4 * 1024 * 1024))
    channel, transport = connect_pausing(site)
    channel.dataReceived(b"GET /history/ HTTP/1.1\r\nHost: a\r\n\r\n")
    reactor.run_calls()
    assert pool.threads[0].is_alive()
    reactor.advance(SEND_STALL_TIMEOUT)
    assert transport.disconnecting
    channel.connectionLost(ConnectionAbortedError())  # what the abort leads to
    pool.threads[0].join(5)
    assert not pool.threads[0].is_alive()
    reactor.run_calls(quiet=0.05)
    assert site.in_flight == 0


def test_small_wsgi_responses_never_wait_on_the_gate():
    site, reactor, pool = wsgi_site(b"z" * (512 * 1024))  # paused, but within the allowance
    channel, transport = connect_pausing(site)
    channel.dataReceived(b"GET /page/ HTTP/1.1\r\nHost: a\r\n\r\n")
    reactor.run_calls()
    pool.threads[0].join(5)
    assert not pool.threads[0].is_alive()
    assert site.in_flight == 0
    assert transport.value().endswith(b"z" * 1000)


# --- request body deadline ------------------------------------------------------------


def pending_site():
    reactor = SyncReactor()
    pending = Pending()
    root = Resource()
    root.putChild(b"pending", pending)
    return ParleySite(root, reactor=reactor), reactor, pending


def test_a_body_trickling_one_byte_every_40_seconds_is_cut_with_408():
    site, reactor, pending = pending_site()
    channel, transport = connect(site)
    channel.dataReceived(b"POST /pending HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
    channel.dataReceived(b"a")
    reactor.advance(BODY_GRACE - 1)
    assert transport.value() == b"" and not transport.disconnecting
    reactor.pump([1, 1])  # the next byte would come at 40 s
    assert transport.value().startswith(b"HTTP/1.1 408 ")
    assert b"Connection: close" in transport.value()
    assert transport.disconnecting
    assert pending.requests == []


def test_a_chunked_body_that_stops_is_cut():
    site, reactor, _pending = pending_site()
    channel, transport = connect(site)
    channel.dataReceived(
        b"POST /pending HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    channel.dataReceived(b"400\r\n" + b"c" * 1024 + b"\r\n")  # one second's worth
    reactor.pump([1] * int(BODY_GRACE))  # 1 KiB buys one second past the grace
    assert transport.value() == b""
    reactor.advance(1)
    assert transport.value().startswith(b"HTTP/1.1 408 ")


def test_a_body_at_the_minimum_rate_is_never_cut():
    site, reactor, pending = pending_site()
    channel, transport = connect(site)
    seconds = 300
    size = BODY_MIN_RATE * seconds
    head = f"POST /pending HTTP/1.1\r\nHost: a\r\nContent-Length: {size}\r\n\r\n"
    channel.dataReceived(head.encode())
    for _ in range(seconds):
        channel.dataReceived(b"u" * BODY_MIN_RATE)
        reactor.advance(1)
    assert transport.value() == b""
    assert len(pending.requests) == 1
    reactor.advance(BODY_GRACE * 10)  # the body is complete: no deadline any more
    assert not transport.disconnecting


# --- Server header and /metrics ----------------------------------------------------------


def test_the_server_header_names_no_version():
    channel, transport = connect(big_site(10))
    channel.dataReceived(PIPELINED)
    head = transport.value().partition(b"\r\n\r\n")[0]
    assert b"\r\nServer: Parley\r\n" in head
    assert b"Twisted" not in head


@pytest.fixture
def metrics_site(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path
    settings.TRUSTED_PROXIES = ()
    return build_site(reactor=SyncReactor(), wsgi_pool=SyncPool())


def metrics_status(site, peer: str, headers: bytes = b"") -> int:
    channel, transport = connect(site, host=peer)
    channel.dataReceived(b"GET /metrics HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n")
    return int(transport.value()[9:12])


def test_metrics_answer_loopback_only_by_default(metrics_site, settings):
    del settings.METRICS_ALLOWED  # a host project without the setting gets the default
    assert metrics_status(metrics_site, "127.0.0.1") == 200
    assert metrics_status(metrics_site, "::1") == 200
    assert metrics_status(metrics_site, "::ffff:127.0.0.1") == 200
    assert metrics_status(metrics_site, "10.1.2.3") == 404
    assert metrics_status(metrics_site, "2001:db8::1") == 404


def test_metrics_allowed_setting(metrics_site, settings):
    settings.METRICS_ALLOWED = parse_networks("10.0.0.0/8", "METRICS_ALLOWED")
    assert metrics_status(metrics_site, "10.1.2.3") == 200
    assert metrics_status(metrics_site, "127.0.0.1") == 404


def test_behind_a_trusted_proxy_metrics_judge_the_forwarded_client(metrics_site, settings):
    settings.METRICS_ALLOWED = parse_networks("127.0.0.0/8", "METRICS_ALLOWED")
    settings.TRUSTED_PROXIES = parse_networks("127.0.0.1")
    assert metrics_status(metrics_site, "127.0.0.1", b"X-Forwarded-For: 203.0.113.9\r\n") == 404
    assert metrics_status(metrics_site, "127.0.0.1") == 200


# --- file descriptor headroom -------------------------------------------------------------


@pytest.fixture
def limit(monkeypatch):
    monkeypatch.setattr(descriptors.resource, "getrlimit", lambda _which: (1000, 4096))
    return 1000


def test_the_budget_keeps_a_reserve_and_counts_again_when_descriptors_close(limit):
    clock = SyncReactor()
    threshold = limit - descriptors.reserve_for(limit)
    open_now = [threshold - limit // 4]  # near enough to be counted every second
    budget = descriptors.DescriptorBudget(clock, count=lambda: open_now[0])
    assert budget.can_accept()
    open_now[0] = threshold
    assert budget.can_accept()  # not counted again within the sample interval
    clock.advance(descriptors.SAMPLE_INTERVAL)
    assert not budget.can_accept()
    open_now[0] = threshold - 10
    assert not budget.can_accept()  # a refusal counts again, but not at once
    clock.advance(descriptors.RECHECK_INTERVAL)
    assert budget.can_accept()


def test_far_from_the_limit_the_count_is_rarer_and_accepts_are_added(limit):
    clock = SyncReactor()
    counts = []
    budget = descriptors.DescriptorBudget(clock, count=lambda: counts.append(1) or 100)
    threshold = limit - descriptors.reserve_for(limit)
    assert budget.can_accept() and len(counts) == 1
    clock.advance(descriptors.SAMPLE_INTERVAL)
    assert budget.can_accept() and len(counts) == 1  # far: not counted again yet
    clock.advance(descriptors.FAR_INTERVAL)
    assert budget.can_accept() and len(counts) == 2
    # Accepted connections bring the estimate near: from then on counted each second.
    while budget._estimate < threshold - limit // 4:
        assert budget.can_accept()
    assert len(counts) == 2
    clock.advance(descriptors.SAMPLE_INTERVAL)
    assert budget.can_accept() and len(counts) == 3


def test_connections_near_the_limit_get_a_503_and_are_closed(limit, monkeypatch):
    site = big_site(10)
    monkeypatch.setattr(site.descriptors, "count", lambda: limit)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert transport.value().startswith(b"HTTP/1.1 503 ")
    assert b"Connection: close" in transport.value()
    protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # read and dropped
    site.reactor.advance(descriptors.LINGER)
    assert transport.disconnecting


def test_the_real_count_sees_this_process():
    assert descriptors.open_descriptors() >= 3
