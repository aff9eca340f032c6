"""The WebSocket opening handshake Parley answers itself (RFC 6455 4.2)."""

from __future__ import annotations

import pytest
from twisted.web.test.requesthelper import DummyRequest

from chat.live.websocket import accept_token, upgrade_key

GOOD = {
    b"upgrade": b"websocket",
    b"connection": b"keep-alive, Upgrade",
    b"sec-websocket-version": b"13",
    b"sec-websocket-key": b"dGhlIHNhbXBsZSBub25jZQ==",
}


def request_with(headers: dict[bytes, bytes]) -> DummyRequest:
    request = DummyRequest([b"rooms", b"lobby", b""])
    for name, value in headers.items():
        request.requestHeaders.setRawHeaders(name, [value])
    return request


def test_the_accept_token_is_rfc_6455s_example():
    assert accept_token("dGhlIHNhbXBsZSBub25jZQ==") == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_valid_handshake_gives_its_key():
    assert upgrade_key(request_with(GOOD)) == ("dGhlIHNhbXBsZSBub25jZQ==", None)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"upgrade", None),
        (b"upgrade", b"h2c"),
        (b"connection", b"keep-alive"),
        (b"connection", None),
        (b"sec-websocket-version", b"8"),
        (b"sec-websocket-version", None),
        (b"sec-websocket-key", None),
        (b"sec-websocket-key", b"not base64!"),
        (b"sec-websocket-key", b"c2hvcnQ="),  # decodes to 5 bytes, not 16
    ],
)
def test_a_broken_handshake_is_refused_with_a_reason(name, value):
    headers = dict(GOOD)
    if value is None:
        del headers[name]
    else:
        headers[name] = value
    key, problem = upgrade_key(request_with(headers))
    assert key == "" and problem
