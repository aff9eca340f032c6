"""A log handler for the access log: one write per batch of lines, not one per request.

logging.StreamHandler writes and flushes every record, a system call per request that
measured as a fifth of the CPU of a static-file request. This handler keeps formatted
lines and writes them together when ``MAX_LINES`` are waiting or when ``flush()`` is
called, which the server does every ``FLUSH_INTERVAL`` seconds and at shutdown, so a
line is never more than that late.
"""

from __future__ import annotations

import logging
import sys
import time

from twisted.web import http

MAX_LINES = 256
FLUSH_INTERVAL = 0.5


class BufferedStreamHandler(logging.StreamHandler):
    def __init__(self, stream=None) -> None:
        super().__init__(stream or sys.stderr)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        if len(self.lines) >= MAX_LINES:
            self.flush()

    def flush(self) -> None:
        self.acquire()
        try:
            if self.lines:
                lines, self.lines = self.lines, []
                self.stream.write("".join(lines))
            super().flush()
        finally:
            self.release()


def flush_buffered(logger_name: str = "parley.access") -> None:
    """Write out what the logger's buffered handlers hold."""
    for handler in logging.getLogger(logger_name).handlers:
        if isinstance(handler, BufferedStreamHandler):
            handler.flush()


def log_access(logger: logging.Logger, message: str, *args: object) -> None:
    """``logger.info(message, *args)`` without the caller lookup, for the access log.

    ``Logger.info`` walks the stack to record the caller's file and line, which the
    access log's format never prints; that and its other per-call work measured as a
    tenth of a static-file request's CPU. Levels, filters, handlers and propagation are
    the logger's own (``Logger.handle``), so configuring the logger works as before.
    """
    if logger.isEnabledFor(logging.INFO):
        logger.handle(logger.makeRecord(logger.name, logging.INFO, "", 0, message, args, None))


_log_date: tuple[int, str] = (0, "")


def log_date() -> str:
    """The Common Log Format date of now, formatted once per second, not per request."""
    global _log_date
    now = int(time.time())
    if _log_date[0] != now:
        _log_date = (now, http.datetimeToLogString(now))
    return _log_date[1]
