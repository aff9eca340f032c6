"""Latency samples kept for the charts: a receiver pool that remembers the raw latencies of
its last ``stats()`` and turns them into a fine CDF small enough for the results JSON.

``wsload.fanout`` reads ``pool.stats()`` and keeps only p50/p95/p99/max; wrapping the pool
in a :class:`LatencyTap` keeps the full distribution without changing the load tool.
"""

from __future__ import annotations

# 0.5% steps, then the tail in finer steps: a CDF drawn from these is smooth to the eye
# and the JSON stays ~300 points per run whatever the number of deliveries.
CDF_FRACTIONS = (
    *(i / 200 for i in range(0, 199)),
    *(0.99 + i / 1000 for i in range(0, 10)),
    0.9995,
    0.9999,
    1.0,
)


def cdf_points(latency_us, fractions: tuple[float, ...] = CDF_FRACTIONS) -> list[list[float]]:
    """``[[fraction, ms], ...]`` of the latencies (microseconds, any order)."""
    values = sorted(latency_us)
    if not values:
        return []
    last = len(values) - 1
    return [[f, round(values[min(round(f * last), last)] / 1000, 3)] for f in fractions]


class LatencyTap:
    """A ReceiverPool stand-in: everything goes to the pool, ``stats()`` keeps a CDF."""

    def __init__(self, pool) -> None:
        self._pool = pool
        self.last_cdf: list[list[float]] = []

    def stats(self, expected: int, **kwargs) -> dict:
        stats = self._pool.stats(expected, **kwargs)
        self.last_cdf = cdf_points(stats.get("latency_us", ()))
        return stats

    def __getattr__(self, name: str):
        return getattr(self._pool, name)


def fanout_with_cdf(fanout, server, pool, receivers: int, **kwargs) -> dict:
    """``wsload.fanout`` with the run's latency CDF added as ``latency_cdf``."""
    tap = LatencyTap(pool)
    result = fanout(server, tap, receivers, **kwargs)
    result["latency_cdf"] = tap.last_cdf
    return result
