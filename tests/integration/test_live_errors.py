"""Every error of PROTOCOL.md from its cause, and whether the connection survives it.

Most tests run on the session's ``live_server`` (default limits: 4000 chars, 64 KiB frames,
20 sends per 10 s per user), each with its own user so rate limits never interfere. Frame
size, request size and rate-limit tests get a module server with small limits.
"""

from __future__ import annotations

import json
import secrets
from types import SimpleNamespace

import httpx
import pytest
from live_clients import (
    PollClient,
    RawWebSocket,
    SSEClient,
    WSClient,
    browser_origin,
    history,
    provision,
    run,
)
from parley_testing import ServerProcess
from websockets.exceptions import InvalidStatus

PASSWORD = "pw-errors-9157"
TAG = secrets.token_hex(3)  # the session server is shared: unique names per run
PUBLIC, PRIVATE, ARCHIVED = f"err-{TAG}", f"err-private-{TAG}", f"err-archived-{TAG}"
UNKNOWN = f"no-such-room-{TAG}"
MAX_FRAME = 2048


def user(name: str) -> str:
    return f"e{TAG}-{name}"


BAD_FRAMES = {
    "not-json": ("{not json", None),
    "json-array": ("[1, 2]", None),
    "json-string": ('"send"', None),
    "unknown-type": ('{"type": "shout", "body": "hi"}', None),
    "no-type": ('{"body": "hi", "client_id": "no-type"}', None),
    "binary": (b"\x00\x01binary", None),
    "missing-body": ('{"type": "send", "client_id": "cid-missing"}', "cid-missing"),
    "number-body": ('{"type": "send", "body": 5, "client_id": "cid-number"}', "cid-number"),
    "null-body": ('{"type": "send", "body": null, "client_id": "cid-null"}', "cid-null"),
    "list-body": ('{"type": "send", "body": ["a"], "client_id": "cid-list"}', "cid-list"),
    "empty-body": ('{"type": "send", "body": "", "client_id": "cid-empty"}', "cid-empty"),
    "number-client-id": ('{"type": "send", "body": "hi", "client_id": 7}', None),
    "long-client-id": ('{"type": "send", "body": "hi", "client_id": "%s"}' % ("x" * 65), None),
}
WS_USERS = [
    "reader",
    "origin",
    "numbers",
    "nested",
    "member",
    "outsider",
    "big",
    "flood",
    "anon-helper",
    "archived",
    "csrf",
    "post",
    *(f"bad-{name}" for name in BAD_FRAMES),
]


@pytest.fixture(scope="module")
def world(live_server):
    names = [user(n) for n in WS_USERS]
    accounts = provision(
        live_server,
        users=[(n, PASSWORD) for n in names],
        rooms=[
            PUBLIC,
            {"slug": PRIVATE, "public": False, "members": [user("member")]},
            {"slug": ARCHIVED, "archived": True},
        ],
    )
    return SimpleNamespace(
        server=live_server, accounts={n.split("-", 1)[1]: a for n, a in accounts.items()}
    )


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """Small limits: 5 sends per minute, 2 KiB WebSocket messages, 4 KiB request bodies."""
    server = ServerProcess(
        tmp_path_factory.mktemp("live-limits"),
        env={
            "CHAT_RATE_LIMIT": "5/60s",
            "CHAT_MAX_FRAME_BYTES": str(MAX_FRAME),
            "MAX_REQUEST_BYTES": "4096",
        },
    ).start()
    try:
        names = ["ws", "post", "both", "frames"]
        accounts = provision(server, users=[(n, PASSWORD) for n in names], rooms=["limits"])
        yield SimpleNamespace(server=server, accounts=accounts)
    finally:
        server.kill()


async def still_sends(ws: WSClient, client_id: str) -> int:
    """The connection is open and a normal send on it is acknowledged."""
    return await ws.send_and_ack(f"still fine ({client_id})", client_id)


async def error_after(ws: WSClient, start: int) -> dict:
    error = await ws.wait_error(start=start)
    assert isinstance(error.get("detail"), str) and error["detail"], error
    return error


def assert_json_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    try:
        payload = response.json()
    except ValueError:
        raise AssertionError(f"not JSON: {response.text[:300]!r}") from None
    assert payload["error"]["code"] == code, payload
    assert isinstance(payload["error"]["detail"], str), payload


# ----------------------------------------------------------------- malformed frames


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_ws_malformed_frame_is_bad_request_and_socket_survives(world, case):
    frame, client_id = BAD_FRAMES[case]

    async def main():
        async with await WSClient.connect(
            world.server, PUBLIC, world.accounts[f"bad-{case}"]
        ) as ws:
            await ws.wait_for(lambda f: f.get("type") == "hello")
            start = len(ws.frames)
            await ws.send_raw(frame)
            error = await error_after(ws, start)
            assert error["code"] == "bad_request", error
            if client_id is not None:
                assert error.get("client_id") == client_id, error
            seq = await still_sends(ws, f"after-{case}")
            # Nothing was stored for the bad frame: the only message of ours is the good one.
            mine = [e for e in ws.durable() if e.get("user") == user(f"bad-{case}")]
            assert [e["seq"] for e in mine] == [seq], mine

    run(main())


def test_ws_body_over_max_chars_is_too_large(world):
    """CHAT_MAX_MESSAGE_CHARS counts characters: 4000 of them pass even as 8000 bytes."""

    async def main():
        async with await WSClient.connect(world.server, PUBLIC, world.accounts["big"]) as ws:
            start = len(ws.frames)
            await ws.send("x" * 4001, "too-big")
            error = await error_after(ws, start)
            assert (error["code"], error.get("client_id")) == ("too_large", "too-big"), error
            await ws.send("é" * 4001, "too-big-2")
            error = await ws.wait_reply("too-big-2")
            assert (error["type"], error["code"]) == ("error", "too_large"), error
            edge = await ws.send_and_ack("x" * 4000, "just-fits")
            wide = await ws.send_and_ack("é" * 4000, "wide-fits")
            assert wide == edge + 1
        logged = {e["seq"]: e for e in history(world.server, PUBLIC)}
        assert logged[edge]["body"] == "x" * 4000
        assert logged[wide]["body"] == "é" * 4000
        assert not any((e.get("client_id") or "").startswith("too-big") for e in logged.values())

    run(main())


def test_more_than_ten_malformed_frames_in_a_minute_closes_1008(world):
    async def main():
        async with await WSClient.connect(world.server, PUBLIC, world.accounts["flood"]) as ws:
            await ws.wait_for(lambda f: f.get("type") == "hello")
            for i in range(10):
                start = len(ws.frames)
                await ws.send_raw(f"garbage {i}")
                assert (await error_after(ws, start))["code"] == "bad_request"
            await still_sends(ws, "after-ten")  # ten is still allowed
            await ws.send_raw("garbage 11")
            assert await ws.wait_closed(timeout=5) == 1008

    run(main())


# ----------------------------------------------------------------- frame size


def test_ws_message_up_to_the_frame_limit_is_accepted(limited):
    server = limited.server

    async def main():
        async with await WSClient.connect(server, "limits", limited.accounts["frames"]) as ws:
            prefix, suffix = '{"type": "send", "client_id": "edge", "body": "', '"}'
            frame = prefix + "y" * (MAX_FRAME - len(prefix) - len(suffix)) + suffix
            assert len(frame.encode()) == MAX_FRAME
            await ws.send_raw(frame)
            reply = await ws.wait_reply("edge")
            assert reply["type"] == "ack", reply

    run(main())


@pytest.mark.parametrize("fragments", [1, 12], ids=["one-frame", "fragmented"])
def test_ws_message_over_frame_limit_closes_1009(limited, fragments):
    server = limited.server

    async def main():
        async with await WSClient.connect(server, "limits", limited.accounts["frames"]) as ws:
            await ws.wait_for(lambda f: f.get("type") == "hello")
            text = '{"type": "send", "client_id": "huge", "body": "' + "z" * 3000 + '"}'
            if fragments == 1:
                await ws.send_raw(text)
            else:
                size = len(text) // fragments + 1
                await ws.send_raw([text[i : i + size] for i in range(0, len(text), size)])
            assert await ws.wait_closed(timeout=5) == 1009
        # The server goes on serving.
        async with await WSClient.connect(server, "limits", limited.accounts["frames"]) as ws:
            await ws.wait_for(lambda f: f.get("type") == "hello")

    run(main())


def test_oversized_frame_is_refused_before_it_is_whole(limited):
    """1009 comes before the message is buffered whole: a frame announcing 1 MB is refused
    once 4 KiB of it (twice the limit) have arrived, without waiting for the rest."""
    ws = RawWebSocket.connect(limited.server, "limits", limited.accounts["frames"])
    try:
        assert ws.status == 101, ws.head
        ws.send_frame(0x1, b'{"type": "send", "body": "' + b"a" * 4096, declared=1_000_000)
        code, _ = ws.read_until_close(timeout=5)
        assert code == 1009
    finally:
        ws.close()


def test_unfinished_fragments_over_the_limit_close_1009(limited):
    """Fragments adding up past the limit close the socket without waiting for the last."""
    ws = RawWebSocket.connect(limited.server, "limits", limited.accounts["frames"])
    try:
        assert ws.status == 101, ws.head
        ws.send_frame(0x1, b'{"type": "send", "body": "' + b"f" * 900, fin=False)
        ws.send_frame(0x0, b"f" * 900, fin=False)
        ws.send_frame(0x0, b"f" * 900, fin=False)  # 2727 bytes so far, no final fragment
        code, _ = ws.read_until_close(timeout=5)
        assert code == 1009
    finally:
        ws.close()


# ----------------------------------------------------------------- permissions


def test_anonymous_send_is_forbidden_but_reading_goes_on(world):
    async def main():
        async with (
            await WSClient.connect(world.server, PUBLIC) as anon,
            await WSClient.connect(world.server, PUBLIC, world.accounts["anon-helper"]) as helper,
        ):
            hello = await anon.wait_for(lambda f: f.get("type") == "hello")
            assert hello["user"] is None, hello
            start = len(anon.frames)
            await anon.send("let me in", "anon-1")
            error = await error_after(anon, start)
            assert (error["code"], error.get("client_id")) == ("forbidden", "anon-1"), error
            seq = await helper.send_and_ack("for everyone", "helper-1")
            event = await anon.wait_for(lambda f: f.get("seq") == seq and f["type"] == "message")
            assert event["body"] == "for everyone"
            start = len(anon.frames)
            await anon.send("again", "anon-2")
            assert (await error_after(anon, start))["client_id"] == "anon-2"
        async with PollClient(world.server, PUBLIC) as anon_poll:
            assert_json_error(await anon_poll.post("hi", "anon-3", csrf=None), 403, "forbidden")
        assert not any(
            (e.get("client_id") or "").startswith("anon") for e in history(world.server, PUBLIC)
        )

    run(main())


def test_private_room_refuses_non_members_on_every_transport(world):
    server = world.server

    async def main():
        for who in (world.accounts["outsider"], None):
            with pytest.raises(InvalidStatus) as refused:
                await WSClient.connect(server, PRIVATE, who)
            assert refused.value.response.status_code == 403
            sse = await SSEClient.connect(server, PRIVATE, who)
            assert sse.status == 403, sse.body[:200]
            async with PollClient(server, PRIVATE, who) as poll:
                assert_json_error(await poll.get(since=0, timeout=1), 403, "forbidden")
                assert_json_error(await poll.post("let me in", "out-1"), 403, "forbidden")
        member = world.accounts["member"]
        async with (
            await WSClient.connect(server, PRIVATE, member) as ws,
            PollClient(server, PRIVATE, member) as poll,
        ):
            await ws.wait_for(lambda f: f.get("type") == "hello")
            seq = await ws.send_and_ack("members only", "member-1")
            response = await poll.post("also members", "member-2")
            assert response.status_code == 201, response.text
            sse = await SSEClient.connect(server, PRIVATE, member, since=0)
            try:
                assert sse.status == 200
                await sse.wait_seq(seq + 1)
            finally:
                await sse.close()

    run(main())


def test_archived_room_reads_but_refuses_sends(world):
    async def main():
        account = world.accounts["archived"]
        async with await WSClient.connect(world.server, ARCHIVED, account) as ws:
            await ws.wait_for(lambda f: f.get("type") == "hello")
            for client_id in ("arch-1", "arch-2"):  # the socket stays usable
                start = len(ws.frames)
                await ws.send("into the archive", client_id)
                error = await error_after(ws, start)
                assert (error["code"], error.get("client_id")) == ("forbidden", client_id)
        async with PollClient(world.server, ARCHIVED, account) as poll:
            assert_json_error(await poll.post("into the archive", "arch-3"), 403, "forbidden")
            response = await poll.get(since=0, timeout=0)
            assert response.status_code == 200, response.text
        assert history(world.server, ARCHIVED) == []

    run(main())


def reached_as(server, host: str) -> SimpleNamespace:
    """The same server, reached by another of its names (the Host header follows)."""
    return SimpleNamespace(url=f"http://{host}:{server.port}", port=server.port)


async def live_statuses(server, account, origin: str | None, headers=None) -> dict[str, int]:
    """What each live transport answers a browser page of ``origin``: the WebSocket
    handshake, the event stream, a long-poll GET and a long-poll POST (a send)."""
    statuses = {}
    try:
        ws = await WSClient.connect(server, PUBLIC, account, origin=origin, headers=headers)
    except InvalidStatus as refused:
        statuses["ws"] = refused.response.status_code
    else:
        await ws.wait_for(lambda f: f.get("type") == "hello")
        statuses["ws"] = 101
        await ws.close()
    sse = await SSEClient.connect(server, PUBLIC, account, origin=origin, headers=headers)
    statuses["sse"] = sse.status
    await sse.close()
    extra = {**(headers or {}), **({"Origin": origin} if origin is not None else {})}
    async with PollClient(server, PUBLIC, account) as poll:
        response = await poll.get(since=0, timeout=0, headers=extra)
        statuses["poll"] = response.status_code
        response = await poll.post("origin check", f"origin-{secrets.token_hex(4)}", headers=extra)
        statuses["post"] = response.status_code
    return statuses


ALLOWED = {"ws": 101, "sse": 200, "poll": 200, "post": 201}
REFUSED = {"ws": 403, "sse": 403, "poll": 403, "post": 403}


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "null", "http://127.0.0.1.evil.example", "http://127.0.0.1"],
)
def test_foreign_origin_is_refused_on_every_transport(world, origin):
    assert run(live_statuses(world.server, world.accounts["origin"], origin)) == REFUSED


def test_another_port_or_scheme_of_the_same_host_is_another_origin(world):
    """Issue 9.7: a page on another port of the same host read a user's private room.
    The port and the scheme count, as the browser's same-origin policy says."""
    server = world.server
    for origin in (
        f"http://127.0.0.1:{server.port + 1}",
        f"http://127.0.0.1:{server.port - 1}",
        f"https://127.0.0.1:{server.port}",
        f"http://localhost:{server.port}",  # another name: this request is to 127.0.0.1
        f"http://127.0.0.1:{server.port}/",  # not an origin at all
    ):
        got = run(live_statuses(server, world.accounts["origin"], origin))
        assert got == REFUSED, (origin, got)
    # A proxy's word on the scheme is believed from TRUSTED_PROXIES only: this server
    # trusts none, so a client's own X-Forwarded-Proto changes nothing.
    https = {"X-Forwarded-Proto": "https"}
    origin = f"https://127.0.0.1:{server.port}"
    assert run(live_statuses(server, world.accounts["origin"], origin, https)) == REFUSED


def test_the_server_s_own_origin_is_accepted_under_each_of_its_names(world):
    for host in ("127.0.0.1", "localhost"):
        server = reached_as(world.server, host)
        for origin in (None, browser_origin(world.server, host)):
            got = run(live_statuses(server, world.accounts["origin"], origin))
            assert got == ALLOWED, (host, origin, got)


def test_behind_a_trusted_proxy_the_scheme_is_the_proxy_s_and_trusted_origins_count(
    make_server,
):
    server = make_server(
        env={
            "TRUSTED_PROXIES": "127.0.0.1/32",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.org,https://*.example.net",
            "CHAT_RATE_LIMIT": "0",
        },
        name="behind-proxy",
    )
    account = provision(server, users=[("proxied", PASSWORD)], rooms=[PUBLIC])["proxied"]
    https = {"X-Forwarded-Proto": "https"}
    own = f"://127.0.0.1:{server.port}"

    async def main():
        assert await live_statuses(server, account, "https" + own, https) == ALLOWED
        assert await live_statuses(server, account, "http" + own, https) == REFUSED
        assert await live_statuses(server, account, "http" + own) == ALLOWED
        assert await live_statuses(server, account, "https" + own) == REFUSED
        for origin in ("https://chat.example.org", "https://a.example.net"):
            assert await live_statuses(server, account, origin) == ALLOWED, origin
        for origin in ("http://chat.example.org", "https://chat.example.org:8443"):
            assert await live_statuses(server, account, origin) == REFUSED, origin

    run(main())


def test_post_without_valid_csrf_token_is_forbidden(world):
    async def main():
        async with PollClient(world.server, PUBLIC, world.accounts["csrf"]) as poll:
            assert_json_error(await poll.post("no token", "csrf-1", csrf=None), 403, "forbidden")
            wrong = "A" * 32 if world.accounts["csrf"].csrftoken != "A" * 32 else "B" * 32
            assert_json_error(await poll.post("wrong", "csrf-2", csrf=wrong), 403, "forbidden")
            assert_json_error(await poll.post("garbled", "csrf-3", csrf="x"), 403, "forbidden")
            response = await poll.post("right token", "csrf-4")
            assert response.status_code == 201, response.text
        ids = {e.get("client_id") for e in history(world.server, PUBLIC)}
        assert "csrf-4" in ids and not ids & {"csrf-1", "csrf-2", "csrf-3"}

    run(main())


# ----------------------------------------------------------------- rate limits


def test_ws_rate_limit_and_resend_while_limited(limited):
    server = limited.server

    async def main():
        async with await WSClient.connect(server, "limits", limited.accounts["ws"]) as ws:
            seqs = [await ws.send_and_ack(f"ok {i}", f"rl-{i}") for i in range(5)]
            start = len(ws.frames)
            await ws.send("one too many", "rl-5")
            error = await error_after(ws, start)
            assert (error["code"], error.get("client_id")) == ("rate_limited", "rl-5"), error
            # A resend of a stored client_id is answered with its seq, limit or not.
            assert await ws.send_and_ack("resend", "rl-1") == seqs[1]
            assert await ws.send_and_ack("resend", "rl-4") == seqs[4]
            start = len(ws.frames)
            await ws.send("still too many", "rl-6")
            error = await error_after(ws, start)
            assert (error["code"], error.get("client_id")) == ("rate_limited", "rl-6"), error
        logged = [e for e in history(server, "limits") if e["user"] == "ws"]
        assert [e["client_id"] for e in logged] == [f"rl-{i}" for i in range(5)]

    run(main())


def test_post_rate_limit_is_429_and_resend_gets_200(limited):
    server = limited.server

    async def main():
        async with PollClient(server, "limits", limited.accounts["post"]) as poll:
            seqs = [await poll.send_ok(f"ok {i}", f"prl-{i}") for i in range(5)]
            assert_json_error(await poll.post("one too many", "prl-5"), 429, "rate_limited")
            response = await poll.post("resend", "prl-2")
            assert (response.status_code, response.json()) == (200, {"seq": seqs[2]})
            assert_json_error(await poll.post("still too many", "prl-6"), 429, "rate_limited")

    run(main())


def test_rate_limit_is_per_user_across_transports(limited):
    server = limited.server

    async def main():
        account = limited.accounts["both"]
        async with (
            await WSClient.connect(server, "limits", account) as ws,
            PollClient(server, "limits", account) as poll,
        ):
            for i in range(3):
                await ws.send_and_ack(f"ws {i}", f"both-ws-{i}")
            for i in range(2):
                await poll.send_ok(f"post {i}", f"both-post-{i}")
            start = len(ws.frames)
            await ws.send("sixth", "both-6")
            assert (await error_after(ws, start))["code"] == "rate_limited"
            assert_json_error(await poll.post("seventh", "both-7"), 429, "rate_limited")

    run(main())


# ----------------------------------------------------------------- not found, bad requests


@pytest.mark.parametrize("slug", [UNKNOWN, "Bad_Slug"], ids=["unknown", "bad-slug"])
def test_unknown_room_is_404_on_every_transport(world, slug):
    async def main():
        reader = world.accounts["reader"]
        with pytest.raises(InvalidStatus) as refused:
            await WSClient.connect(world.server, slug, reader)
        assert refused.value.response.status_code == 404
        sse = await SSEClient.connect(world.server, slug, reader)
        assert sse.status == 404
        async with PollClient(world.server, slug, reader) as poll:
            response = await poll.get(since=0, timeout=1)
            assert response.status_code == 404, response.text
            response = await poll.post("anyone?", "nf-1")
            assert response.status_code == 404, response.text
            if slug == UNKNOWN:
                assert_json_error(await poll.get(since=0, timeout=1), 404, "not_found")
                assert_json_error(await poll.post("anyone?", "nf-2"), 404, "not_found")

    run(main())


@pytest.mark.parametrize(
    "params",
    [
        {"since": "-1"},
        {"since": "abc"},
        {"since": "1.5"},
        {"since": "1e3"},
        {"timeout": "x"},
        {"timeout": "-5"},
        {"timeout": "2.5"},
        {"since": "0", "timeout": "soon"},
        {"since": "¹"},  # str.isdigit() says yes, int() says no: was a 500
        {"since": "٣"},  # int() reads it as 3
        {"timeout": "+5"},
        {"since": " 5"},
        {"since": "9" * 30},
    ],
)
def test_longpoll_bad_since_or_timeout_is_400(world, params):
    async def main():
        async with PollClient(world.server, PUBLIC) as poll:
            assert_json_error(await poll.get(params=params), 400, "bad_request")

    run(main())


# Digits to str.isdigit() or int() that are not ASCII digits. "¹²³" are also Latin-1
# bytes (0xB9, 0xB2, 0xB3), and Latin-1 is how a server reads header bytes: that
# "Last-Event-ID: ¹" was the 500.
NOT_ASCII_NUMBERS = ["¹", "²³", "7¹", "٣", "\uff17"]


def header_bytes(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def assert_healthy(server) -> None:
    response = httpx.get(server.url + "/healthz", timeout=5, trust_env=False)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("number", NOT_ASCII_NUMBERS)
def test_a_number_that_is_not_ascii_digits_is_400_on_every_transport(world, number):
    """Issue 9.10: "Last-Event-ID: ¹" was a 500. Every number on the wire is read by one
    parser that knows ASCII digits only."""
    reader = world.accounts["numbers"]

    async def main():
        headers = {"Last-Event-ID": header_bytes(number)}
        sse = await SSEClient.connect(world.server, PUBLIC, reader, headers=headers)
        assert sse.status == 400, sse.body[:200]
        assert json.loads(sse.body)["error"]["code"] == "bad_request"
        sse = await SSEClient.connect(world.server, PUBLIC, reader, since=number)
        assert sse.status == 400, sse.body[:200]
        async with PollClient(world.server, PUBLIC, reader) as poll:
            assert_json_error(await poll.get(since=number), 400, "bad_request")
            assert_json_error(await poll.get(timeout=number), 400, "bad_request")
        with httpx.Client(base_url=world.server.url, trust_env=False) as client:
            response = client.get(f"/api/rooms/{PUBLIC}/messages/", params={"before": number})
            assert_json_error(response, 400, "bad_request")
            response = client.get(f"/api/rooms/{PUBLIC}/messages/", params={"limit": number})
            assert_json_error(response, 400, "bad_request")
        # Resuming with a plain Last-Event-ID still works.
        sse = await SSEClient.connect(world.server, PUBLIC, reader, last_event_id=0)
        try:
            assert sse.status == 200
        finally:
            await sse.close()

    run(main())
    ws = RawWebSocket.connect(world.server, PUBLIC, reader, since=number)
    try:
        assert ws.status == 400, ws.head
    finally:
        ws.close()
    assert_healthy(world.server)


# Deep enough to exhaust Python's recursion limit inside json.loads, yet within the
# default 64 KiB frame and request limits.
DEEP_FRAMES = {
    "unclosed-arrays": "[" * 60_000,
    "closed-arrays": "[" * 30_000 + "]" * 30_000,
    "deep-body": '{"type": "send", "client_id": "deep", "body": '
    + "[" * 30_000
    + "]" * 30_000
    + "}",
    "deep-objects": '{"a": ' * 9_000 + "1" + "}" * 9_000,
}


def test_deeply_nested_json_is_bad_request_on_websocket_and_long_poll(world):
    """Issue 9.10: nested JSON dropped the WebSocket without a close frame and was a 500
    on long-poll. It is a bad_request on both, and the connection goes on."""
    account = world.accounts["nested"]

    async def main():
        async with await WSClient.connect(world.server, PUBLIC, account) as ws:
            await ws.wait_for(lambda f: f.get("type") == "hello")
            for name, frame in DEEP_FRAMES.items():
                start = len(ws.frames)
                await ws.send_raw(frame)
                error = await error_after(ws, start)
                assert error["code"] == "bad_request", (name, error)
                assert "client_id" not in error, (name, error)
            await still_sends(ws, "after-deep")
        async with PollClient(world.server, PUBLIC, account) as poll:
            for frame in DEEP_FRAMES.values():
                assert_json_error(await poll.post(content=frame), 400, "bad_request")
            response = await poll.post("after the deep ones", "post-after-deep")
            assert response.status_code == 201, response.text

    run(main())
    assert_healthy(world.server)
    assert not [e for e in history(world.server, PUBLIC) if e.get("client_id") == "deep"]


POST_BAD = {
    "not-json": (b"body=hello", 400, "bad_request"),
    "json-array": (b'["hello"]', 400, "bad_request"),
    "missing-body": (b'{"client_id": "pb-1"}', 400, "bad_request"),
    "number-body": (b'{"body": 12, "client_id": "pb-2"}', 400, "bad_request"),
    "empty-body": (b'{"body": "", "client_id": "pb-3"}', 400, "bad_request"),
    "long-client-id": (b'{"body": "hi", "client_id": "%s"}' % (b"c" * 65), 400, "bad_request"),
    "too-many-chars": (b'{"body": "%s", "client_id": "pb-4"}' % (b"w" * 4001), 413, "too_large"),
}


@pytest.mark.parametrize("case", list(POST_BAD))
def test_post_bad_body(world, case):
    content, status, code = POST_BAD[case]

    async def main():
        async with PollClient(world.server, PUBLIC, world.accounts["post"]) as poll:
            assert_json_error(await poll.post(content=content), status, code)
            response = await poll.post("a good one", f"post-ok-{case}")
            assert response.status_code == 201, response.text

    run(main())


def test_post_over_max_request_bytes_is_413(limited):
    async def main():
        async with PollClient(limited.server, "limits", limited.accounts["frames"]) as poll:
            response = await poll.post("v" * 5000, "too-many-bytes")
            assert response.status_code == 413, response.text

    run(main())
