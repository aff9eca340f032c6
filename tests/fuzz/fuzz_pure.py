"""Fuzz targets over the pure parsers: client frames and their fields, request heads,
Origin and CSRF values, the inbox poll's query, and Markdown rendering with mentions.

What each adds to the property tests in tests/unit (which these do not repeat):
frames are checked end to end (``parse_frame`` -> ``request_from_frame`` -> the log's
``check_stored_send`` and the JSON answer); heads must be a fixpoint once canonical;
origins must round-trip; rendering must agree between its two ``mentionable`` forms.
"""

from __future__ import annotations

import json
import string
from types import SimpleNamespace

from fuzz_registry import target
from hypothesis import strategies as st

from chat.live.auth import csrf_token_valid, origin_allowed, parse_origin, server_origin
from chat.live.events import encode
from chat.live.records import ErrorCode, SendRequest, UserInfo
from chat.live.transport import Refusal
from chat.live.validation import check_client_id, check_stored_send, request_from_frame
from chat.live.wire import FrameError, parse_frame
from project.head import HeadError, HeadReader

USER = UserInfo(7, "alice")
MAX_CHARS = 100

# --- client frames (every transport's JSON) --------------------------------------------

any_text = st.text(st.characters(exclude_categories=()), max_size=40)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2**63 - 1, 2**63, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
KINDS = ["send", "edit", "delete", "react", "read", "typing", "SEND", "", "ack", "hello"]
EMOJI = ["👍", "❤️", "🇫🇷", "👨‍👩‍👧", "1️⃣", "x", "👍👍", "\u200d", "🏳️‍🌈"]
upload_ids = st.from_regex(r"[A-Za-z0-9_-]{1,33}", fullmatch=True)
frames = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(KINDS) | values,
        "body": any_text | st.sampled_from([" ", "x" * 100, "x" * 101, "\x00", "\ud800"]) | values,
        "client_id": st.text(max_size=66) | values,
        "target": values,
        "reply_to": values,
        "seq": values,
        "emoji": st.sampled_from(EMOJI) | values,
        "op": st.sampled_from(["add", "remove", "Add"]) | values,
        "attachments": st.lists(upload_ids, max_size=11) | values,
    },
)


@st.composite
def frame_texts(draw) -> str | bytes:
    """A frame's JSON as a client could write it: exact, truncated, spliced or raw."""
    frame = draw(frames)
    text = json.dumps(frame, ensure_ascii=draw(st.booleans()), allow_nan=True)
    how = draw(st.sampled_from(["exact", "exact", "cut", "splice", "raw", "bytes", "nest"]))
    if how == "cut":
        text = text[: draw(st.integers(0, len(text)))]
    elif how == "splice":  # duplicate keys, stray bytes
        at = draw(st.integers(0, len(text)))
        text = (
            text[:at]
            + draw(st.sampled_from(['"type":"send",', ",", "}", "{", "\\", '"']))
            + text[at:]
        )
    elif how == "raw":
        return draw(st.text(st.characters(exclude_categories=()), max_size=60))
    elif how == "bytes":
        return (
            draw(st.binary(max_size=60))
            if draw(st.booleans())
            else text.encode("utf-8", "surrogatepass")
        )
    elif how == "nest":
        depth = draw(st.integers(1, 40))
        text = '{"type":"send","body":"x","a":' + "[" * depth + "]" * depth + "}"
    return text


@target("client_frames", frame_texts(), ci_examples=600)
def check_client_frame(data: str | bytes) -> None:
    """A client frame is refused with a text, or becomes a write the log will store."""
    try:
        frame = parse_frame(data, max_bytes=65536)
    except FrameError as error:
        assert str(error)
        return
    assert isinstance(frame, dict)
    result = request_from_frame("lobby", USER, frame, MAX_CHARS)
    if isinstance(result, SendRequest):
        # The transports' check and the log's must agree: a write they took and the log
        # then refused would be a failed batch (or a 500), not a clean refusal.
        assert check_stored_send(result) is None, result
        encode({"type": "ack", "client_id": result.client_id, "seq": 1})
        assert len(result.body) <= MAX_CHARS
    else:
        code, detail = result
        assert isinstance(code, ErrorCode) and isinstance(detail, str) and detail
        body = {"type": "error", "code": str(code), "detail": detail}
        client_id = frame.get("client_id")
        if check_client_id(client_id) is None and client_id is not None:
            body["client_id"] = client_id
        json.loads(encode(body))  # the answer can always be written


# --- request heads (project/head.py) ---------------------------------------------------

tokens = st.sampled_from([b"GET", b"POST", b"OPTIONS", b"HEAD", b"get", b"X"])
targets = st.sampled_from([b"/", b"/ws/rooms/lobby/", b"*", b"http://a/x", b"https://[::1]:8/"])
hosts = st.sampled_from([b"127.0.0.1:8000", b"localhost", b"[::1]", b"a..b", b"x:99999", b""])
header_names = st.sampled_from(
    [
        b"Host",
        b"host",
        b"Content-Length",
        b"Transfer-Encoding",
        b"Upgrade",
        b"Connection",
        b"X-A",
        b"Origin",
    ]
)
header_values = st.sampled_from(
    [
        b"chunked",
        b"Chunked",
        b"identity",
        b"chunked, chunked",
        b"12",
        b"012",
        b"1, 1",
        b"",
        b"websocket",
        b" x ",
        b"\xff",
        b"127.0.0.1",
    ]
) | st.binary(max_size=12)
header_line = st.one_of(
    st.tuples(header_names, header_values).map(lambda nv: nv[0] + b":" + nv[1]),
    st.binary(max_size=20),
)


@st.composite
def heads(draw) -> list[bytes]:
    if draw(st.integers(0, 9)) == 0:
        line = draw(st.binary(max_size=40))
    else:
        parts = [
            draw(tokens),
            draw(targets | st.binary(min_size=1, max_size=12)),
            draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"http/1.1"])),
        ]
        line = b" ".join(parts)
    lines = [line]
    if draw(st.booleans()):
        lines.append(b"Host: " + draw(hosts))
    lines += draw(st.lists(header_line, max_size=6))
    return lines


def read(lines: list[bytes]):
    reader = HeadReader()
    for line in lines:
        head = reader.feed(line)
        assert head is None  # the head ends only at its empty line
    return reader.feed(b"")


@target("request_heads", heads(), ci_examples=800)
def check_request_head(lines: list[bytes]) -> None:
    """A head is refused with a 4xx, or made canonical: and a canonical head reads back
    as itself (what Twisted parses is what was checked)."""
    lines = [line for line in lines if line] or [b""]
    try:
        head = read(lines)
    except HeadError as error:
        assert error.status in (400, 414, 431), error.status
        return
    canonical = head.lines()
    again = read(canonical[:1] + canonical[1:])
    assert again.lines() == canonical, (lines, canonical)
    names = [name.lower() for name, _ in head.headers]
    assert names.count(b"host") <= 1
    assert not (b"transfer-encoding" in names and b"content-length" in names)


# --- Origin, Host and CSRF values (chat/live/auth.py) -------------------------------------

origin_text = st.one_of(
    st.text(max_size=30),
    st.builds(
        "{}://{}{}".format,
        st.sampled_from(["http", "https", "HTTP", "ws", "h"]),
        st.sampled_from(
            [
                "a.com",
                "[::1]",
                "[::ffff:1.2.3.4]",
                "A.Com",
                "x-",
                "[1::2::3]",
                "127.0.0.1",
                "*.a.com",
                "",
            ]
        )
        | st.text(max_size=8),
        st.sampled_from(["", ":80", ":443", ":0", ":65536", ":8000", ":", "/", ":٣"]),
    ),
)


@target(
    "origins",
    st.tuples(
        origin_text,
        origin_text,
        st.lists(origin_text, max_size=3),
        st.text(max_size=70),
        st.text(max_size=70),
    ),
    ci_examples=800,
)
def check_origin(values: tuple) -> None:
    """Origin parsing never fails, is canonical, and the cross-site check is symmetric."""
    origin, other, trusted, cookie, token = values
    parsed = parse_origin(origin)
    if parsed is not None:
        scheme, host, port = parsed
        assert scheme in ("http", "https") and 1 <= port <= 65535
        assert parse_origin(f"{scheme}://{host}:{port}") == parsed
        assert origin_allowed(origin, parsed)
    own = parse_origin(other)
    allowed = origin_allowed(origin, own, trusted)
    assert allowed == origin_allowed(f" {origin}\t", own, trusted)
    if allowed and parsed is None:
        raise AssertionError(f"{origin!r} is no origin yet was allowed")
    for host in (origin, other):
        found = server_origin("http", host, ["localhost", ".a.com", "127.0.0.1", "[::1]"])
        assert found is None or found[0] == "http"
    assert csrf_token_valid(cookie, token) in (True, False)
    if (
        cookie == token
        and len(cookie) == 32
        and set(cookie) <= set(string.ascii_letters + string.digits)
    ):
        assert csrf_token_valid(cookie, token)


# --- the inbox poll's query (chat/live/inbox_poll.py) -----------------------------------

query_values = st.one_of(
    st.binary(max_size=25), st.sampled_from([b"0", b"60", b"61", b"9" * 20, b"\xd9\xa3"])
)


@target(
    "inbox_poll_query",
    st.dictionaries(
        st.sampled_from([b"timeout", b"session", b"since"]),
        st.lists(query_values, max_size=3),
        max_size=3,
    ),
    ci_examples=400,
)
def check_inbox_poll_query(args: dict) -> None:
    """``/poll/me/?timeout=&session=``: a bounded timeout and a token, or a 400."""
    from chat.live.inbox_poll import MAX_TIMEOUT, InboxPoll

    poll = InboxPoll.__new__(InboxPoll)
    poll.request = SimpleNamespace(args=args)
    try:
        poll.parse()
    except Refusal as refusal:
        assert refusal.code == ErrorCode.BAD_REQUEST, refusal.code
        return
    assert 0 <= poll.timeout <= MAX_TIMEOUT
    assert poll.token is None or (len(poll.token) == 22 and poll.token.isascii())
