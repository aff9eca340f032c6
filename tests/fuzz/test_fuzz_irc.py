"""The IRC gateway's fuzz target (tests/fuzz/fuzz_irc.py) with make test's budget."""

import fuzz_irc  # noqa: F401  (registers the target)
from fuzz_registry import ci_test

test_fuzz_irc_lines = ci_test("irc_lines")
