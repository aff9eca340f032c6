"""Prometheus metrics of live chat (served at /metrics with the HTTP ones)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CONNECTIONS = Gauge(
    "parley_live_connections", "Open live connections, by transport.", ["transport"]
)
EVENTS_APPENDED = Counter("parley_events_appended_total", "Durable events committed by sends.")
EVENTS_DELIVERED = Counter(
    "parley_events_delivered_total", "Events written to subscribers (one per subscriber)."
)
BATCH_SIZE = Histogram(
    "parley_commit_batch_size",
    "Sends committed together in one transaction (group commit).",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
DELIVERY_LATENCY = Histogram(
    "parley_append_to_delivery_seconds",
    "From a send reaching the hub to its event being written to the room's subscribers.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SLOW_CONSUMERS = Counter(
    "parley_slow_consumers_dropped_total",
    "Subscribers disconnected because their outbound buffer passed its bound.",
    ["transport"],
)
SENDS_SHED = Counter(
    "parley_sends_shed_total", "Sends answered `unavailable` because too many were waiting."
)
GAP_FILLS = Counter("parley_gap_fills_total", "Times a room read missing seqs from the database.")
