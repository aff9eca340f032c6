"""The short soak (issue 15, part 5): bench/soak.py for 36 seconds with 200 clients on
every door, churning (visits of 5-20 s); the checker must find nothing and the client
connections must all be gone at the end. (RSS and p99 flatness need the long run on a
quiet machine: here they are only reported.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import soak  # noqa: E402


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    args = soak.parser().parse_args(
        ["--minutes", "0.6", "--clients", "200", "--users", "40", "--rooms", "4", "--procs", "2",
         "--interval", "3", "--stay", "5", "20", "--drain", "30", "--sample-seconds", "5",
         "--out", str(tmp_path_factory.mktemp("soak"))]
    )  # fmt: skip
    return soak.run(args)


@pytest.mark.timeout(300)
def test_checker_finds_nothing(result):
    report = result["checker"]
    assert report["ok"], report["problems"]
    counts = report["counts"]
    assert counts["acked"]["checked"] > 100
    assert counts["connections"]["checked"] > 100
    assert counts["caught_up"]["checked"] > 50
    assert counts["access"]["refused"] > 0


def test_every_door_churned(result):
    opens = result["opens_by_door"]
    assert set(opens) == {"ws", "sse", "poll", "inbox", "irc"}, opens
    # churn: more connections than clients, each reader came back with since
    assert sum(opens.values()) > 200
    assert result["records"].get("upload_ok", 0) > 0
    assert "client_error" not in result["records"], result["records"]


def test_connections_return_to_baseline(result):
    checks = result["checks"]
    assert checks["client_sockets_after"] == 0, checks
    assert checks["fds_ok"], checks
