"""A room's ring keeps its older events compact (their JSON text only) and still gives
every replay the same bytes and each message's current state."""

from __future__ import annotations

import json
import tracemalloc

from chat.live.events import OutboundEvent, websocket_text_frame
from chat.live.ring import KEEP_FULL, Ring


def message(seq: int, **fields) -> dict:
    return {"type": "message", "room": "lobby", "seq": seq, "id": seq, "user": "alice",
            "body": f"hello {seq}", "html": f"<p>hello {seq}</p>", "mentions": [],
            "attachments": [], "reactions": [], "reply_to": None,
            "ts": "2026-12-08T03:30:00.123456Z", "client_id": f"c{seq}", **fields}  # fmt: skip


def fanned_out(event: dict) -> OutboundEvent:
    out = OutboundEvent(event)
    assert out.ws_frame and out.sse_chunk  # as the fan-out leaves it: both frames cached
    return out


def test_a_compact_event_gives_the_same_dict_and_frames():
    full, compact = fanned_out(message(7)), fanned_out(message(7))
    compact.compact()
    assert compact.event == full.event
    assert compact.ws_frame == full.ws_frame == websocket_text_frame(full.data)
    assert compact.sse_chunk == full.sse_chunk
    assert (compact.type, compact.seq) == ("message", 7)
    # Reading it does not inflate it again: each read is a fresh decode, frames not kept.
    compact.event["body"] = "changed by a reader"
    assert compact.event["body"] == "hello 7"
    assert (compact._event, compact._ws, compact._sse) == (None, None, None)


def test_older_events_are_compact_and_replay_unchanged():
    ring = Ring(1024)
    events = [fanned_out(message(seq)) for seq in range(1, 301)]
    expected = [(e.data, e.ws_frame, e.sse_chunk) for e in events]
    for event in events:
        ring.append(event)
    compact = [e for e in ring if e._event is None]
    assert len(compact) == 300 - KEEP_FULL
    assert all(e._event is not None for e in list(ring)[-KEEP_FULL:])
    replay = ring.after(0, 300)
    assert [(e.data, e.ws_frame, e.sse_chunk) for e in replay] == expected
    assert [e.seq for e in ring.after(250, 300)] == list(range(251, 301))


def test_an_edit_of_a_compact_message_is_its_current_state_and_stays_compact():
    ring = Ring(1024)
    for seq in range(1, 201):
        ring.append(fanned_out(message(seq)))
    edit = {"type": "edited", "room": "lobby", "seq": 201, "target": 3, "user": "alice",
            "body": "fixed", "html": "<p>fixed</p>", "mentions": [], "ts": "T2"}  # fmt: skip
    ring.append(fanned_out(edit))
    react = {"type": "reaction", "room": "lobby", "seq": 202, "target": 3, "user": "bob",
             "op": "add", "emoji": "👍"}  # fmt: skip
    ring.append(fanned_out(react))
    recent = {"type": "deleted", "room": "lobby", "seq": 203, "target": 200, "user": "alice"}
    ring.append(fanned_out(recent))
    third = ring[2]
    assert third._event is None  # replaced by its current state, compact as before
    assert json.loads(third.data)["body"] == "fixed"
    assert third.event["reactions"] == [{"emoji": "👍", "users": ["bob"]}]
    assert ring[199].event["deleted"] is True  # a recent one is replaced in full form
    assert ring[199]._event is not None


def test_a_full_ring_of_messages_holds_a_fraction_of_the_fanned_out_form():
    def held(compacting: bool) -> int:
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        ring = Ring(1024)
        for seq in range(1, 1025):
            event = fanned_out(message(seq))
            ring.append(event) if compacting else ring._events.append(event)
        size = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "lineno"))
        tracemalloc.stop()
        assert len(ring) == 1024
        return size

    # Measured 1.9 KB an event fanned out, 0.5 KB in the ring (KEEP_FULL of them full).
    assert held(compacting=True) < 0.4 * held(compacting=False)
