"""The live transports' fuzz targets (tests/fuzz/fuzz_live.py) with make test's budget."""

import fuzz_live  # noqa: F401  (registers the targets)
from fuzz_registry import ci_test

test_fuzz_websocket_messages = ci_test("websocket_messages")
test_fuzz_longpoll_bodies = ci_test("longpoll_bodies")
test_fuzz_room_queries = ci_test("room_queries")
