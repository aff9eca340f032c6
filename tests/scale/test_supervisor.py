"""The supervisor of ``serve.py --workers``: a worker that dies is replaced, and SIGTERM
drains every worker and exits 0."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
from scale_support import wait_workers

pytestmark = pytest.mark.scale


def test_a_killed_worker_is_replaced_and_the_port_keeps_serving(cluster):
    (server,) = cluster.start(1, args=["--workers", "2"])
    first = wait_workers(server, 2)
    os.kill(first[0], signal.SIGKILL)

    deadline = time.monotonic() + 30
    replaced: list[int] = []
    while time.monotonic() < deadline:
        live = wait_workers(server, 2)
        if first[0] not in live:
            replaced = live
            break
        time.sleep(0.2)
    assert replaced and first[0] not in replaced, server.log()[-3000:]
    assert "exited with -9; restarting" in server.log()
    # Both the survivor and the new worker accept on the one port.
    with httpx.Client(base_url=server.url, timeout=5) as client:
        for _ in range(20):
            assert client.get("/healthz").json()["status"] == "ok"


def test_sigterm_drains_every_worker_and_exits_0(cluster):
    (server,) = cluster.start(1, args=["--workers", "2"])
    workers = wait_workers(server, 2)
    assert server.stop(signal.SIGTERM, timeout=30) == 0, server.log()[-3000:]
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), pid
    assert server.log().count("drained") >= 2, server.log()[-3000:]


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True


def test_workers_drain_and_exit_when_the_supervisor_is_killed(cluster):
    """kill -9 of the supervisor: nobody would restart, stop or reap its workers, so each
    notices (its parent changed), drains like on SIGTERM and exits."""
    (server,) = cluster.start(1, args=["--workers", "2"])
    workers = wait_workers(server, 2)
    server.kill()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), server.log()[-3000:]
    assert server.log().count("the supervisor (pid") >= 2, server.log()[-3000:]


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}") and not _is_zombie(pid)
