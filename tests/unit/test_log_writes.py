"""chat.log: edits, deletions, reactions, replies, mentions, and what history shows after.

PROTOCOL.md "The room log": each write appends one event with the guarantees of a message
(seq, idempotent client_id) and changes its target's current state in the same
transaction; history shows that state and the acting events at their own seqs.
"""

from __future__ import annotations

import pytest

from chat import history, log
from chat.live.records import SendRequest, WriteKind
from chat.log_state import MAX_DISTINCT_REACTIONS
from chat.models import Mention, Message, Reaction, ReadPosition

pytestmark = pytest.mark.django_db


def write(user, kind=WriteKind.SEND, room="lobby", body="", client_id=None, **fields):
    request = SendRequest(room, user.id, user.username, body, client_id, kind=kind, **fields)
    (result,) = log.append_events([request])
    return result


def edit(user, target, body, **kw):
    return write(user, WriteKind.EDIT, body=body, target=target, **kw)


def delete(user, target, **kw):
    return write(user, WriteKind.DELETE, target=target, **kw)


def react(user, target, emoji="👍", op="add", **kw):
    return write(user, WriteKind.REACT, target=target, emoji=emoji, op=op, **kw)


def page(room) -> dict[int, dict]:
    return {e["seq"]: e for e in history.read_page(room.id, room.slug, None, 200)}


def test_a_message_is_rendered_and_mentions_readers(alice, bob, lobby):
    result = write(alice, body="hi **there** @bob and @nobody")
    event = result.event
    assert event["html"] == (
        'hi <strong>there</strong> <span class="mention" data-user="bob">@bob</span> and @nobody'
    )
    assert event["mentions"] == ["bob"]
    assert list(Mention.objects.values_list("seq", "user_id")) == [(1, bob.id)]
    assert page(lobby)[1] == event  # the live event is the stored one


def test_a_private_room_mentions_only_its_members(alice, bob, secret):
    result = write(alice, room="secret", body="@bob @alice")
    assert result.event["mentions"] == ["alice"]


def test_inactive_users_are_not_mentioned(alice, bob, lobby):
    bob.is_active = False
    bob.save()
    assert write(alice, body="@bob").event["mentions"] == []


def test_hostile_markup_is_escaped_in_stored_html(alice, lobby):
    event = write(alice, body="<script>alert(1)</script> <img src=x onerror=alert(1)>").event
    assert "<script" not in event["html"] and "<img" not in event["html"]
    assert event["body"].startswith("<script>")


def test_edit_changes_the_current_state_and_appends_an_edited_event(alice, bob, lobby):
    write(alice, body="helo")
    result = edit(alice, 1, "hello @bob", client_id="e-1")
    assert result.seq == 2
    assert result.event == {
        "type": "edited",
        "room": "lobby",
        "seq": 2,
        "target": 1,
        "user": "alice",
        "body": "hello @bob",
        "html": 'hello <span class="mention" data-user="bob">@bob</span>',
        "mentions": ["bob"],
        "ts": result.event["ts"],
        "client_id": "e-1",
    }
    events = page(lobby)
    assert events[1]["body"] == "hello @bob" and events[1]["mentions"] == ["bob"]
    assert events[1]["edited_at"] == result.event["ts"]
    assert events[2] == result.event
    assert list(Mention.objects.values_list("seq", "user_id")) == [(1, bob.id)]


def test_an_edit_that_drops_a_mention_drops_its_row(alice, bob, lobby):
    write(alice, body="@bob look")
    edit(alice, 1, "never mind")
    assert not Mention.objects.exists()


def test_only_the_author_edits(alice, bob, lobby):
    write(alice, body="mine")
    result = edit(bob, 1, "yours now")
    assert result.error == "forbidden" and result.seq is None
    assert Message.objects.count() == 1
    assert page(lobby)[1]["body"] == "mine"


@pytest.mark.parametrize(
    ("target", "detail"),
    [(5, "not a message"), (2, "not a message"), (1, "deleted")],
)
def test_bad_edit_targets_are_refused_and_store_nothing(alice, lobby, target, detail):
    write(alice, body="x")
    delete(alice, 1)  # seq 2 is the deleted event
    before = Message.objects.count()
    result = edit(alice, target, "again")
    assert result.error == "bad_request" and detail in result.detail
    assert Message.objects.count() == before


def test_edits_and_reactions_in_an_archived_room_are_forbidden(alice, attic):
    Message.objects.create(room=attic, seq=1, user=alice, body="old")
    attic.last_seq = 1
    attic.save()
    assert edit(alice, 1, "new", room="attic").error == "forbidden"
    assert react(alice, 1, room="attic").error == "forbidden"


def test_delete_by_author_blanks_the_message_and_names_the_deleter(alice, bob, lobby):
    write(alice, body="oops @bob")
    react(bob, 1)
    result = delete(alice, 1, client_id="d-1")
    assert result.event == {
        "type": "deleted",
        "room": "lobby",
        "seq": 3,
        "target": 1,
        "user": "alice",
    }
    message = page(lobby)[1]
    assert message["deleted"] is True
    assert (message["body"], message["html"], message["mentions"]) == ("", "", [])
    assert message["reactions"] == [] and message["attachments"] == []
    assert not Mention.objects.exists()


def test_others_may_not_delete_but_staff_may(alice, bob, lobby, django_user_model):
    write(alice, body="hers")
    assert delete(bob, 1).error == "forbidden"
    staff = django_user_model.objects.create_user("root", is_staff=True)
    assert delete(staff, 1).event["user"] == "root"


def test_a_message_is_deleted_once(alice, lobby):
    write(alice, body="x")
    delete(alice, 1)
    result = delete(alice, 1)
    assert result.error == "bad_request" and "deleted" in result.detail


def test_reactions_add_remove_and_show_in_order_of_first_reaction(alice, bob, lobby):
    write(alice, body="vote")
    assert react(bob, 1, "👍").seq == 2
    assert react(alice, 1, "🎉").seq == 3
    assert react(alice, 1, "👍").seq == 4
    assert page(lobby)[1]["reactions"] == [
        {"emoji": "👍", "users": ["bob", "alice"]},
        {"emoji": "🎉", "users": ["alice"]},
    ]
    removed = react(bob, 1, "👍", op="remove")
    assert removed.event["op"] == "remove" and removed.event["emoji"] == "👍"
    assert page(lobby)[1]["reactions"] == [
        {"emoji": "🎉", "users": ["alice"]},
        {"emoji": "👍", "users": ["alice"]},
    ]


def test_a_reaction_already_in_effect_or_absent_is_a_no_op(alice, bob, lobby):
    write(alice, body="x")
    react(bob, 1)
    again = react(bob, 1)
    gone = react(alice, 1, op="remove")
    assert (again.seq, again.error, again.created) == (None, None, False)
    assert (gone.seq, gone.error, gone.created) == (None, None, False)
    assert Message.objects.count() == 2


def test_at_most_twenty_distinct_emoji(alice, bob, lobby):
    import emoji as emoji_data

    write(alice, body="x")
    faces = [e for e in emoji_data.EMOJI_DATA if len(e) == 1 and ord(e) >= 0x1F600][:21]
    for face in faces[:MAX_DISTINCT_REACTIONS]:
        assert react(alice, 1, face).created
    refused = react(bob, 1, faces[MAX_DISTINCT_REACTIONS])
    assert refused.error == "bad_request"
    assert react(bob, 1, faces[0]).created  # one already there may still be added to
    assert Reaction.objects.count() == MAX_DISTINCT_REACTIONS + 1


def test_reacting_to_a_deleted_or_unknown_message_is_refused(alice, lobby):
    write(alice, body="x")
    delete(alice, 1)
    assert react(alice, 1).error == "bad_request"
    assert react(alice, 99).error == "bad_request"
    assert react(alice, 2).error == "bad_request"  # the deleted event is no message


def test_client_ids_make_every_kind_idempotent(alice, lobby):
    write(alice, body="x")
    first = edit(alice, 1, "y", client_id="e-1")
    again = edit(alice, 1, "z", client_id="e-1")
    assert (again.seq, again.created) == (first.seq, False)
    r1 = react(alice, 1, client_id="r-1")
    assert react(alice, 1, op="remove", client_id="r-1").seq == r1.seq
    d1 = delete(alice, 1, client_id="d-1")
    assert delete(alice, 1, client_id="d-1").seq == d1.seq
    assert page(lobby)[1]["body"] == ""


def test_reply_to_an_earlier_message_of_the_room(alice, bob, lobby, secret):
    write(alice, body="question")
    reply = write(bob, body="answer", reply_to=1)
    assert reply.event["reply_to"] == 1 and page(lobby)[2]["reply_to"] == 1
    write(alice, room="secret", body="elsewhere")
    assert write(alice, body="x", reply_to=99).error == "bad_request"
    react(alice, 1)  # seq 3 of lobby is a reaction, no message
    assert write(alice, body="x", reply_to=3).error == "bad_request"
    assert Message.objects.filter(room=lobby).count() == 3


def test_a_batch_mixes_kinds_in_order(alice, bob, lobby):
    write(alice, body="first")
    requests = [
        SendRequest("lobby", bob.id, "bob", "second", None),
        SendRequest("lobby", alice.id, "alice", "first!", None, kind=WriteKind.EDIT, target=1),
        SendRequest(
            "lobby", bob.id, "bob", "", None, kind=WriteKind.REACT, target=2, emoji="👍", op="add"
        ),
        SendRequest("lobby", bob.id, "bob", "third", None),
        SendRequest("lobby", bob.id, "bob", "mine?", None, kind=WriteKind.EDIT, target=1),
    ]
    results = log.append_events(requests)
    assert [r.seq for r in results] == [2, 3, 4, 5, None]
    assert results[4].error == "forbidden"  # not bob's message
    events = page(lobby)
    assert [events[s]["type"] for s in range(1, 6)] == [
        "message",
        "message",
        "edited",
        "reaction",
        "message",
    ]
    assert events[2]["reactions"] == [{"emoji": "👍", "users": ["bob"]}]
    lobby.refresh_from_db()
    assert lobby.last_seq == 5


def test_sending_in_a_public_room_joins_it(alice, bob, lobby):
    write(alice, body="hello")
    write(bob, body="hi")
    write(bob, body="again")
    assert set(lobby.members.values_list("username", flat=True)) == {"alice", "bob"}
    positions = dict(ReadPosition.objects.values_list("user__username", "read_seq"))
    assert positions == {"alice": 1, "bob": 2}


def test_history_after_and_between(alice, lobby):
    for i in range(1, 8):
        write(alice, body=f"m{i}")
    seqs = lambda events: [e["seq"] for e in events]  # noqa: E731
    assert seqs(history.read_page(lobby.id, "lobby", None, 3, after=2)) == [3, 4, 5]
    assert seqs(history.read_page(lobby.id, "lobby", 6, 10, after=2)) == [3, 4, 5]
    assert seqs(history.read_page(lobby.id, "lobby", 6, 10)) == [1, 2, 3, 4, 5]
    assert history.read_message(lobby.id, "lobby", 4)["body"] == "m4"
    assert history.read_message(lobby.id, "lobby", 40) is None
