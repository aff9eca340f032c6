"""chat.render: the Markdown subset, autolinks and mentions of PROTOCOL.md's room log."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from chat import render as render_module
from chat.render import MAX_QUOTE_DEPTH, Rendered, render

READERS = frozenset({"alice", "bob", "bob.smith", "carol-x", "dan_y", "eve+z", "日本"})
LINK = 'target="_blank" rel="nofollow noopener noreferrer"'


def html(body: str, readers: frozenset[str] = READERS) -> str:
    return render(body, readers).html


def mentions(body: str, readers: frozenset[str] = READERS) -> list[str]:
    return render(body, readers).mentions


def mention(name: str) -> str:
    return f'<span class="mention" data-user="{name}">@{name}</span>'


def a(url: str) -> str:
    return f'<a href="{url}" {LINK}>{url}</a>'


def test_protocol_example():
    result = render("hi **there** @bob", {"bob"})
    assert result == Rendered(
        html='hi <strong>there</strong> <span class="mention" data-user="bob">@bob</span>',
        mentions=["bob"],
    )


def test_result_is_immutable():
    result = render("x", READERS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.html = "<script>"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("plain text", "plain text"),
        ("", ""),
        ("   \n\n  ", ""),
        ("*em* and _em_", "<em>em</em> and <em>em</em>"),
        ("**strong** and __strong__", "<strong>strong</strong> and <strong>strong</strong>"),
        ("***both***", "<em><strong>both</strong></em>"),
        ("snake_case_name", "snake_case_name"),
        ("`code`", "<code>code</code>"),
        ("`<b>**x**</b>`", "<code>&lt;b&gt;**x**&lt;/b&gt;</code>"),
        ("`` a ` b ``", "<code>a ` b</code>"),
        ("\\*not em\\*", "*not em*"),
        ("one\ntwo", "one<br>\ntwo"),
        ("trailing  \nspaces", "trailing<br>\nspaces"),
        ("back\\\nslash", "back<br>\nslash"),
        ("para one\n\npara two", "<p>para one</p>\n<p>para two</p>"),
    ],
)
def test_inline_constructs(body, expected):
    assert html(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("```\n<b>*x*</b>\n```", "<pre><code>&lt;b&gt;*x*&lt;/b&gt;\n</code></pre>"),
        ("```python\nprint(1)\n```", "<pre><code>print(1)\n</code></pre>"),
        ('```js" onclick="x\nx\n```', "<pre><code>x\n</code></pre>"),
        ("~~~\na\n\nb\n~~~", "<pre><code>a\n\nb\n</code></pre>"),
        ("```\nunclosed\n@bob", "<pre><code>unclosed\n@bob</code></pre>"),
        ("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>"),
        (
            "> a\n>> b",
            "<blockquote>\n<p>a</p>\n<blockquote>\n<p>b</p>\n</blockquote>\n</blockquote>",
        ),
        ("> **x**\nlazy", "<blockquote>\n<p><strong>x</strong><br>\nlazy</p>\n</blockquote>"),
        ("before\n```\ncode\n```", "<p>before</p>\n<pre><code>code\n</code></pre>"),
    ],
)
def test_block_constructs(body, expected):
    assert html(body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("# not a heading", "# not a heading"),
        ("title\n=====", "title<br>\n====="),
        ("- a\n- b", "- a<br>\n- b"),
        ("1. one", "1. one"),
        ("---", "---"),
        ("    indented", "indented"),
        ("| a | b |\n|---|---|", "| a | b |<br>\n|---|---|"),
        ("~~struck~~", "~~struck~~"),
        ("![alt](https://e.com/i.png)", "![alt](" + a("https://e.com/i.png") + ")"),
        ("[text](https://e.com/)", "[text](" + a("https://e.com/") + ")"),
        ("[text][ref]\n\n[ref]: https://e.com/", "<p>[text][ref]</p>\n<p>[ref]: "),
        ("<https://e.com/>", "&lt;" + a("https://e.com/") + "&gt;"),
        ("<b>bold</b>", "&lt;b&gt;bold&lt;/b&gt;"),
        ("<!-- c -->", "&lt;!-- c --&gt;"),
        ("&amp; &lt; &#60; &copy;", "&amp;amp; &amp;lt; &amp;#60; &amp;copy;"),
        ('"quotes" -- ...', '"quotes" -- ...'),
    ],
)
def test_everything_else_is_text(body, expected):
    assert html(body).startswith(expected)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("https://example.com/", a("https://example.com/")),
        ("http://example.com/a?b=1&c=2", a("http://example.com/a?b=1&amp;c=2")),
        ("mailto:bob@example.com", a("mailto:bob@example.com")),
        ("see https://e.com/x.", "see " + a("https://e.com/x") + "."),
        ("(https://e.com/a_(b))", "(" + a("https://e.com/a_(b)") + ")"),
        ("**https://e.com/**", "<strong>" + a("https://e.com/") + "</strong>"),
        ("> https://e.com/", "<blockquote>\n<p>" + a("https://e.com/") + "</p>\n</blockquote>"),
        ("HTTPS://E.COM/", a("HTTPS://E.COM/")),
        ("`https://e.com/`", "<code>https://e.com/</code>"),
        ("example.com", "example.com"),
        ("www.example.com", "www.example.com"),
        ("bob@example.com", "bob@example.com"),
        ("ftp://example.com/", "ftp://example.com/"),
        ("//example.com/", "//example.com/"),
        ("javascript:alert(1)", "javascript:alert(1)"),
        ("data:text/html,x", "data:text/html,x"),
        ("xhttps://e.com/", "xhttps://e.com/"),
        ("http://²", "http://²"),
    ],
)
def test_autolinks(body, expected):
    assert html(body) == expected


def test_link_text_is_the_url_as_typed():
    # No punycode or %-decoding in what the reader sees: it must read as where it goes.
    assert html("https://xn--80ak6aa92e.com/%41") == a("https://xn--80ak6aa92e.com/%41")
    assert html("https://пример.com/") == (
        f'<a href="https://xn--e1afmkfd.com/" {LINK}>https://пример.com/</a>'
    )


def test_fenced_code_keeps_markdown_and_mentions_literal():
    result = render("```\n**@bob** https://e.com/\n```", READERS)
    assert result.html == "<pre><code>**@bob** https://e.com/\n</code></pre>"
    assert result.mentions == []


def test_quotes_nest_only_so_deep_and_the_rest_stays_text():
    result = html(">" * 4000 + " deep")
    assert result.count("<blockquote>") == MAX_QUOTE_DEPTH
    assert "&gt;" * (4000 - MAX_QUOTE_DEPTH) + " deep" in result


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("@bob", ["bob"]),
        ("hey @bob, hi", ["bob"]),
        ("(@bob)", ["bob"]),
        ("@bob's turn", ["bob"]),
        ("@bob: see", ["bob"]),
        ("@bob!", ["bob"]),
        ("thanks @alice.", ["alice"]),
        ("@alice...", ["alice"]),
        ("@alice.\nnext", ["alice"]),
        ("@bob.smith", ["bob.smith"]),
        ("@bob.smith.", ["bob.smith"]),
        ("@carol-x @dan_y @eve+z", ["carol-x", "dan_y", "eve+z"]),
        ("@日本 さん", ["日本"]),
        ("@alice @bob @alice", ["alice", "bob"]),
        ("@bob\n@alice", ["bob", "alice"]),
        ("**@bob**", ["bob"]),
        ("*@bob*", ["bob"]),
        ("> @bob", ["bob"]),
        ("@bob https://e.com/", ["bob"]),
        # A username character on either side means another name, or none.
        ("@alice.smith", []),
        ("@bob_", []),
        ("@bob-", []),
        ("@bob+1", []),
        ("@bobby", []),
        ("@bob@alice", []),
        ("@@bob", []),
        ("x@bob", []),
        ("bob@example.com", []),
        ("alice.@bob", []),
        ("@bo**b**", []),
        ("@bob`x`", []),
        ("@bob\\_x", []),
        ("@Bob", []),
        ("@ALICE", []),
        ("@carol", []),
        ("@", []),
        ("@ bob", []),
        ("@mallory", []),
        # Never in code or links.
        ("`@bob`", []),
        ("```\n@bob\n```", []),
        ("https://e.com/@bob", []),
        ("mailto:x@bob", []),
    ],
)
def test_mentions(body, expected):
    assert mentions(body) == expected


def test_mention_markup_in_context():
    assert html("hi @bob.") == f"hi {mention('bob')}."
    assert html("**@bob**") == f"<strong>{mention('bob')}</strong>"
    assert html("@alice @bob") == f"{mention('alice')} {mention('bob')}"
    assert html("`@bob` @bob") == f"<code>@bob</code> {mention('bob')}"


def test_the_longest_username_wins():
    assert mentions("@bob.smith", frozenset({"bob", "bob.smith"})) == ["bob.smith"]
    assert mentions("@bob.smith", frozenset({"bob"})) == []
    assert mentions("@alice.", frozenset({"alice", "alice."})) == ["alice."]
    assert mentions("@alice..", frozenset({"alice", "alice."})) == ["alice."]
    assert html("@alice..", frozenset({"alice", "alice."})) == mention("alice.") + "."


def test_only_readers_are_mentioned():
    result = render("@alice @bob", frozenset({"bob"}))
    assert result.mentions == ["bob"]
    assert result.html == f"@alice {mention('bob')}"
    assert render("@alice", frozenset()).mentions == []


def test_a_resolver_gets_each_candidate_once_in_order():
    asked: list[list[str]] = []

    def resolve(names: list[str]) -> set[str]:
        asked.append(names)
        return {"alice", "mallory"}

    result = render("@bob @alice... @bob x@carol `@dave`", resolve)
    assert asked == [["bob", "alice...", "alice..", "alice.", "alice"]]
    # Names the resolver returns without being asked change nothing.
    assert result.mentions == ["alice"]
    assert result.html == f"@bob {mention('alice')}... @bob x@carol <code>@dave</code>"


def test_a_resolver_is_not_asked_without_candidates():
    def resolve(names: list[str]) -> set[str]:
        raise AssertionError(names)

    assert render("no mentions, bob@example.com, `@x`", resolve).mentions == []


def test_usernames_longer_than_django_allows_are_not_candidates():
    long_name = "a" * 150
    too_long = "a" * 151
    readers = frozenset({long_name, too_long})
    assert mentions("@" + long_name, readers) == [long_name]
    assert mentions("@" + too_long, readers) == []


@pytest.mark.parametrize(
    "body",
    [
        "*" * 4000,
        "_" * 4000,
        "*a" * 2000,
        "**a" * 1333,
        "*_" * 2000,
        ">" * 4000,
        "> " * 2000,
        "`" * 4000,
        "".join("`" * n + " " for n in range(1, 89)),
        "[" * 4000,
        "![" * 2000,
        "[](" * 1333,
        "<" * 4000,
        "@" * 4000,
        "@a " * 1333,
        "a://" * 1000,
        "http://a.b " * 363,
        "```\n" * 1000,
        "\\" * 4000,
        "a\n" * 2000,
    ],
)
def test_pathological_bodies_keep_their_text(body):
    result = render(body, READERS)
    shown = re.sub(r"<[^>]+>", "", result.html)
    shown = shown.replace("&gt;", ">").replace("&lt;", "<").replace("&amp;", "&")
    kept = set("[]<!(@a:/.")
    assert [c for c in body if c in kept] == [c for c in shown if c in kept]


def test_render_imports_neither_django_nor_twisted():
    code = (
        "import sys, chat.render, chat.emoji_check; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'twisted')))"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    ).stdout
    assert out.strip() == "[]"


# -- the plain-line shortcut -------------------------------------------------------------

# Mostly what the shortcut's test looks at, plus letters and every other kind of character.
_LINE = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("ab  -+#=|.,;?!'\"()[]{}$%^/1\t\xa0\u2028\u200b&<>*_`\\@:~")),
        st.characters(codec="utf-8"),
    ),
    min_size=1,
    max_size=40,
)


@hypothesis_settings(max_examples=3000, deadline=None)
@given(_LINE)
@example('don\'t say "no"')
@example("1. not a list")
@example("# not a heading")
@example("a | b")
def test_a_plain_line_renders_as_the_full_pipeline_renders_it(body):
    """The shortcut answers only where the whole pipeline would give the same answer."""
    if render_module._is_plain(body):
        assert render_module._render_markdown(body, READERS) == Rendered(body, [])


def test_the_shortcut_takes_ordinary_lines_and_leaves_the_rest():
    plain = render_module._is_plain
    assert plain("see you at 5, ok? (bring snacks)")
    assert plain('don\'t say "no"')
    for body in ("**b**", "@bob", "http://x", "a\nb", " lead", "a & b", "<b>", "a\u200b"):
        assert not plain(body), body
