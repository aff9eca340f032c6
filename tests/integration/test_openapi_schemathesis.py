"""``/api/openapi.json`` kept true: schemathesis (pinned in requirements-dev.txt) against a
real serve.py with seeded data, a bounded number of examples, every check but
positive_data_acceptance (a well-formed write may still be refused by the room's state:
an unknown reply_to, a message that is not the user's). It fails on any 5xx, and on any
answer whose status, content type, headers or body the description does not allow,
including 405s for methods a path does not list and 4xx for bodies of the wrong shape.

Requests carry a staff user's bearer token (PROTOCOL.md "Authentication"), so writes
go through as far as the data allows; the security of each operation is checked by
schemathesis's ignored_auth (no credentials: refused).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from parley_testing import ServerProcess

SEED = """
from django.contrib.auth.models import User
from chat import log, tokens
from chat.live.records import SendRequest
from chat.models import Room
staff = User.objects.create_superuser("schema", password="pw-schema-1")
bob = User.objects.create_user("bob", password="pw-schema-2")
lobby, _ = Room.objects.get_or_create(slug="lobby", defaults={"name": "Lobby"})
hidden = Room.objects.create(slug="hidden", name="Hidden", is_public=False)
hidden.members.add(bob)
log.append_events([SendRequest("lobby", u.id, u.username, f"hello {n}", f"seed-{n}")
                   for n, u in enumerate([staff, bob, staff, bob])])
print("TOKEN", tokens.make(staff, "schemathesis")[1])
"""
# The operations of chat/api/openapi_paths.py (tests/unit/test_openapi.py holds them to
# chat/urls.py).
OPERATIONS = 16
# Bounded for CI; a longer hunt: PARLEY_SCHEMATHESIS_EXAMPLES=200 PARLEY_SCHEMATHESIS_SEED=7.
EXAMPLES = os.environ.get("PARLEY_SCHEMATHESIS_EXAMPLES", "20")
SEED_NUMBER = os.environ.get("PARLEY_SCHEMATHESIS_SEED", "1")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    made = ServerProcess(tmp_path_factory.mktemp("openapi"), env={"CHAT_RATE_LIMIT": "0"}).start()
    yield made
    made.kill()


def test_every_answer_matches_the_description(server, tmp_path: Path):
    out = server.shell(SEED)
    token = next(line for line in out.splitlines() if line.startswith("TOKEN ")).split()[1]
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{server.url}/api/openapi.json",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        EXAMPLES,
        "--seed",
        SEED_NUMBER,
        # One worker: Python 3.11's ast.parse is not thread-safe ("AST constructor
        # recursion depth mismatch", CPython gh-106905), and hypothesis calls it to
        # describe strategies; two worker threads of schemathesis crash it.
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--phases",
        "examples,coverage,fuzzing",
        "--header",
        f"Authorization: Bearer {token}",
        "--generation-allow-x00",
        "true",
        "--no-color",
        "--max-failures",
        "50",
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        cwd=tmp_path,
    )
    report = done.stdout[-20000:] + done.stderr[-4000:]
    assert done.returncode == 0, report
    # It ran: every operation, hundreds of cases (a run that tested nothing passes too).
    assert re.search(r"Tested: (\d+)", report).group(1) == str(OPERATIONS), report
    generated = int(re.search(r"(\d+) generated", report).group(1))
    assert generated >= 200, report
    print(report[-1500:])
    assert "Traceback" not in server.log(), server.log()[-4000:]
