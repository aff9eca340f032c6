"""Fuzz target of Markdown rendering (chat/render.py) with mentions of generated users.

tests/unit/test_render_xss.py throws arbitrary text at the renderer with a fixed set of
readers; this target generates the readers too (any Unicode username characters, names
that are prefixes of others, names ending in dots) and builds bodies around them, then
checks: no tag or attribute outside the allowlist (the same inspection as that test),
the set and the resolver forms of ``mentionable`` agree, and every mention is a reader
that the body names with an ``@``.
"""

from __future__ import annotations

from fuzz_registry import target
from hypothesis import strategies as st
from test_render_xss import FRAGMENTS, inspect

from chat.render import render

usernames = st.from_regex(r"[\w.@+-]{1,12}", fullmatch=True) | st.sampled_from(
    ["alice", "alice.", "alice.smith", "bob", "a", "Ωmega", "x@y", "..", "a-b+c"]
)


@st.composite
def bodies(draw) -> tuple[frozenset[str], str]:
    readers = draw(st.lists(usernames, max_size=5, unique=True))
    pieces = st.one_of(
        st.sampled_from(FRAGMENTS),
        st.sampled_from(readers).map("@{}".format) if readers else st.just("@"),
        st.sampled_from(readers) if readers else st.just("alice"),
        st.text(max_size=4),
    )
    return frozenset(readers), "".join(draw(st.lists(pieces, max_size=30)))


@target("render_mentions", bodies(), examples=((frozenset({"alice"}), "@alice"),), ci_examples=600)
def check_render(value: tuple[frozenset[str], str]) -> None:
    """Rendering stays in the allowlist, and its mentions are readers named with an @."""
    readers, body = value
    asked: list[list[str]] = []

    def resolver(names: list[str]) -> set[str]:
        asked.append(list(names))
        return {name for name in names if name in readers}

    result = render(body, readers)
    assert render(body, resolver) == result, body
    assert len(asked) <= 1 and (not asked or len(set(asked[0])) == len(asked[0]))
    parsed = inspect(result.html)
    assert parsed.problems == [], (body, result.html)
    assert len(set(result.mentions)) == len(result.mentions)
    assert set(result.mentions) <= readers
    assert set(parsed.mention_users) == set(result.mentions), (body, result.html)
    for name in result.mentions:
        assert "@" + name in body
