"""Markdown rendering's fuzz target (tests/fuzz/fuzz_render.py) with make test's budget."""

import fuzz_render  # noqa: F401  (registers the target)
from fuzz_registry import ci_test

test_fuzz_render_mentions = ci_test("render_mentions")
