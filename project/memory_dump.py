"""Where a running server's memory goes, on request: ``PARLEY_TRACEMALLOC=/path/file``.

With it set, the process traces its allocations from when it starts serving
(``tracemalloc``, the newest 10 frames of each) and on ``SIGUSR2`` appends to that file
the 30 places holding the most memory and the 30 that grew most since the last dump
(the first dump compares with the start), after a full collection, then the RSS before
and after glibc's ``malloc_trim`` (memory freed but kept by the allocator). Two dumps some
minutes apart under load name what grows. Tracing slows every allocation and takes
memory of its own, and a dump holds the reactor while it collects and counts (a second
or more under load), so it is for finding a leak, not for every day. A worker of
``--workers`` writes ``file.<pid>``.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import time
import tracemalloc
from pathlib import Path

ENV = "PARLEY_TRACEMALLOC"
FRAMES = 10
TOP = 30


class MemoryDump:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.previous = tracemalloc.take_snapshot()

    def dump(self) -> None:
        # What is held, not garbage waiting for the cyclic collector's next full pass.
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)]
        )
        current, peak = tracemalloc.get_traced_memory()
        lines = [f"== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: "
                 f"{current / 2**20:.1f} MiB traced (peak {peak / 2**20:.1f})",
                 f"-- the {TOP} places holding the most"]  # fmt: skip
        for stat in snapshot.statistics("traceback")[:TOP]:
            lines.append(f"{stat.size / 1024:10.1f} KiB {stat.count:8d} blocks")
            lines += [f"    {line}" for line in stat.traceback.format(most_recent_first=True)]
        lines.append(f"-- the {TOP} that grew most since the last dump")
        for stat in snapshot.compare_to(self.previous, "traceback")[:TOP]:
            lines.append(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+8d} blocks")
            lines += [f"    {line}" for line in stat.traceback.format(most_recent_first=True)]
        self.previous = snapshot
        lines.append(f"-- RSS {_rss_mib():.1f} MiB; after malloc_trim(0) {_trimmed():.1f} MiB")
        with self.path.open("a") as out:
            out.write("\n".join(lines) + "\n")


def _rss_mib() -> float:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return float("nan")
    kib = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")), 0)
    return int(kib) / 1024


def _trimmed() -> float:
    """RSS after asking glibc to give back the free memory it holds: what it drops by is
    memory freed by Python and the libraries but kept by the allocator, not live data."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return float("nan")
    return _rss_mib()


def install(reactor, environ=os.environ, worker: bool = False) -> MemoryDump | None:
    """Trace and dump on SIGUSR2 when ``PARLEY_TRACEMALLOC`` names a file; else nothing."""
    target = environ.get(ENV)
    if not target:
        return None
    path = Path(f"{target}.{os.getpid()}" if worker else target)
    if not tracemalloc.is_tracing():
        tracemalloc.start(FRAMES)
    dumper = MemoryDump(path)
    # The handler only asks the reactor: the dump runs between two reactor callbacks.
    signal.signal(signal.SIGUSR2, lambda *_: reactor.callFromThread(dumper.dump))
    return dumper
