"""Issue 9.1 as a scenario, for SQLite (tests/integration) and PostgreSQL (tests/scale).

One user sends what JSON allows and no database stores, over WebSocket and long-poll
POST: a lone surrogate (``"\\ud800"`` as a JSON escape in the raw frame text) in the body
and in the client_id, and a NUL. In the same moment other users pipeline ordinary sends
in the same room and in two others, so that on either database the bad sends would land
in a group-commit batch with theirs (SQLite has one batch for every room; PostgreSQL one
lane per room, hence good senders in the bad sender's room too).

What must hold: the bad sender gets ``bad_request`` for each, with its client_id echoed
only when the client_id itself is valid, and its socket stays usable; every other send
is acknowledged, stored and delivered to a reader of its room; nothing bad is stored;
the server logs no traceback and stays healthy.
"""

from __future__ import annotations

import asyncio

import httpx
from live_clients import Account, PollClient, WSClient, history

ROOMS = ("unstorable-a", "unstorable-b", "unstorable-c")
BAD_ROOM = ROOMS[0]
# Good WebSocket senders and their rooms: two share the bad sender's room.
SENDERS = {"good-a1": ROOMS[0], "good-a2": ROOMS[0], "good-b": ROOMS[1], "good-c": ROOMS[2]}
POSTER, POSTER_ROOM = "good-poster", ROOMS[1]
USERS = ["bad", "reader", POSTER, *SENDERS]
PIPELINED = 40  # sends per good WebSocket sender, written without waiting for acks
POSTS = 10
ROUNDS = 3  # the bad frames are sent this many times, at different points of the flood

# (body, client_id) as the raw JSON text of the frame (the escapes must reach the server
# as JSON escapes, not as characters), and whether the error echoes the client_id: only
# when it is a valid one. 3 frames x 3 rounds stays under the limit of 10 malformed
# frames a minute that closes a socket (1008).
BAD_FRAMES = [
    ("lone \\ud800 surrogate", "bad-body-{round}", True),
    ("fine words", "bad-\\udfff-{round}", False),
    ("nul \\u0000 byte", "bad-nul-{round}", True),
]
BAD_POSTS = [
    b'{"body": "lone \\ud800 surrogate", "client_id": "bad-post-body"}',
    b'{"body": "fine words", "client_id": "bad-post-\\ud800"}',
    b'{"body": "nul \\u0000 byte", "client_id": "bad-post-nul"}',
]
# A surrogate *pair* is a valid escape (U+1F600): it must be stored, not refused.
PAIR_FRAME = '{"type": "send", "body": "pair \\ud83d\\ude00", "client_id": "good-pair"}'
LOG_ALARMS = ("Traceback", "CRITICAL", "Unhandled error", "Logging error")


async def run_scenario(server, accounts: dict[str, Account]) -> None:
    readers = {room: await WSClient.connect(server, room, accounts["reader"]) for room in ROOMS}
    senders = {
        user: await WSClient.connect(server, room, accounts[user])
        for user, room in SENDERS.items()
    }
    bad = await WSClient.connect(server, BAD_ROOM, accounts["bad"])
    clients = [*readers.values(), *senders.values(), bad]
    try:
        for ws in clients:
            await ws.wait_for(lambda f: f.get("type") == "hello", what="hello")
        async with (
            PollClient(server, POSTER_ROOM, accounts[POSTER]) as poster,
            PollClient(server, BAD_ROOM, accounts["bad"]) as bad_poster,
        ):
            posted, bad_answers, *_ = await asyncio.gather(
                _post_all(poster),
                _bad_posts(bad_poster),
                _bad_frames(bad),
                *(_flood(ws, user) for user, ws in senders.items()),
            )
        await _check_bad_sender(bad, bad_answers)
        expected = await _check_acks(senders, posted)
        await _check_delivered(server, readers, expected)
    finally:
        for ws in clients:
            await ws.close()


async def _flood(ws: WSClient, user: str) -> None:
    for i in range(PIPELINED):
        await ws.send(f"{user} says {i}", f"{user}-{i}")
        if i % 4 == 0:
            await asyncio.sleep(0.002)  # let the bad frames fall in between
    if user == "good-b":
        await ws.send_raw(PAIR_FRAME)


async def _post_all(poster: PollClient) -> dict[str, int]:
    return {f"post-{i}": await poster.send_ok(f"posted {i}", f"post-{i}") for i in range(POSTS)}


def bad_frames() -> list[tuple[str, str | None]]:
    """The raw frames the bad sender sends, each with the client_id its error must echo."""
    made = []
    for round_ in range(ROUNDS):
        for body, client_id, echoed in BAD_FRAMES:
            client_id = client_id.format(round=round_)
            frame = f'{{"type": "send", "body": "{body}", "client_id": "{client_id}"}}'
            made.append((frame, client_id if echoed else None))
    return made


async def _bad_frames(bad: WSClient) -> None:
    frames = bad_frames()
    per_round = len(BAD_FRAMES)
    for round_ in range(ROUNDS):
        await asyncio.sleep(0.01 + 0.02 * round_)
        for frame, _echo in frames[round_ * per_round : (round_ + 1) * per_round]:
            await bad.send_raw(frame)


async def _bad_posts(bad_poster: PollClient) -> list[httpx.Response]:
    await asyncio.sleep(0.015)
    return list(await asyncio.gather(*(bad_poster.post(content=body) for body in BAD_POSTS)))


async def _check_bad_sender(bad: WSClient, bad_answers: list[httpx.Response]) -> None:
    for response in bad_answers:
        assert response.status_code == 400, (response.status_code, response.text[:300])
        assert response.json()["error"]["code"] == "bad_request", response.text
    wanted = [echo for _frame, echo in bad_frames()]
    seen = 0

    def nth_error(frame) -> bool:
        nonlocal seen
        seen += isinstance(frame, dict) and frame.get("type") == "error"
        return seen >= len(wanted)

    await bad.wait_for(nth_error, what=f"{len(wanted)} error frames")
    got = [f for f in bad.frames if f.get("type") == "error"]
    assert [f["code"] for f in got] == ["bad_request"] * len(wanted), got
    assert [f.get("client_id") for f in got] == wanted, got
    assert all("client_id" not in f for f, w in zip(got, wanted, strict=True) if w is None)
    assert not [f for f in bad.frames if f.get("type") == "ack"], "a bad send was acked"
    # The socket is still usable: the bad sender's next ordinary send goes through.
    assert await bad.send_and_ack("an ordinary send", "bad-then-good") > 0


async def _check_acks(senders: dict[str, WSClient], posted: dict[str, int]) -> dict:
    """Every good send acked; returns room -> {client_id: (seq, user, body)}."""
    expected: dict[str, dict[str, tuple]] = {room: {} for room in ROOMS}
    for user, ws in senders.items():
        for i in range(PIPELINED):
            seq = await ws.wait_ack(f"{user}-{i}")
            expected[SENDERS[user]][f"{user}-{i}"] = (seq, user, f"{user} says {i}")
    pair = await senders["good-b"].wait_ack("good-pair")
    expected[ROOMS[1]]["good-pair"] = (pair, "good-b", "pair \U0001f600")
    for client_id, seq in posted.items():
        expected[POSTER_ROOM][client_id] = (seq, POSTER, f"posted {client_id[5:]}")
    return expected


async def _check_delivered(server, readers: dict[str, WSClient], expected: dict) -> None:
    for room, reader in readers.items():
        wanted = sorted(expected[room].values())
        await reader.wait_seq(max(seq for seq, _u, _b in wanted))
        got = {
            (e["seq"], e["user"], e["body"])
            for e in reader.durable()
            if e["user"] != "bad" and e["room"] == room
        }
        assert got == set(wanted), f"{room}: delivered {len(got)} of {len(wanted)}"
        logged = await asyncio.to_thread(history, server, room)
        stored = {(e["seq"], e["user"], e["body"]) for e in logged if e["user"] != "bad"}
        assert stored == set(wanted), f"{room}: stored {len(stored)} of {len(wanted)}"
        bad_rows = [e for e in logged if e["user"] == "bad"]
        assert [e["client_id"] for e in bad_rows] == (
            ["bad-then-good"] if room == BAD_ROOM else []
        )


def assert_clean_log(log_text: str) -> None:
    alarms = [line for line in log_text.splitlines() if any(a in line for a in LOG_ALARMS)]
    assert not alarms, "the server log has:\n" + "\n".join(alarms[:20]) + "\n" + log_text[-3000:]


def assert_healthy(server) -> None:
    response = httpx.get(server.url + "/healthz", timeout=5.0, trust_env=False)
    assert response.status_code == 200, response.text
