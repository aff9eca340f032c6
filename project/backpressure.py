"""Backpressure for responses: a client that never reads holds about 1 MiB, not more.

Twisted's transport tells its producer, the HTTPChannel, to pause when more than its
``bufferSize`` (64 KiB) waits to be sent, and to resume once all of it has gone to the
kernel. That public signal is all this needs:

* The channel does not start the next pipelined request while it is paused. Twisted's
  HTTPChannel parses and answers every request already buffered, paused or not, so
  twenty pipelined history requests from a client that never read were twenty
  responses in memory at once.
* A WSGI response is written in slices of ``WSGI_SLICE``. While the channel is paused it
  counts the bytes written; once they pass ``WSGI_ALLOWANCE`` its ``WriteGate`` closes
  and the WSGI thread waits for the resume before it writes the next slice. The worker
  thread blocks, as it would on a socket in a synchronous server; the reactor never
  does. Responses of less than about a megabyte never make their thread wait.
* A connection whose client leaves it paused for ``SEND_STALL_TIMEOUT`` while a WSGI
  thread or a pipelined request waits on it is aborted (see ParleyChannel), so such a
  client cannot keep a thread, or a descriptor, for good.

This module is the WSGI-thread side: the gate and the iterator that waits on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

# What one connection may have written but not sent: the transport's own 64 KiB, the
# allowance written while it is paused, and one slice more.
WRITE_BUFFER_LIMIT = 1024 * 1024
WSGI_SLICE = 64 * 1024
TRANSPORT_BUFFER = 64 * 1024  # twisted.internet.abstract.FileDescriptor.bufferSize
WSGI_ALLOWANCE = WRITE_BUFFER_LIMIT - TRANSPORT_BUFFER - WSGI_SLICE
# A client that has not taken the pending bytes of its connection in this long while a
# response waits on it is cut. Slow links drain a megabyte far sooner; a reader that
# stopped reading never does.
SEND_STALL_TIMEOUT = 120.0


class ConnectionStalled(Exception):
    """A WSGI thread waited on its connection for longer than any stall may last."""


class WriteGate:
    """Whether WSGI threads may write the next slice of a response to one connection.

    Opened and closed by the channel in the reactor thread; waited on in WSGI threads.
    ``shut()`` (the connection is gone) opens it for good, and ``wait()`` then says so.
    """

    def __init__(self, on_wait: Callable[[], None] | None = None) -> None:
        # None: open, and never closed yet. An Event (a Condition, its waiters' deque, a
        # lock) is about 1.3 KiB held for the connection's whole life, a WebSocket's
        # included, and almost no connection is ever paused: it is made at the first
        # close(), in the reactor thread. A WSGI thread that read None just before writes
        # one more slice, as it would have with an Event it found set just before.
        self._open: threading.Event | None = None
        self._on_wait = on_wait
        self.gone = False

    @property
    def is_open(self) -> bool:
        event = self._open
        return event is None or event.is_set()

    def open(self) -> None:
        if self._open is not None:
            self._open.set()

    def close(self) -> None:
        if self.gone:
            return
        if self._open is None:
            self._open = threading.Event()  # made cleared
        else:
            self._open.clear()

    def shut(self) -> None:
        self.gone = True
        if self._open is not None:
            self._open.set()

    def wait(self, call_from_thread: Callable[..., None]) -> bool:
        """Block this WSGI thread until the connection takes more; False once it is gone.

        ``call_from_thread`` is the reactor's: the channel learns that a thread waits (so
        that a stall is timed) in the reactor thread, where it keeps its state.
        """
        event = self._open  # read once: the reactor thread may make it meanwhile
        if event is not None and not event.is_set():
            if self._on_wait is not None:
                call_from_thread(self._on_wait)
            # The channel aborts a stalled connection, which shuts the gate; the timeout
            # only guards against a channel that went away without saying so. Raising
            # makes WSGIResource cut the response instead of finishing it short.
            if not event.wait(SEND_STALL_TIMEOUT * 2):
                raise ConnectionStalled("the connection took nothing for too long")
        return not self.gone


def slices(chunk: bytes, size: int = WSGI_SLICE) -> Iterator[bytes]:
    if len(chunk) <= size:
        yield chunk
        return
    view = memoryview(chunk)
    for start in range(0, len(chunk), size):
        yield bytes(view[start : start + size])


def guard_wsgi_close(
    application: Callable,
    on_done: Callable[[], None] | None = None,
    gate: WriteGate | None = None,
    call_from_thread: Callable[..., None] | None = None,
) -> Callable:
    """Make sure the WSGI response's ``close()`` runs even when iterating it raises.

    Twisted's WSGIResource calls ``close()`` only after a clean iteration, but Django
    sends ``request_finished`` (which returns the thread's database connection) from
    ``close()``: without this, a streaming response that fails mid-way leaks it.
    ``on_done()`` runs in the WSGI thread once the job is over, whatever happened.
    With a ``gate``, the body is handed to Twisted in slices, each once the gate is open.
    """

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        try:
            result = application(environ, start_response)
        except BaseException:
            if on_done is not None:
                on_done()
            raise
        return _ClosingIterator(result, on_done, gate, call_from_thread)

    return guarded


class _ClosingIterator:
    def __init__(
        self,
        result: Iterable[bytes],
        on_done: Callable[[], None] | None,
        gate: WriteGate | None = None,
        call_from_thread: Callable[..., None] | None = None,
    ) -> None:
        self._result = result
        self._on_done = on_done
        self._gate = gate
        self._call_from_thread = call_from_thread
        self._closed = False

    def __iter__(self):
        try:
            if self._gate is None:
                yield from self._result
                return
            for chunk in self._result:
                for piece in slices(chunk):
                    if not self._gate.wait(self._call_from_thread):
                        return  # the client is gone: the rest would be thrown away
                    yield piece
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            if self._on_done is not None:
                self._on_done()
