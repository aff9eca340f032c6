"""The published contract and the README's links travel with the code (issue 8)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "PROTOCOL.md"
# docs/PROTOCOL.md = the shared contract + "— *planned*" marks + one paragraph saying so.
_MARK = re.compile(r" — \*planned(?:: [^*]*)?\*")
_MARKS_PARAGRAPH = re.compile(r"\*\*Marks in this copy\.\*\*.*?\n\n", re.S)


def test_published_protocol_is_the_shared_one_but_for_the_planned_marks():
    if not SHARED.exists():
        pytest.skip("no ../shared/PROTOCOL.md beside this checkout")
    published = (REPO / "docs" / "PROTOCOL.md").read_text()
    assert "v2" in published.splitlines()[0]
    unmarked = _MARKS_PARAGRAPH.sub("", _MARK.sub("", published), count=1)
    assert unmarked == SHARED.read_text()


@pytest.mark.parametrize("document", ["README.md", "docs/DESIGN.md", "docs/DEPLOYMENT.md"])
def test_relative_links_resolve_in_a_clone(document):
    path = REPO / document
    text = path.read_text()
    assert "../shared/" not in text
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # an absolute URL
        assert (path.parent / target).exists(), f"{document} links {target}, which is missing"
