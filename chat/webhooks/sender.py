"""One webhook delivery: a POST with Twisted's Agent, from the reactor, never blocking it.

Every step is bounded, because the receiver is someone else's server:

- the name is resolved in a thread (``targets.resolve``), every address checked, and the
  connection made to the checked address (a pinned endpoint), so DNS cannot answer
  differently between the check and the connection; the URL's host is the Host header
  and the TLS server name;
- connecting, sending and the whole answer share one deadline (``timeout``, 10 s by
  default): a receiver that never answers, or trickles its answer, is cut at it;
- at most ``max_body`` bytes of the answer are kept (64 KiB); past that the connection is
  dropped, so a 10 MB answer is neither read nor held;
- redirects are not followed (Agent never does; RedirectAgent is not used): a 3xx is a
  failed delivery like any other answer that is not a 2xx.
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO

from twisted.internet import defer, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from chat.webhooks import targets

DEFAULT_TIMEOUT = 10.0
MAX_BODY = 64 * 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one POST: the status (None: no answer at all), at most ``MAX_BODY``
    bytes of the answer and whether that is all of it, or why it failed."""

    status: int | None = None
    body: bytes = b""
    complete: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        if self.error is not None:
            return self.error
        if self.status is not None and 300 <= self.status < 400:
            return f"answered {self.status} (a redirect; redirects are not followed)"
        return f"answered {self.status}"


@implementer(IAgentEndpointFactory)
class _PinnedEndpoint:
    """Connects to the address that was checked, whatever the URI's host says."""

    def __init__(self, reactor, target: targets.Target, address: str, timeout: float) -> None:
        self.reactor, self.target, self.address, self.timeout = reactor, target, address, timeout

    def endpointForURI(self, uri):
        kind = TCP6ClientEndpoint if ":" in self.address else TCP4ClientEndpoint
        endpoint = kind(self.reactor, self.address, self.target.port, timeout=self.timeout)
        if self.target.scheme == "https":
            endpoint = wrapClientTLS(optionsForClientTLS(self.target.host), endpoint)
        return endpoint


class _BoundedBody(Protocol):
    """Collects at most ``limit`` bytes of an answer; past that drops the connection."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.done: defer.Deferred[tuple[bytes, bool]] = defer.Deferred(self._cancel)

    def _cancel(self, _d) -> None:
        if self.transport is not None:
            self.transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        room = self.limit - len(self.data)
        self.data += data[:room]
        if len(data) > room:
            self.transport.stopProducing()  # the rest is never read
            self.done.callback((bytes(self.data), False))

    def connectionLost(self, reason) -> None:
        if not self.done.called:
            complete = reason.check(ResponseDone, PotentialDataLoss) is not None
            self.done.callback((bytes(self.data), complete))


def _uri(target: targets.Target) -> bytes:
    host = f"[{target.host}]" if ":" in target.host else target.host.encode("idna").decode()
    default = targets.SCHEMES[target.scheme]
    port = "" if target.port == default else f":{target.port}"
    return f"{target.scheme}://{host}{port}{target.path}".encode("ascii", "replace")


async def _post(reactor, url, headers, payload, allow_private, timeout, max_body) -> Outcome:
    target = targets.parse_url(url)
    addresses = await threads.deferToThread(targets.resolve, target.host, target.port)
    address = targets.check_addresses(addresses, allow_private)
    agent = Agent.usingEndpointFactory(
        reactor,
        _PinnedEndpoint(reactor, target, address, timeout),
        HTTPConnectionPool(reactor, persistent=False),
    )
    response = await agent.request(
        b"POST",
        _uri(target),
        Headers({name: [value] for name, value in headers.items()}),
        FileBodyProducer(BytesIO(payload)),
    )
    reader = _BoundedBody(max_body)
    response.deliverBody(reader)
    body, complete = await reader.done
    return Outcome(status=response.code, body=body, complete=complete)


def post(
    reactor,
    url: str,
    headers: dict[str, str],
    payload: bytes,
    *,
    allow_private: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
    max_body: int = MAX_BODY,
) -> defer.Deferred[Outcome]:
    """POST ``payload`` to ``url``; always fires with an Outcome (it errbacks only with
    CancelledError, when the caller cancels it)."""
    inner = defer.Deferred.fromCoroutine(
        _post(reactor, url, headers, payload, allow_private, timeout, max_body)
    )
    # Not addTimeout, and a Deferred of our own for the caller: the Agent turns any
    # cancellation into ResponseNeverReceived, which would read as a failed delivery.
    # The deadline's cancellation is a failed delivery; the caller's (a worker that
    # stops) is a CancelledError, as it should be.
    state = {"expired": False, "cancelled": False}

    def cancel(_outer) -> None:
        state["cancelled"] = True
        inner.cancel()

    outer: defer.Deferred[Outcome] = defer.Deferred(cancel)

    def expire() -> None:
        state["expired"] = True
        inner.cancel()

    timer = reactor.callLater(timeout, expire)

    def finish(result) -> None:
        if timer.active():
            timer.cancel()
        if state["cancelled"]:
            return  # outer fails with CancelledError by itself
        if isinstance(result, Failure):
            result = _failed(result, timeout, state["expired"])
        outer.callback(result)

    inner.addBoth(finish)
    return outer


def _failed(failure: Failure, timeout: float, expired: bool) -> Outcome:
    if expired:
        return Outcome(error=f"no complete answer within {timeout:g} s")
    if failure.check(targets.TargetRefused):
        return Outcome(error=f"refused: {failure.value}")
    return Outcome(error=f"{type(failure.value).__name__}: {failure.getErrorMessage()}"[:500])
