"""PARLEY_TRACEMALLOC: a running server says where its memory is and what grew, on SIGUSR2
(project/memory_dump.py)."""

from __future__ import annotations

import os
import signal
import tracemalloc

from twisted.internet.testing import MemoryReactor

from project import memory_dump


class Reactor(MemoryReactor):
    def __init__(self) -> None:
        super().__init__()
        self.called: list = []

    def callFromThread(self, fn, *args):
        self.called.append((fn, args))


def test_nothing_is_traced_or_installed_without_the_setting():
    before = signal.getsignal(signal.SIGUSR2)
    assert memory_dump.install(Reactor(), environ={}) is None
    assert signal.getsignal(signal.SIGUSR2) is before


def test_a_dump_names_what_holds_memory_and_what_grew(tmp_path):
    was_tracing = tracemalloc.is_tracing()
    before = signal.getsignal(signal.SIGUSR2)
    reactor = Reactor()
    target = tmp_path / "memory.txt"
    try:
        dumper = memory_dump.install(reactor, environ={memory_dump.ENV: str(target)})
        assert dumper is not None and tracemalloc.is_tracing()
        held = [bytearray(4096) for _ in range(500)]  # 2 MB allocated right here
        os.kill(os.getpid(), signal.SIGUSR2)
        assert reactor.called == [(dumper.dump, ())]  # the dump waits for the reactor
        reactor.called[0][0]()
        text = target.read_text()
        assert "MiB traced" in text and "grew most since the last dump" in text
        assert "after malloc_trim(0)" in text
        grew = text.split("grew most")[1]
        assert "test_memory_dump.py" in grew.splitlines()[2]  # the top growth is ours
        assert len(held) == 500
    finally:
        signal.signal(signal.SIGUSR2, before)
        if not was_tracing:
            tracemalloc.stop()


def test_a_worker_writes_its_own_file(tmp_path, monkeypatch):
    monkeypatch.setattr(tracemalloc, "start", lambda frames: None)
    monkeypatch.setattr(tracemalloc, "take_snapshot", lambda: None)
    before = signal.getsignal(signal.SIGUSR2)
    try:
        dumper = memory_dump.install(
            Reactor(), environ={memory_dump.ENV: str(tmp_path / "m")}, worker=True
        )
        assert dumper.path == tmp_path / f"m.{os.getpid()}"
    finally:
        signal.signal(signal.SIGUSR2, before)
