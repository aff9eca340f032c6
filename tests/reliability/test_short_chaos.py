"""The short chaos run (issue 15, parts 3 and 5): bench/chaos.py for 90 seconds with 60
clients, every fault injected at least once (kill -9 of a worker, Redis restart,
PostgreSQL crash-restart, Redis frozen with SIGSTOP, MEDIA_ROOT's disk full), and the
checker must find nothing lost, duplicated, reordered or seen without access.

It brings its own Redis, PostgreSQL cluster and tmpfs (never the machine's shared ones),
so it needs root, ``redis-server`` and Debian's PostgreSQL binaries; it is skipped
without them.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
FAULTS = ("worker_kill", "redis_restart", "postgres_restart", "redis_freeze", "disk_full")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (tmpfs mount, the postgres user)"
    if shutil.which("redis-server") is None:
        return "needs redis-server"
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        return "needs Debian's PostgreSQL binaries"
    return None


@pytest.fixture(scope="module")
def chaos(tmp_path_factory) -> dict:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("chaos")
    command = [
        sys.executable, str(REPO / "bench" / "chaos.py"), "--minutes", "1.5",
        "--clients", "60", "--out", str(out),
        "--redis-port", str(_free_port()), "--pg-port", str(_free_port()),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=330)
    if not (out / "result.json").exists():
        if "cannot mount a tmpfs" in done.stderr:
            pytest.skip("this machine does not allow a tmpfs mount")
        raise AssertionError(f"chaos.py wrote no result (rc {done.returncode}):\n{done.stderr}")
    result = json.loads((out / "result.json").read_text())
    result["rc"] = done.returncode
    result["stderr"] = done.stderr[-4000:]
    return result


@pytest.mark.timeout(360)
def test_every_fault_was_injected_and_recovered(chaos):
    for name in FAULTS:
        injections = chaos["faults"].get(name, {}).get("injections", [])
        assert injections, f"{name} never injected:\n{chaos['stderr']}"
        assert all("error" not in i for i in injections), (name, injections)
    for kill in chaos["faults"]["worker_kill"]["injections"]:
        assert kill["back_s"] is not None, f"worker {kill['pid']} was not replaced"
    for full in chaos["faults"]["disk_full"]["injections"]:
        assert full["free_bytes_while_full"] == 0, full


@pytest.mark.timeout(360)
def test_checker_finds_nothing_and_everyone_caught_up(chaos):
    checker = chaos["checker"]
    assert checker["ok"], checker["problems"]
    assert checker["counts"]["acked"]["checked"] > 0
    assert checker["counts"]["connections"]["events"] > 0
    assert checker["counts"]["log"]["rooms"] > 0
    assert chaos["caught_up"]["behind"] == 0, chaos["caught_up"]
    assert chaos["clients"]["resumes_with_since"] > 0
    assert chaos["pass"] and chaos["rc"] == 0, chaos["stderr"]


@pytest.mark.timeout(360)
def test_outage_sends_were_refused_never_falsely_acked(chaos):
    # A false ack would be a checker problem (an ack whose seq is not that write in the
    # log); here: the database outage was seen by the senders as `unavailable`.
    during = chaos["faults"]["postgres_restart"]["injections"]
    assert sum(i["clients_saw"].get("send_error unavailable", 0) for i in during) > 0, during
    uploads = chaos["uploads"]
    assert uploads["answered_201"] > 0
    assert uploads["bad"] == [], uploads
    # Every refusal is the protocol's `unavailable` (503), never Django's HTML 500 (an
    # upload whose connection died with its worker is "None <exception>": no answer).
    assert set(chaos["clients"]["send_errors"]) <= {"unavailable"}, chaos["clients"]
    answered = [k for k in uploads["refused"] if not k.startswith("None ")]
    assert all(k == "503 unavailable" for k in answered), uploads["refused"]
