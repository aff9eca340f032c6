"""IRCv3 message tags: the parser and the serializer agree (a property test), and the
framing helpers of chat/irc/tags.py hold their bounds."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chat.irc.channels import irc_time
from chat.irc.tags import (
    LineTooLong,
    check_length,
    escape_value,
    format_tags,
    parse_line,
    parse_tags,
    split_text,
    unescape_value,
)

keys = st.from_regex(r"\+?[A-Za-z][A-Za-z0-9\-/.]{0,20}", fullmatch=True)
values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@given(st.dictionaries(keys, values, max_size=8))
def test_format_then_parse_is_identity(tags):
    assert parse_tags(format_tags(tags)) == tags


@given(values)
def test_escaped_values_hold_no_separator(value):
    escaped = escape_value(value)
    assert not {";", " ", "\r", "\n"} & set(escaped)
    assert unescape_value(escaped) == value


@given(st.text(max_size=300))
def test_parse_tags_never_fails(text):
    parse_tags(text)


def test_spec_examples():
    assert parse_tags("aaa=bbb;ccc;example.com/ddd=eee") == {
        "aaa": "bbb",
        "ccc": "",
        "example.com/ddd": "eee",
    }
    assert parse_tags(r"a=\:\s\\\r\n\x;b=end\\") == {"a": "; \\\r\nx", "b": "end\\"}
    assert parse_tags("a=1;a=2") == {"a": "2"}
    assert parse_tags(r"a=trailing\\") == {"a": "trailing\\"}
    assert parse_tags("a=lone\\") == {"a": "lone"}


def test_parse_line():
    assert parse_line("@label=x;+draft/reply=1 :nick PRIVMSG #a :hi there") == (
        {"label": "x", "+draft/reply": "1"},
        "nick",
        "PRIVMSG",
        ["#a", "hi there"],
    )
    assert parse_line("privmsg #a b") == ({}, "", "PRIVMSG", ["#a", "b"])
    for junk in ("", "@only-tags", ":prefix", ":", "@a=b :p"):
        with pytest.raises(ValueError):
            parse_line(junk)


@given(st.text(max_size=600))
def test_parse_line_fails_only_with_valueerror(text):
    with contextlib.suppress(ValueError):
        parse_line(text)


def test_check_length():
    check_length(b"x" * 510)
    with pytest.raises(LineTooLong):
        check_length(b"x" * 511)
    check_length(b"@" + b"t" * 8189 + b" " + b"x" * 510)
    with pytest.raises(LineTooLong):
        check_length(b"@" + b"t" * 8190 + b" x")
    with pytest.raises(LineTooLong):
        check_length(b"@" + b"t" * 9000)


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=3000))
def test_split_text_lines_fit_and_keep_the_text(text):
    lines = split_text(text)
    assert all(
        len(line.encode()) <= 400 and "\n" not in line and "\r" not in line for line in lines
    )
    if "\r" not in text and "\n" not in text and text:
        assert "".join(lines) == text


def test_irc_time():
    assert irc_time("2026-11-21T22:00:00.123456+00:00") == "2026-11-21T22:00:00.123Z"
    assert irc_time("2026-11-21T22:00:00+00:00") == "2026-11-21T22:00:00.000Z"
    assert irc_time(None) is None and irc_time("bad") is None
