"""Prometheus metrics of the HTTP server (the chat's own live in chat/live/metrics.py)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from chat.live.compat import thread_pool_backlog

REQUESTS = Counter(
    "parley_http_requests_total", "HTTP requests answered, by status code.", ["status"]
)
REQUEST_LATENCY = Histogram(
    "parley_http_request_seconds",
    "Time from a request's headers to its last byte written.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
REFUSED_BODIES = Counter(
    "parley_http_refused_bodies_total", "Requests refused with 413 before their body was read."
)
REFUSED_CONNECTIONS = Counter(
    "parley_http_refused_connections_total",
    "Connections answered 503 because the process was near its file descriptor limit.",
)


class ThreadPoolCollector(Collector):
    """Busy and queued work of a Twisted ThreadPool, read at scrape time."""

    def __init__(self, name: str, pool) -> None:
        self.name = name
        self.pool = pool

    def collect(self):
        busy = GaugeMetricFamily(
            f"parley_{self.name}_threads_busy", f"{self.name} threads running a job."
        )
        busy.add_metric([], len(self.pool.working))
        queued = GaugeMetricFamily(
            f"parley_{self.name}_queued", f"{self.name} jobs waiting for a free thread."
        )
        queued.add_metric([], thread_pool_backlog(self.pool))
        size = GaugeMetricFamily(f"parley_{self.name}_threads", f"{self.name} pool size.")
        size.add_metric([], self.pool.max)
        return [busy, queued, size]


# The collector registered for each pool name (REGISTRY has no public lookup).
_POOL_COLLECTORS: dict[str, ThreadPoolCollector] = {}


def register_pool(name: str, pool) -> None:
    """Expose a thread pool's load; replaces an earlier pool of the same name (tests)."""
    earlier = _POOL_COLLECTORS.pop(name, None)
    if earlier is not None:
        REGISTRY.unregister(earlier)
    collector = ThreadPoolCollector(name, pool)
    # Registered before it is remembered: if registering fails, nothing stale is kept.
    REGISTRY.register(collector)
    _POOL_COLLECTORS[name] = collector
