"""bench/idle.py's accounting: source addresses, steps, the file limit, connections bound
to a source address (bench/loadclient.py)."""

from __future__ import annotations

import asyncio
import resource
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import idle
from loadclient import Worker


def test_each_source_address_stays_under_its_share_of_ports():
    found = idle.source_addresses(100_000, per_source=20_000)
    assert found == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"]
    assert idle.source_addresses(20_001, per_source=20_000) == ["127.0.0.2", "127.0.0.3"]
    assert idle.source_addresses(5, per_source=20_000) == ["127.0.0.2"]
    with pytest.raises(ValueError):
        idle.source_addresses(251 * 10, per_source=10)


def test_steps_open_only_the_new_connections():
    assert idle.step_plan([10_000, 25_000, 50_000, 100_000]) == [
        (10_000, 10_000),
        (25_000, 15_000),
        (50_000, 25_000),
        (100_000, 50_000),
    ]
    with pytest.raises(ValueError):
        idle.step_plan([1000, 1000])


def test_the_ratio_is_taken_at_the_largest_step_both_reached():
    parley = {"steps": [{"target": 10, "rss_per_conn_kib": 9.0},
                        {"target": 20, "rss_per_conn_kib": 11.0}]}  # fmt: skip
    bare = {"steps": [{"target": 10, "rss_per_conn_kib": 8.0},
                      {"target": 20, "rss_per_conn_kib": 10.0},
                      {"target": 40, "rss_per_conn_kib": 10.0}]}  # fmt: skip
    assert idle._ratio(parley, bare) == 1.1


def test_the_file_limit_is_raised_to_what_is_needed():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        got = idle.raise_nofile(soft + 10)
        assert got >= min(soft + 10, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == got
    finally:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (soft, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        )


def test_connections_are_bound_to_the_source_address():
    """The server sees 127.0.0.3 as the client's address: the source was bound."""
    peers: list[str] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def handle(reader, writer) -> None:
            peers.append(writer.get_extra_info("peername")[0])
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
            await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, family=socket.AF_INET)
        port = server.sockets[0].getsockname()[1]
        worker = Worker(loop, 0, [0], 16)
        sources = ["127.0.0.3", "127.0.0.4"]
        spec = {"host": "127.0.0.1", "port": port, "path": "/", "n": 3, "transport": "ws"}
        answer = await worker.connect({**spec, "sources": sources})
        assert answer["connected"] == 3, answer
        worker.close_all()
        server.close()

    asyncio.run(main())
    assert sorted(peers) == ["127.0.0.3", "127.0.0.3", "127.0.0.4"]
