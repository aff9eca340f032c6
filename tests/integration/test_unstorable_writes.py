"""Issue 9.1 on SQLite: one unstorable write fails nobody else's (see tests/unstorable_writes.py).

On SQLite one group-commit batch spans every room, so before the fix a lone surrogate in
one user's send made the whole batch fail: other users' sends in other rooms got
`unavailable`; with the surrogate in the client_id the sender got no answer at all and
the log a CRITICAL traceback per frame.
"""

from __future__ import annotations

from live_clients import provision, run
from unstorable_writes import (
    ROOMS,
    USERS,
    assert_clean_log,
    assert_healthy,
    run_scenario,
)

PASSWORD = "pw-unstorable-4411"


def test_unstorable_sends_fail_alone_on_sqlite(make_server):
    server = make_server(env={"CHAT_RATE_LIMIT": "0"}, name="unstorable")
    accounts = provision(server, users=[(u, PASSWORD) for u in USERS], rooms=list(ROOMS))
    run(run_scenario(server, accounts), timeout=90)
    assert_healthy(server)
    assert_clean_log(server.log())
