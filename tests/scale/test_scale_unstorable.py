"""Issue 9.1 on PostgreSQL: one unstorable write fails nobody else's.

PostgreSQL refuses a NUL in text and a lone surrogate cannot be encoded for it; with one
commit lane per room, a bad send used to fail the batch of its room, so other users'
sends in that room got `unavailable`. The scenario is tests/unstorable_writes.py.
"""

from __future__ import annotations

import pytest
from live_clients import run
from unstorable_writes import (
    BAD_ROOM,
    ROOMS,
    USERS,
    assert_clean_log,
    assert_healthy,
    run_scenario,
)

pytestmark = pytest.mark.scale


def test_unstorable_sends_fail_alone_on_postgresql(cluster):
    (server,) = cluster.start(1)
    accounts = cluster.provision(USERS, list(ROOMS))
    run(run_scenario(server, accounts), timeout=90)
    assert_healthy(server)
    assert_clean_log(server.log())
    # Straight from the database: nothing of the bad sends was stored.
    rows = cluster.log(BAD_ROOM)
    assert [r for r in rows if r[2] == "bad"] == [r for r in rows if r[4] == "bad-then-good"]
    assert not [r for r in rows if "\x00" in (r[3] or "")]
