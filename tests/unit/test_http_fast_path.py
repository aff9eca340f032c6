"""The per-request work the HTTP hot path does once instead: log dates, log records,
status counters, a static file's encoded headers."""

from __future__ import annotations

import logging

import pytest
from twisted.web import http

from project import http as parley_http
from project import logs, metrics
from project.static_responses import HeaderList


def test_log_date_is_formatted_once_per_second(monkeypatch):
    calls = []
    real = http.datetimeToLogString

    def counting(when=None):
        calls.append(when)
        return real(when)

    monkeypatch.setattr(logs.http, "datetimeToLogString", counting)
    monkeypatch.setattr(logs, "_log_date", (0, ""))
    monkeypatch.setattr(logs.time, "time", lambda: 1_700_000_000.25)
    first = logs.log_date()
    monkeypatch.setattr(logs.time, "time", lambda: 1_700_000_000.9)
    assert logs.log_date() == first == real(1_700_000_000)
    assert calls == [1_700_000_000]
    monkeypatch.setattr(logs.time, "time", lambda: 1_700_000_001.0)
    assert logs.log_date() == real(1_700_000_001)
    assert calls == [1_700_000_000, 1_700_000_001]


@pytest.fixture
def access_logger():
    logger = logging.getLogger("parley.test_fast_path")
    saved = (logger.level, logger.propagate, list(logger.handlers), list(logger.filters))
    yield logger
    logger.level, logger.propagate = saved[0], saved[1]
    logger.handlers[:] = saved[2]
    logger.filters[:] = saved[3]


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_log_access_keeps_the_loggers_level_filters_and_handlers(access_logger):
    handler = Collect()
    access_logger.handlers[:] = [handler]
    access_logger.propagate = False
    access_logger.setLevel(logging.INFO)
    logs.log_access(access_logger, "%s %d", "GET", 200)
    assert [(r.levelno, r.name, r.getMessage()) for r in handler.records] == [
        (logging.INFO, "parley.test_fast_path", "GET 200")
    ]
    access_logger.addFilter(lambda record: "secret" not in record.getMessage())
    logs.log_access(access_logger, "%s", "secret")
    access_logger.setLevel(logging.WARNING)
    logs.log_access(access_logger, "%s", "quiet")
    assert len(handler.records) == 1


def test_log_access_lines_reach_the_buffered_handler_formatted(access_logger):
    import io

    stream = io.StringIO()
    handler = logs.BufferedStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    access_logger.handlers[:] = [handler]
    access_logger.propagate = False
    access_logger.setLevel(logging.INFO)
    logs.log_access(access_logger, '%s "%s"', "127.0.0.1", "GET / HTTP/1.1")
    assert stream.getvalue() == ""  # buffered until a flush
    handler.flush()
    assert stream.getvalue() == 'INFO parley.test_fast_path: 127.0.0.1 "GET / HTTP/1.1"\n'


def test_status_counter_children_are_reused_and_count():
    from prometheus_client import REGISTRY

    def value() -> float:
        sample = REGISTRY.get_sample_value("parley_http_requests_total", {"status": "299"})
        return sample or 0.0

    before = value()
    child = parley_http.requests_with_status(299)
    assert parley_http.requests_with_status(299) is child
    assert child is metrics.REQUESTS.labels("299")
    child.inc()
    parley_http.requests_with_status(299).inc()
    assert value() == before + 2


def test_header_list_is_the_pairs_with_their_bytes():
    items = [("Content-Type", 'text/css; charset="utf-8"'), ("ETag", '"abc-gz"')]
    headers = HeaderList(items)
    assert list(headers) == items
    assert dict(headers)["ETag"] == '"abc-gz"'
    assert headers.raw == [
        (b"Content-Type", b'text/css; charset="utf-8"'),
        (b"ETag", b'"abc-gz"'),
    ]


def test_django_jobs_ended_in_many_threads_are_counted_exactly():
    import threading

    from project.server import DjangoFallback

    django = DjangoFallback(reactor=None, pool=None, application=None)
    django._started = 8 * 2000

    def end_jobs() -> None:
        for _ in range(2000):
            django._job_done_in_thread()

    threads = [threading.Thread(target=end_jobs) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert django.in_flight == 0
