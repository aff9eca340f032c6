"""The pure parsers' fuzz targets (tests/fuzz/fuzz_pure.py) with make test's budget."""

import fuzz_pure  # noqa: F401  (registers the targets)
from fuzz_registry import ci_test

test_fuzz_client_frames = ci_test("client_frames")
test_fuzz_request_heads = ci_test("request_heads")
test_fuzz_origins = ci_test("origins")
test_fuzz_inbox_poll_query = ci_test("inbox_poll_query")
