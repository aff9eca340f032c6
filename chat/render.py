"""The server's rendering of a message body: ``html`` and ``mentions`` of PROTOCOL.md's room log.

Done once, when a message is appended, so every reader gets the same bytes. It imports
neither Django nor Twisted: the live side, the pages and the tests all call it.

The pipeline is markdown-it-py (a CommonMark parser) with only the subset PROTOCOL.md
names switched on, a pass over its token stream for links and mentions, and nh3 as a
second, independent line: whatever the parser emits, nh3 keeps only the tags and
attributes below, so a parser bug cannot reach a browser as markup.

Rules a reader of ``html`` can rely on:

* Markdown: ``*em*``/``_em_``, ``**strong**``, ```code```, fenced code blocks (the info
  string is dropped), ``>`` block quotes (nested at most ``MAX_QUOTE_DEPTH`` deep; deeper
  ``>`` stay text), backslash escapes, and every newline is a ``<br>``. Nothing else:
  headings, lists, tables, rules, images, ``[text](url)`` and ``<url>`` stay literal text.
* Raw HTML and entities are text: ``<b>`` shows as ``<b>``, ``&amp;`` shows as ``&amp;``,
  so what the user typed is what everyone sees.
* Links only from ``http://``, ``https://`` and ``mailto:`` URLs written out in the body
  (no bare ``example.com``, no bare emails), shown exactly as typed, with
  ``rel="nofollow noopener noreferrer"`` and ``target="_blank"``; a URL the sanitizer
  cannot parse (``http://²``) stays text rather than becoming an ``<a>`` without href.
* A body that is one paragraph renders without ``<p>``, as in PROTOCOL.md's example;
  longer ones are ``<p>``, ``<pre>`` and ``<blockquote>`` blocks.

Mentions (PROTOCOL.md: "the longest username that matches, bounded by a character that
cannot be in a username"). Username characters are those of Django's default validator,
``[\\w.@+-]`` (Unicode letters and digits, ``_``, ``.``, ``@``, ``+``, ``-``). A mention is:

* an ``@`` at the start of a text or after a character that cannot be in a username,
  so ``bob@example.com`` and ``x@bob`` mention nobody;
* then the whole run of username characters after it, which must be a username that may
  read the room; except that trailing dots may be left out, so ``thanks @alice.`` and
  ``@alice...`` mention ``alice`` while ``@alice.smith`` mentions only a user called
  ``alice.smith``. Where a username ending in dots exists too, the longest one wins;
* matched exactly, case included, as Django compares usernames: ``@Alice`` is not
  ``alice`` (signup already refuses names that differ from another only in case);
* never inside a code span, a code block or a link, and never split across Markdown
  markup: ``@bo**b**`` mentions nobody, ``**@bob**`` mentions bob.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from html import escape as html_escape

import nh3
from linkify_it import LinkifyIt
from markdown_it import MarkdownIt
from markdown_it.rules_block import blockquote as _blockquote_rule
from markdown_it.rules_block.state_block import StateBlock
from markdown_it.rules_inline.state_inline import StateInline
from markdown_it.token import Token

__all__ = ["MAX_QUOTE_DEPTH", "Mentionable", "Rendered", "render", "sanitize"]

# Either the set of usernames who may read the room, or a function given the candidate
# names of one body (each once, in order of appearance) that answers with those among
# them who exist and may read it: one query per message, whatever the room's size.
Mentionable = Callable[[list[str]], AbstractSet[str]] | AbstractSet[str]

MAX_QUOTE_DEPTH = 8
# Django's AbstractUser.username max_length: no candidate longer than this can match.
_MAX_USERNAME = 150
_LINK_SCHEMES = frozenset({"http", "https", "mailto"})
_LINK_REL = "nofollow noopener noreferrer"

_SCHEME_WINDOW = 16
_SCHEME_BEFORE = re.compile(r"(?:^|[^a-z0-9.+-])([a-z][a-z0-9.+-]*)$", re.IGNORECASE)
_SURROGATE = re.compile("[\ud800-\udfff]")
_USERNAME_CHAR = re.compile(r"[\w.@+-]")
_USERNAME_RUN = re.compile(r"[\w.@+-]+")
_USERNAME = re.compile(rf"[\w.@+-]{{1,{_MAX_USERNAME}}}")
# Browsers skip leading whitespace and controls before a scheme. markdown-it has already
# %-encoded those by now, but the check does not rely on it.
_SCHEME = re.compile(r"^[\x00-\x20]*([a-zA-Z][a-zA-Z0-9+.-]*):")


def _username_only(tag: str, attribute: str, value: str) -> str | None:
    if tag == "span" and attribute == "data-user":
        return value if _USERNAME.fullmatch(value) else None
    return value


# Exactly what the renderer can produce; rel and target are set by nh3 on every link.
_CLEANER = nh3.Cleaner(
    tags={"p", "br", "em", "strong", "code", "pre", "blockquote", "a", "span"},
    attributes={"a": {"href"}, "span": {"data-user"}},
    allowed_classes={"span": {"mention"}},
    set_tag_attribute_values={"a": {"target": "_blank"}},
    link_rel=_LINK_REL,
    url_schemes=set(_LINK_SCHEMES),
    url_relative="deny",
    strip_comments=True,
    attribute_filter=_username_only,
)


@dataclass(frozen=True, slots=True)
class Rendered:
    html: str
    mentions: list[str]


def render(body: str, mentionable: Mentionable) -> Rendered:
    """``html`` and ``mentions`` for ``body``, as PROTOCOL.md's room log carries them.

    ``mentionable`` is the set of usernames who may read the room, or a function that
    is given the candidate names (once, only if there are any) and answers with those
    that exist and may read it. ``mentions`` lists each mentioned name once, in order.
    """
    if _is_plain(body):
        return Rendered(html=body, mentions=[])
    return _render_markdown(body, mentionable)


def _render_markdown(body: str, mentionable: Mentionable) -> Rendered:
    """The whole pipeline: parse, links, mentions, render, sanitize."""
    env: dict = {}
    # JSON may carry lone surrogates ("\ud800"), which no UTF-8 output can hold; they get
    # the same U+FFFD that markdown-it gives a NUL.
    tokens = _MD.parse(_SURROGATE.sub("\ufffd", body), env)
    for token in tokens:
        if token.type == "fence":
            # A language class would need code[class] in the allowlist; nothing uses it.
            token.info = ""
        elif token.type == "inline" and token.children:
            token.children = _drop_dead_links(token.children)
    mentions = _mark_mentions(tokens, mentionable)
    if [token.type for token in tokens] == ["paragraph_open", "inline", "paragraph_close"]:
        # One paragraph renders bare, as PROTOCOL.md's example shows: most messages are
        # one line, and a <p> around each would only add margins for clients to undo.
        tokens[0].hidden = tokens[2].hidden = True
    html = _MD.renderer.render(tokens, _MD.options, env)
    return Rendered(html=sanitize(html).strip(), mentions=mentions)


# Characters that some enabled rule acts on (emphasis, code, escapes, quotes, fences,
# autolinks, mentions) or that an HTML serializer writes as an entity.
_ACTIVE = frozenset("*_`\\>@:~&<[]")


def _is_plain(body: str) -> bool:
    """Whether ``body`` renders as itself: one line of printable text that no rule acts on
    and no serializer escapes, with no space at either end (a paragraph is trimmed).

    Most messages are such a line, and parsing one costs a tenth of a millisecond or more
    of the store's thread for nothing (tests/unit/test_render.py checks, by property,
    that this answer is the full pipeline's).
    """
    return body.isprintable() and body == body.strip() and _ACTIVE.isdisjoint(body)


def sanitize(html: str) -> str:
    """``html`` with only what ``render`` can produce: its second line of defence."""
    return _CLEANER.clean(html)


def _link_allowed(url: str) -> bool:
    match = _SCHEME.match(url)
    return match is not None and match.group(1).lower() in _LINK_SCHEMES


def _drop_dead_links(children: list[Token]) -> list[Token]:
    # nh3 parses each href as browsers do and drops one it cannot (a host such as
    # "xn--pba", which "http://²" becomes), which would leave an <a> going nowhere. Asking
    # nh3 itself about each href keeps the two in step: such a link stays plain text.
    kept: list[Token] = []
    unlinked = 0
    for token in children:
        if token.type == "link_open":
            if unlinked or not _sanitizer_keeps(token.attrs.get("href", "")):
                unlinked += 1
                continue
        elif token.type == "link_close" and unlinked:
            unlinked -= 1
            continue
        kept.append(token)
    return kept


def _sanitizer_keeps(href: object) -> bool:
    probe = _CLEANER.clean(f'<a href="{html_escape(str(href))}"></a>')
    return " href=" in probe


def _guarded_blockquote(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    # markdown-it nests one parser call per ">", and past maxNesting it drops the rest of
    # the body without a word. Refusing to open a deeper quote keeps those ">" as text.
    if state.level >= MAX_QUOTE_DEPTH:
        return False
    return _blockquote_rule(state, start, end, silent)


def _inline_linkify(state: StateInline, silent: bool) -> bool:
    # markdown-it-py's own rule, except that it searched all the pending text for the
    # scheme before each "://", which is quadratic in a body of many "a://". A scheme is
    # the run of scheme characters right before it, so the last few characters suffice:
    # a run reaching the start of that window is longer than any allowed scheme.
    pos = state.pos
    if state.linkLevel > 0 or state.src[pos : pos + 3] != "://":
        return False
    match = _SCHEME_BEFORE.search(state.pending[-_SCHEME_WINDOW:])
    if match is None or (match.start(1) == 0 and len(state.pending) > _SCHEME_WINDOW):
        return False
    proto = match.group(1)
    link = state.md.linkify.match_at_start(state.src[pos - len(proto) :])
    if not link:
        return False
    url = link.url.rstrip("*")  # a "*" after a URL closes emphasis rather than the URL
    href = state.md.normalizeLink(url)
    if not state.md.validateLink(href):
        return False
    if not silent:
        state.pending = state.pending[: -len(proto)]
        opening = state.push("link_open", "a", 1)
        opening.attrs = {"href": href}
        opening.markup, opening.info = "linkify", "auto"
        state.push("text", "", 0).content = state.md.normalizeLinkText(url)
        closing = state.push("link_close", "a", -1)
        closing.markup, closing.info = "linkify", "auto"
    state.pos += len(url) - len(proto)
    return True


def _build() -> MarkdownIt:
    md = MarkdownIt(
        "zero",
        {"html": False, "linkify": True, "breaks": True, "typographer": False},
    )
    md.enable(["emphasis", "backticks", "escape", "newline", "fence", "blockquote", "linkify"])
    md.block.ruler.at(
        "blockquote",
        _guarded_blockquote,
        {"alt": ["paragraph", "reference", "blockquote", "list"]},
    )
    md.inline.ruler.at("linkify", _inline_linkify)
    linkify = LinkifyIt(options={"fuzzy_link": False, "fuzzy_email": False, "fuzzy_ip": False})
    linkify.add("ftp:", None)
    linkify.add("//", None)
    md.linkify = linkify
    md.validateLink = _link_allowed  # type: ignore[method-assign]
    # Show the URL as typed: decoding punycode or %-escapes in the text would let a link
    # read differently from where it goes.
    md.normalizeLinkText = lambda link: link  # type: ignore[method-assign]
    return md


_MD = _build()


def _visible(token: Token) -> str:
    if token.type in ("text", "code_inline"):
        return token.content
    if token.type in ("softbreak", "hardbreak"):
        return "\n"
    return ""


@dataclass(slots=True)
class _Candidate:
    child: int  # index of the text token among its inline token's children
    start: int  # index of the "@" in that token's content
    names: list[str]  # longest first


def _scan(children: list[Token]) -> list[_Candidate]:
    # The character after a text token is the first visible one of the tokens after it.
    following = [""] * len(children)
    after = ""
    for index in range(len(children) - 1, -1, -1):
        following[index] = after
        after = (_visible(children[index]) + after)[:1]

    found: list[_Candidate] = []
    before = ""
    in_link = 0
    for index, token in enumerate(children):
        if token.type == "link_open":
            in_link += 1
        elif token.type == "link_close":
            in_link -= 1
        elif token.type == "text" and not in_link:
            found.extend(_scan_text(index, token.content, before, following[index]))
        visible = _visible(token)
        if visible:
            before = visible[-1]
    return found


def _scan_text(child: int, text: str, before: str, after: str) -> Iterable[_Candidate]:
    at = text.find("@")
    while at != -1:
        previous = text[at - 1] if at else before
        run = _USERNAME_RUN.match(text, at + 1)
        if run is None:
            at = text.find("@", at + 1)
            continue
        if not _USERNAME_CHAR.match(previous) and not (
            run.end() == len(text) and _USERNAME_CHAR.match(after)
        ):
            name = run.group()
            names = [name]
            while name.endswith("."):
                name = name[:-1]
                names.append(name)
            names = [n for n in names if n and len(n) <= _MAX_USERNAME]
            if names:
                yield _Candidate(child, at, names)
        # Every "@" inside the run follows a username character, so none can start one.
        at = text.find("@", run.end())


def _mark_mentions(tokens: list[Token], mentionable: Mentionable) -> list[str]:
    scanned = [
        (token, candidates)
        for token in tokens
        if token.type == "inline" and token.children
        if (candidates := _scan(token.children))
    ]
    if not scanned:
        return []
    wanted = list(dict.fromkeys(n for _, cands in scanned for c in cands for n in c.names))
    if isinstance(mentionable, AbstractSet):
        readers: AbstractSet[str] = {name for name in wanted if name in mentionable}
    else:
        readers = mentionable(wanted)

    mentions: dict[str, None] = {}
    for inline, candidates in scanned:
        chosen: dict[int, list[tuple[int, str]]] = {}
        for candidate in candidates:
            name = next((n for n in candidate.names if n in readers), None)
            if name is not None:
                chosen.setdefault(candidate.child, []).append((candidate.start, name))
                mentions.setdefault(name)
        if chosen:
            inline.children = _wrap(inline.children or [], chosen)
    return list(mentions)


def _wrap(children: list[Token], chosen: dict[int, list[tuple[int, str]]]) -> list[Token]:
    wrapped: list[Token] = []
    for index, token in enumerate(children):
        spans = chosen.get(index)
        if spans is None:
            wrapped.append(token)
            continue
        text, done = token.content, 0
        for start, name in spans:
            if start > done:
                wrapped.append(_text(text[done:start], token.level))
            opening = Token("mention_open", "span", 1, level=token.level)
            opening.attrs = {"class": "mention", "data-user": name}
            wrapped += [
                opening,
                _text("@" + name, token.level + 1),
                Token("mention_close", "span", -1, level=token.level),
            ]
            done = start + 1 + len(name)
        if done < len(text):
            wrapped.append(_text(text[done:], token.level))
    return wrapped


def _text(content: str, level: int) -> Token:
    return Token("text", "", 0, content=content, level=level)
