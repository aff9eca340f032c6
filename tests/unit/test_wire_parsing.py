"""The parsers of wire input (chat/live/wire.py): a value or a clean refusal, whatever comes.

Numbers are ASCII digits only (``"¹".isdigit()`` is true and ``int("¹")`` fails: that was
a 500 on ``Last-Event-ID``); a frame nested 100k deep is a refusal, not a RecursionError
that dropped the WebSocket and was a 500 on long-poll.
"""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from chat.api import query_int
from chat.live.wire import MAX_FRAME_DEPTH, MAX_INT, FrameError, parse_frame, parse_int

# Each is a digit to str.isdigit() or int(), not an ASCII one (escaped: they look like one).
NOT_ASCII_DIGITS = ["¹", "²", "٣", "१", "\uff15", "\U0001d7d5", "Ⅻ", "½", "7¹"]
NOT_PLAIN_INTEGERS = ["", " 7", "7 ", "+7", "-7", "7_0", "0x10", "1e3", "1.0", "7\n", "\t7"]


@pytest.mark.parametrize("raw", NOT_ASCII_DIGITS + NOT_PLAIN_INTEGERS)
def test_anything_but_ascii_digits_is_refused(raw):
    with pytest.raises(ValueError, match="since must be an integer"):
        parse_int(raw, "since")
    with pytest.raises(ValueError):
        parse_int(raw.encode(), "since")
    with pytest.raises(ValueError):
        query_int(raw, "before")


def test_bounds_are_inclusive_and_64_bit():
    assert parse_int("0") == 0
    assert parse_int(b"0042") == 42
    assert parse_int(str(MAX_INT)) == MAX_INT
    for too_big in (str(MAX_INT + 1), "9" * 19, "1" + "0" * 30):
        with pytest.raises(ValueError):
            parse_int(too_big)
    assert parse_int("60", maximum=60) == 60
    with pytest.raises(ValueError):
        parse_int("61", maximum=60)
    assert query_int("0", "limit") == 0
    assert query_int(str(MAX_INT), "before") == MAX_INT
    assert query_int(None, "limit") is None


@given(st.text() | st.binary())
@example("¹")
@example(b"\xc2\xb9")
def test_parse_int_returns_an_int_in_range_or_raises_value_error(raw):
    try:
        value = parse_int(raw)
    except ValueError:
        text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        assert not (text and set(text) <= set(string.digits) and int(text) <= MAX_INT)
    else:
        assert type(value) is int and 0 <= value <= MAX_INT
        assert value == int(raw)


@given(st.integers(min_value=0, max_value=MAX_INT))
def test_every_seq_round_trips(value):
    assert parse_int(str(value)) == value
    assert parse_int(str(value).encode()) == value


# --------------------------------------------------------------------------- frames


def test_a_send_frame_is_parsed_from_text_or_utf8_bytes():
    frame = {"type": "send", "body": "héllo 😀", "client_id": "c-1"}
    assert parse_frame(json.dumps(frame)) == frame
    assert parse_frame(json.dumps(frame, ensure_ascii=False).encode()) == frame


def test_escapes_are_json_but_what_they_mean_is_left_to_validation():
    # A lone surrogate is valid JSON: the frame parses, and validation refuses the field.
    assert parse_frame('{"body": "\\ud800"}') == {"body": "\ud800"}
    assert parse_frame('{"body": "\\u0000"}') == {"body": "\x00"}


@pytest.mark.parametrize(
    "data",
    [
        "[" * 100_000 + "]" * 100_000,  # the probe: RecursionError inside json.loads
        '{"a": ' + "[" * 100_000,
        '{"type": "send", "body": "x", "extra": ' + "[" * 50 + "]" * 50 + "}",
        '{"a": ' + '{"b": ' * (MAX_FRAME_DEPTH) + "1" + "}" * (MAX_FRAME_DEPTH + 1),
    ],
    ids=["array-100k", "unclosed-100k", "object-51-deep", "just-over-the-bound"],
)
def test_deep_nesting_is_refused(data):
    with pytest.raises(FrameError):
        parse_frame(data)


def test_nesting_up_to_the_bound_and_brackets_in_strings_are_fine():
    deep = '{"a": ' * (MAX_FRAME_DEPTH - 1) + "[]" + "}" * (MAX_FRAME_DEPTH - 1)
    assert isinstance(parse_frame(deep), dict)
    brackets = {"type": "send", "body": "[" * 5000 + "{" * 5000}
    assert parse_frame(json.dumps(brackets)) == brackets
    wide = {"type": "send", "body": "x", "list": [[] for _ in range(5000)]}
    assert parse_frame(json.dumps(wide)) == wide


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"   ",
        b"{not json",
        b"\xff\xfe{}",  # not UTF-8
        b'{"body": "\xed\xa0\x80"}',  # a surrogate encoded in UTF-8 bytes: not UTF-8
        "[1, 2]",
        '"send"',
        "null",
        "5",
        '{"n": NaN}',
        '{"n": -Infinity}',
        '{"n": ' + "9" * 5000 + "}",  # over Python's int-from-string digit limit
    ],
)
def test_what_is_not_a_json_object_is_refused(data):
    with pytest.raises(FrameError):
        parse_frame(data)


def test_size_bound():
    with pytest.raises(FrameError, match="over 10 bytes"):
        parse_frame(b'{"body": "long enough"}', max_bytes=10)
    assert parse_frame(b"{}", max_bytes=2) == {}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=30,
)


@given(st.text() | st.binary())
@example("[" * 5000)
@example("{" * 5000)
@example('{"a":' * 5000)
def test_parse_frame_returns_an_object_or_raises_frame_error(data):
    try:
        frame = parse_frame(data)
    except FrameError as error:
        assert str(error)
    else:
        assert isinstance(frame, dict)


def depth(value) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@given(st.dictionaries(st.text(), json_values))
def test_every_json_object_parses_back_unless_too_deep(frame):
    for data in (json.dumps(frame), json.dumps(frame, ensure_ascii=False).encode()):
        if depth(frame) <= MAX_FRAME_DEPTH:
            assert parse_frame(data) == frame
        else:
            with pytest.raises(FrameError):
                parse_frame(data)


@given(st.integers(min_value=1, max_value=3000))
def test_any_depth_is_a_value_or_a_refusal(depth):
    data = '{"a": ' + "[" * depth + "]" * depth + "}"
    if depth < MAX_FRAME_DEPTH:
        assert parse_frame(data) == json.loads(data)
    else:
        with pytest.raises(FrameError):
            parse_frame(data)
