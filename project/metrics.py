"""Prometheus metrics of the HTTP server (the chat's own live in chat/live/metrics.py)."""

from __future__ import annotations

import gc
import time

from prometheus_client import Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
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


class GCPauses(Collector):
    """Time the cyclic garbage collector stops the process, by generation: a full
    collection walks every tracked object, so with tens of thousands of connections it is
    a pause of the reactor that the latency histograms show but cannot explain.

    The gc callback only adds floats: it runs in whichever thread allocated, possibly
    inside a prometheus_client method holding that metric's (non-reentrant) lock, so it
    must not call into a metric itself; the totals are read at scrape time."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._started = 0.0

    def callback(self, phase: str, info: dict) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
            return
        generation = info.get("generation", 2)
        pause = now - self._started
        self.count[generation] += 1
        self.total[generation] += pause
        if pause > self.longest[generation]:
            self.longest[generation] = pause

    def collect(self):
        seconds = CounterMetricFamily(
            "parley_gc_pause_seconds",
            "Time spent in cyclic GC collections.",
            labels=["generation"],
        )
        longest = GaugeMetricFamily(
            "parley_gc_pause_longest_seconds",
            "The longest cyclic GC collection since the process started.",
            labels=["generation"],
        )
        for generation in range(3):
            seconds.add_metric([str(generation)], self.total[generation])
            longest.add_metric([str(generation)], self.longest[generation])
        return [seconds, longest]


GC_PAUSES = GCPauses()


def watch_gc() -> None:
    """Time every collection of this process (once: a second call changes nothing)."""
    if GC_PAUSES.callback not in gc.callbacks:
        gc.callbacks.append(GC_PAUSES.callback)
        REGISTRY.register(GC_PAUSES)
