"""Hostile bodies never yield markup outside chat.render's allowlist.

Every payload of tests/data/xss_payloads.txt is rendered inside many Markdown contexts and
the output is parsed with the standard library's HTML parser, independently of nh3: only
allowlisted tags and attributes, no URL but http/https/mailto, no comment or declaration,
no stray "<", and the payload's text still there (escaped, not dropped).
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.render import render, sanitize

PAYLOADS_FILE = Path(__file__).parent.parent / "data" / "xss_payloads.txt"
READERS = frozenset({"alice", "bob", "x", "img", "script", "svg", "onerror"})

ALLOWED = {
    "p": set(),
    "br": set(),
    "em": set(),
    "strong": set(),
    "code": set(),
    "pre": set(),
    "blockquote": set(),
    "a": {"href", "rel", "target"},
    "span": {"class", "data-user"},
}
FIXED_VALUES = {
    ("a", "rel"): "nofollow noopener noreferrer",
    ("a", "target"): "_blank",
    ("span", "class"): "mention",
}
HREF_SCHEMES = ("http:", "https:", "mailto:")
BAD_SCHEMES = ("javascript:", "vbscript:", "data:", "livescript:", "file:")

CONTEXTS = [
    "{p}",
    "x {p} y",
    "**{p}**",
    "*{p}*",
    "_{p}_",
    "`{p}`",
    "`` {p} ``",
    "```\n{p}\n```",
    "~~~\n{p}\n~~~",
    "> {p}",
    ">>> {p}",
    "> **{p}**",
    "@alice {p} @bob",
    "{p}@bob",
    "@{p}",
    "https://example.com/{p}",
    "https://example.com/ {p}",
    "mailto:{p}",
    "[{p}](https://example.com/)",
    "[x]({p})",
    "![{p}](x)",
    "line one\n{p}\nline three",
    "{p}\n\n{p}",
    "\\{p}",
]

_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|[ntr\\])")
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
# Characters Markdown never consumes with this renderer's rules: raw HTML, entities,
# links, images, headings and lists are all off. Delimiters (* _ `), backslash escapes,
# ">" quote markers and whitespace may be consumed, so they are left out of the check.
_KEPT_PUNCTUATION = set("<\"'=():/;&#%![]{}|,?+-$^@.~")


def _unescape(line: str) -> str:
    def one(match: re.Match[str]) -> str:
        code = match.group(1)
        return _SIMPLE_ESCAPES.get(code) or chr(int(code[1:], 16))

    return _ESCAPE.sub(one, line)


def load_payloads() -> list[str]:
    payloads = []
    for line in PAYLOADS_FILE.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        payloads.append(_unescape(line[4:]) if line.startswith("ESC ") else line)
    return payloads


PAYLOADS = load_payloads()


def essential(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in _KEPT_PUNCTUATION)


class Inspection(HTMLParser):
    """Everything in a fragment that the allowlist is about, as html.parser sees it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []  # what could run script or leave the allowlist
        self.shape: list[str] = []  # what render never makes, harmless or not
        self.tags = 0
        self.text: list[str] = []
        self.mention_users: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags += 1
        if tag not in ALLOWED:
            self.problems.append(f"tag <{tag}>")
            return
        names = [name for name, _ in attrs]
        if len(names) != len(set(names)):
            self.problems.append(f"repeated attribute on <{tag}>: {names}")
        for name, value in attrs:
            self._check_attribute(tag, name, value or "")
        if tag == "a" and "href" not in names:
            self.shape.append("<a> without href")
        if tag == "a" and ("rel" not in names or "target" not in names):
            self.problems.append(f"<a> without rel and target: {attrs}")
        if tag == "span" and set(names) != {"class", "data-user"}:
            self.shape.append(f"<span> that is not a mention: {attrs}")

    def _check_attribute(self, tag: str, name: str, value: str) -> None:
        if name not in ALLOWED[tag]:
            self.problems.append(f"attribute {name} on <{tag}>")
            return
        bare = re.sub(r"[\x00-\x20\x7f-\x9f\s]+", "", value).lower()
        if bare.startswith(BAD_SCHEMES):
            self.problems.append(f"{name}={value!r} on <{tag}>")
        expected = FIXED_VALUES.get((tag, name))
        if expected is not None and value != expected:
            self.problems.append(f"{name}={value!r} on <{tag}>, not {expected!r}")
        if name == "href":
            self.hrefs.append(value)
            if not bare.startswith(HREF_SCHEMES):
                self.problems.append(f"href={value!r}")
        if name == "data-user":
            self.mention_users.append(value)
            if not re.fullmatch(r"[\w.@+-]{1,150}", value):
                self.problems.append(f"data-user={value!r} is no username")
            if value not in READERS:
                self.shape.append(f"data-user={value!r} is no reader")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        self.tags += 1
        if tag not in ALLOWED:
            self.problems.append(f"end tag </{tag}>")

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.problems.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.problems.append(f"declaration {decl!r}")

    def unknown_decl(self, data: str) -> None:
        self.problems.append(f"declaration {data!r}")

    def handle_pi(self, data: str) -> None:
        self.problems.append(f"processing instruction {data!r}")


def inspect(html: str) -> Inspection:
    parsed = Inspection()
    parsed.feed(html)
    parsed.close()
    # Every "<" must open a tag the parser saw: one left as text would mean markup that a
    # more lenient parser (a browser) might read differently.
    if html.count("<") != parsed.tags:
        parsed.shape.append(f"{html.count('<')} '<' for {parsed.tags} tags")
    return parsed


def assert_safe(body: str) -> Inspection:
    result = render(body, READERS)
    parsed = inspect(result.html)
    assert parsed.problems == [], (body, result.html)
    assert parsed.shape == [], (body, result.html)
    assert set(result.mentions) == set(parsed.mention_users), (body, result.html)
    return parsed


def test_the_corpus_is_large_and_readable():
    assert len(PAYLOADS) >= 150
    assert len(set(PAYLOADS)) == len(PAYLOADS)
    assert any("\x00" in p for p in PAYLOADS) and any("\t" in p for p in PAYLOADS)
    # A fence's info string is dropped by design, so no payload line may open one.
    for payload in PAYLOADS:
        assert not re.search(r"(^|\n)[ >]*(```|~~~)", payload), payload


@pytest.mark.parametrize("context", CONTEXTS)
def test_no_payload_escapes_the_allowlist(context):
    for payload in PAYLOADS:
        body = context.replace("{p}", payload)
        parsed = assert_safe(body)
        shown = essential("".join(parsed.text))
        assert essential(payload) in shown, (body, "".join(parsed.text))


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_sanitizer_alone_holds_the_line(payload):
    # Were the Markdown side ever to let raw HTML through, nh3 must still stop it.
    parsed = inspect(sanitize(payload))
    assert parsed.problems == [], payload


def test_payload_markup_is_shown_as_text():
    result = render("<img src=x onerror=alert(1)>", READERS)
    assert result.html == "&lt;img src=x onerror=alert(1)&gt;"
    assert "".join(inspect(result.html).text) == "<img src=x onerror=alert(1)>"


def test_the_checker_catches_what_it_is_for():
    link = 'rel="nofollow noopener noreferrer" target="_blank"'
    assert inspect("<script>x</script>").problems
    assert inspect(f'<a href="java&#x09;script:alert(1)" {link}>x</a>').problems
    assert inspect(f'<a href=" javascript:x" {link}>').problems
    assert inspect(f'<a href="/relative" {link}>').problems
    assert inspect('<a href="https://e.com" rel="opener">').problems
    assert inspect('<span class="mention" data-user="bob" onclick="x">').problems
    assert inspect('<span class="mention" data-user="a&quot;b">').problems
    assert inspect("<p style='x'>").problems
    assert inspect("<!-- x -->").problems
    assert inspect('<span class="mention" data-user="mallory">').shape
    assert inspect("a < b").shape
    ok = inspect(f'<a href="https://e.com" {link}>e</a>')
    assert ok.problems == ok.shape == []


# Pieces that make Markdown and HTML parsers work hard, mixed with arbitrary text.
FRAGMENTS = [
    "<",
    ">",
    "</",
    "/>",
    "<script>",
    "<img src=x onerror=alert(1)>",
    '"',
    "'",
    "=",
    "&",
    "&#x3C;",
    "&lt;",
    "javascript:",
    "JaVaScRiPt:",
    "data:",
    "vbscript:",
    "http://",
    "https://",
    "mailto:",
    "x.com",
    "//",
    "@",
    "@alice",
    "@bob",
    "*",
    "**",
    "_",
    "`",
    "```",
    "~~~",
    "\\",
    "[",
    "]",
    "(",
    ")",
    "!",
    "#",
    "\n",
    "\n\n",
    "> ",
    ">",
    "    ",
    "\t",
    "\x00",
    "\x0b",
    "\ud800",
    "\udfff",
    "\U0001f44d",
    "-",
    "1.",
    "|",
    "<!--",
    "-->",
    "<![CDATA[",
    " ",
    "a",
    ".",
]

markdownish = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=40
).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(st.characters(exclude_categories=()), max_size=300), markdownish))
def test_any_text_renders_within_the_allowlist(body):
    parsed = assert_safe(body)
    for href in parsed.hrefs:
        assert href.lower().startswith(HREF_SCHEMES), href
    if not re.search(r"(^|\n)[ \t>]*(```|~~~)", body):
        assert essential(body) in essential("".join(parsed.text)), body
