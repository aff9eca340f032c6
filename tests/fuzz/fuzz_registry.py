"""The fuzz targets' registry: each target is a strategy of wire input and a check of it.

A target is written once and run two ways: as a bounded hypothesis test under
``make test`` (``ci_test``), and for as long as asked by ``bench/fuzz.py`` (which raises
the number of examples and counts the executions). Every finding is kept as an
``examples`` entry of its target, so that both ways replay it first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis.strategies import SearchStrategy

TESTS = Path(__file__).resolve().parent.parent
# The live harness (tests/unit/conftest.py's fakes) and irc_harness live in tests/unit.
for _path in (TESTS / "unit", TESTS / "fuzz"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

# Generation is the point, not the speed of one example: a slow example is no failure.
RELAXED = [
    HealthCheck.too_slow,
    HealthCheck.data_too_large,
    HealthCheck.filter_too_much,
    HealthCheck.large_base_example,
]


@dataclass(frozen=True)
class Target:
    name: str
    strategy: SearchStrategy
    check: Callable[[Any], None]
    examples: tuple = ()
    ci_examples: int = 100  # under make test; bench/fuzz.py runs as many as time allows
    doc: str = ""


TARGETS: dict[str, Target] = {}


def target(
    name: str, strategy: SearchStrategy, examples: tuple = (), ci_examples: int = 100
) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Register the decorated check as the target ``name`` over ``strategy``."""

    def register(check: Callable[[Any], None]) -> Callable[[Any], None]:
        if name in TARGETS:
            raise ValueError(f"fuzz target {name!r} is registered twice")
        doc = (check.__doc__ or "").strip().split("\n")[0]
        TARGETS[name] = Target(name, strategy, check, tuple(examples), ci_examples, doc)
        return check

    return register


def runner(item: Target, max_examples: int, database=None, **extra) -> Callable[[], None]:
    """A hypothesis test of ``item`` (its regression examples first)."""

    def run(value: Any) -> None:
        item.check(value)

    run.__name__ = run.__qualname__ = f"fuzz_{item.name}"
    test = given(item.strategy)(run)
    for value in reversed(item.examples):
        test = example(value)(test)
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=RELAXED,
        database=database,
        **extra,
    )(test)


def ci_test(name: str) -> Callable[[], None]:
    """The target ``name`` as a pytest test with the bounded budget of ``make test``."""
    item = TARGETS[name]
    test = runner(item, item.ci_examples)
    test.__name__ = f"test_fuzz_{name}"
    return test
