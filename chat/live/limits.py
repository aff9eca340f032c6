"""The bounds of the live rooms of one process, and why each is what it is.

One frozen record handed to the hub, which gives it to every room and presence it makes.
Tests build their own (``LiveLimits(ring_size=3)``) instead of patching module constants,
so a test cannot leak a changed limit into the next one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LiveLimits:
    # Recent events kept per room, so that a client resuming after a short disconnect is
    # served from memory. Older resumes read the database, page by page.
    ring_size: int = 1024
    # A missing seq is waited for this long before it is read from the database. Events of
    # one room can arrive out of order when several processes or threads commit to it.
    # After a failed read the next attempt waits four times as long: the database is
    # struggling, and every room retrying at the same pace would keep it down.
    gap_wait: float = 0.25
    # Out-of-order events a room holds while waiting for a gap to fill; past this the gap
    # is filled from the database at once instead of waiting.
    max_held: int = 10_000
    # Live events held for one subscriber while its older range is being read. A range
    # that takes so long that this many events pile up means the subscriber cannot keep
    # up: it is dropped as a slow consumer and resumes with `since`.
    max_join_hold: int = 10_000
    # Events in one long-poll answer (PROTOCOL.md), and in one page of a replay or a
    # catch-up read from the database.
    poll_max_events: int = 500
    # A room with no subscribers is forgotten after this long (its ring with it): long
    # enough that a page reload or a reconnect finds the ring warm, short enough that
    # rooms visited once do not pile up in memory.
    room_idle: float = 60.0
    # A user's typing is announced at most this often per room: a client sends `typing`
    # on every keystroke, and each announcement is a write to every subscriber.
    typing_interval: float = 2.0
    # At most one presence broadcast per room per this long (issue 9): a join or leave is
    # a write to every subscriber (~35 ms of CPU at 2000 of them), so one account that
    # toggles its connection 30 times a second would otherwise saturate a process. Changes
    # within the interval are coalesced into one broadcast of the list as it is at the
    # end; a join after a quiet interval is broadcast at once. A newcomer is always sent
    # the current list at once, whatever the interval. One second is below what a person
    # notices in a sidebar and bounds the cost to ~3.5% of a core per busy room.
    presence_interval: float = 1.0
    # ...and in a large room, at most one per this many users present times that: a
    # broadcast is the whole list to everyone, so its cost grows with the square of the
    # room's size. With 800 present and 1% of them reconnecting each second, broadcasts
    # of the room's list were a fifth of a process's CPU and most of its load client's
    # (bench/scenario.py --users 8000 --rooms 800, 2026-12-07). Stretched, the bytes a
    # second stay proportional to the room's size; up to ``presence_max_interval``.
    presence_users_per_interval: int = 250
    presence_max_interval: float = 10.0
    # A long-poll user is present for the timeout of its poll plus this long, so that the
    # gap between one answer and the next poll (network, a busy tab) is not a leave and
    # join for everyone else.
    poll_lease_grace: float = 15.0
    # Acked (room, user, client_id) -> seq remembered by the hub, so that a resend over
    # the rate limit is answered without a database read (see RoomHub.send). A client
    # resends what it sent just before a disconnect, seconds earlier; at 1000 acked sends
    # a second this remembers the last 20 s. ~200 bytes an entry: ~4 MB at most.
    recent_acks: int = 20_000
