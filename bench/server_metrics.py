"""Parley's own /metrics, read from loopback before and after a measured step: what the
server saw, apart from what the load client measured (a busy client adds its own lag to
every latency it times; the server's histograms do not have it).

``scrape(port)`` is the text format parsed into {(name, labels): value}; ``gc_pauses``
and ``histogram_quantile`` compare two scrapes.
"""

from __future__ import annotations

import re
import urllib.request

HOST = "127.0.0.1"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", re.M)

Scrape = dict[tuple[str, str], float]


def scrape(port: int) -> Scrape | None:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    return {(name, labels or ""): float(value) for name, labels, value in _SAMPLE.findall(text)}


def gc_pauses(before: Scrape, after: Scrape) -> dict[str, float]:
    """Seconds in cyclic GC between the two scrapes, by generation."""
    out = {}
    for (name, labels), value in after.items():
        if name == "parley_gc_pause_seconds_total":
            generation = re.search(r'generation="(\d)"', labels)[1]
            out[generation] = round(value - before.get((name, labels), 0.0), 4)
    return out


def histogram_quantile(before: Scrape, after: Scrape, name: str, q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` of what was observed between
    the scrapes (None: nothing observed; inf: above the last finite bucket)."""
    buckets = []
    for (sample, labels), value in after.items():
        if sample == f"{name}_bucket":
            bound = float(re.search(r'le="([^"]+)"', labels)[1])
            buckets.append((bound, value - before.get((sample, labels), 0.0)))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    for bound, count in buckets:
        if count >= q * total:
            return bound
    return float("inf")
