"""Search (PROTOCOL.md "Search (v2)"): the index kept by the database's triggers in the
write's own transaction, the query language (whole words after case folding, all
required, quoted phrases), privacy (only rooms the user may read), hostile queries (never
a 500, never FTS syntax), the highlight's escaping, paging, and the page.

Writes go through chat/writes.py (no hub in the test client), so through chat.log, which
knows nothing of search: what is found is what the database indexed by itself.
Also run on PostgreSQL by test_search_on_postgres.py.
"""

from __future__ import annotations

import contextlib
import uuid

import pytest
from django.db import connection
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import search, writes
from chat.models import Message, Room

pytestmark = pytest.mark.django_db

URL = "/api/search/"


def say(room: Room, user, body: str) -> int:
    result = writes.submit(room.slug, user, {"type": "send", "body": body, "client_id": uid()})
    assert result.error is None, result
    return result.seq


def edit(room: Room, user, seq: int, body: str) -> None:
    frame = {"type": "edit", "target": seq, "body": body, "client_id": uid()}
    result = writes.submit(room.slug, user, frame)
    assert result.error is None, result


def delete(room: Room, user, seq: int) -> None:
    result = writes.submit(room.slug, user, {"type": "delete", "target": seq, "client_id": uid()})
    assert result.error is None, result


def uid() -> str:
    return uuid.uuid4().hex


def found(user, q: str, **kwargs) -> list[tuple[str, int]]:
    results, _ = search.search(user, q, **kwargs)
    return [(r["room"], r["seq"]) for r in results]


@pytest.fixture
def as_bob(bob, lobby):
    client = Client()
    client.force_login(bob)
    return client


# --- the index follows every write ------------------------------------------------------


def test_a_message_is_found_by_its_words(lobby, alice):
    seq = say(lobby, alice, "The deploy of staging is done")
    assert found(alice, "deploy") == [("lobby", seq)]
    assert found(alice, "staging deploy") == [("lobby", seq)]
    assert found(alice, "production") == []


def test_an_edit_is_reindexed(lobby, alice):
    seq = say(lobby, alice, "lunch at noon")
    edit(lobby, alice, seq, "dinner at eight")
    assert found(alice, "lunch") == []
    assert found(alice, "dinner") == [("lobby", seq)]
    [result], _ = search.search(alice, "dinner")
    assert result["body"] == "dinner at eight"


def test_a_deleted_message_is_not_found(lobby, alice):
    seq = say(lobby, alice, "oops wrong channel")
    keep = say(lobby, alice, "right channel")
    delete(lobby, alice, seq)
    assert found(alice, "channel") == [("lobby", keep)]
    assert found(alice, "oops") == []


def test_edit_and_reaction_events_are_not_results(lobby, alice):
    seq = say(lobby, alice, "first words")
    edit(lobby, alice, seq, "second words")
    writes.submit(
        "lobby",
        alice,
        {"type": "react", "target": seq, "emoji": "👍", "op": "add", "client_id": uid()},
    )
    assert found(alice, "words") == [("lobby", seq)]  # the message, not its edited event
    assert found(alice, "first") == []


def test_a_removed_row_leaves_the_index(lobby, alice):
    seq = say(lobby, alice, "ephemeral thought")
    Message.objects.filter(room=lobby, seq=seq).delete()
    assert found(alice, "ephemeral") == []
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO chat_message_fts(chat_message_fts) VALUES ('integrity-check')"
            )


# --- words, case, phrases ---------------------------------------------------------------


def test_case_is_folded(lobby, alice):
    seq = say(lobby, alice, "Hello WORLD")
    assert found(alice, "hello world") == [("lobby", seq)]
    assert found(alice, "HELLO") == [("lobby", seq)]
    assert found(alice, "ÉCOLE") == []
    seq2 = say(lobby, alice, "Ελληνικά ΚΑΛΗΜΕΡΑ")
    assert found(alice, "καλημερα") == [("lobby", seq2)]


@pytest.mark.skipif("connection.vendor != 'sqlite'", reason="PostgreSQL's simple keeps accents")
def test_diacritics_are_folded_on_sqlite(lobby, alice):
    seq = say(lobby, alice, "Un café crème")
    assert found(alice, "cafe creme") == [("lobby", seq)]


def test_words_match_whole_not_as_prefixes(lobby, alice):
    say(lobby, alice, "deployment finished")
    seq = say(lobby, alice, "deploy now")
    assert found(alice, "deploy") == [("lobby", seq)]
    assert found(alice, "deplo") == []
    assert found(alice, "deploy*") == [("lobby", seq)]  # * is no operator


def test_every_word_is_required(lobby, alice):
    both = say(lobby, alice, "red green")
    say(lobby, alice, "red blue")
    assert found(alice, "green red") == [("lobby", both)]


def test_a_quoted_phrase_matches_the_words_in_order(lobby, alice):
    hit = say(lobby, alice, "the quick brown fox")
    say(lobby, alice, "brown and quick")
    assert found(alice, '"quick brown"') == [("lobby", hit)]
    assert sorted(found(alice, "quick brown")) == sorted([("lobby", hit), ("lobby", hit + 1)])
    assert found(alice, '"brown quick"') == []
    assert found(alice, 'fox "the quick"') == [("lobby", hit)]


def test_newest_first(lobby, alice):
    seqs = [say(lobby, alice, f"tick {i}") for i in range(5)]
    assert [s for _, s in found(alice, "tick")] == seqs[::-1]


# --- privacy ----------------------------------------------------------------------------


def test_a_private_rooms_messages_are_only_for_its_members(lobby, secret, alice, bob, as_bob):
    mine = say(secret, alice, "the password is swordfish")
    public = say(lobby, alice, "swordfish are fast")
    assert found(alice, "swordfish") == [("lobby", public), ("secret", mine)]
    assert found(bob, "swordfish") == [("lobby", public)]
    body = as_bob.get(URL, {"q": "swordfish"}).json()
    assert [r["room"] for r in body["results"]] == ["lobby"]
    assert "password" not in str(body)
    # Naming the room does not open it.
    response = as_bob.get(URL, {"q": "swordfish", "room": "secret"})
    assert response.status_code == 403
    assert found(bob, "swordfish", room="secret") == []


def test_a_direct_conversation_is_only_for_its_two_people(alice, bob, mallory):
    dm = Room.objects.create(slug="dm-ab", name="alice & bob", kind="direct", is_public=False)
    dm.members.add(alice, bob)
    seq = say(dm, alice, "meet at the usual place")
    assert found(bob, "usual place") == [("dm-ab", seq)]
    assert found(mallory, "usual place") == []


def test_leaving_a_private_room_takes_its_messages_away(secret, alice, bob):
    secret.members.add(bob)
    say(secret, alice, "classified plans")
    assert len(found(bob, "classified")) == 1
    secret.members.remove(bob)
    assert found(bob, "classified") == []


# --- the API ----------------------------------------------------------------------------


def test_the_api_answers_the_protocols_shape(lobby, alice, as_bob):
    seq = say(lobby, alice, "shape of **things**")
    body = as_bob.get(URL, {"q": "things"}).json()
    assert body["has_more"] is False
    [r] = body["results"]
    assert {"room", "seq", "user", "body", "html", "ts", "highlight"} <= set(r)
    assert (r["room"], r["seq"], r["user"]) == ("lobby", seq, "alice")
    assert r["body"] == "shape of **things**"
    assert "<strong>" in r["html"]
    assert r["highlight"] == "shape of **<mark>things</mark>**"


def test_anonymous_is_forbidden(lobby, alice, client):
    say(lobby, alice, "public words")
    response = client.get(URL, {"q": "public"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("q", ["", "   ", '"', "!!! ... ---", "\x00", "́", "\u200b"])
def test_a_query_without_words_is_a_400(as_bob, q):
    response = as_bob.get(URL, {"q": q})
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "bad_request"


def test_no_q_at_all_is_a_400(as_bob):
    assert as_bob.get(URL).status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "x"},
        {"limit": "0"},
        {"limit": "-1"},
        {"before": "1.5"},
        {"cursor": "abc"},
        {"limit": "9" * 40},
        {"before": "١٢"},
    ],
)
def test_bad_numbers_are_a_400(as_bob, params):
    response = as_bob.get(URL, {"q": "word", **params})
    assert response.status_code == 400, response.content


def test_an_unknown_room_is_a_404(as_bob):
    assert as_bob.get(URL, {"q": "word", "room": "nowhere"}).status_code == 404


def test_only_get(as_bob):
    assert as_bob.post(URL, {"q": "x"}).status_code == 405


HOSTILE = [
    "NEAR(a b)",
    "NEAR(",
    '"',
    '"""',
    '"unterminated phrase',
    "*",
    "a*",
    "AND OR NOT",
    "a AND",
    "OR",
    "-x",
    "^start",
    "body:word",
    "{body}: x",
    "(a OR b",
    "a & b | !c",
    "a <-> b",
    "'quoted'",
    "x:*",
    "\\",
    "%_",
    "'; DROP TABLE chat_message; --",
    "word\x00word",
    "a" * 999,
    "word " * 30,
    "日本語のテキスト",
    "🙂 emoji",
]


@pytest.mark.parametrize("q", HOSTILE)
def test_hostile_queries_are_results_or_400_never_500(lobby, alice, as_bob, q):
    say(lobby, alice, "a b c NEAR AND OR NOT x start body word")
    response = as_bob.get(URL, {"q": q})
    assert response.status_code in (200, 400), (q, response.content)
    if response.status_code == 200:
        assert isinstance(response.json()["results"], list)


def test_fts_operators_are_words(lobby, alice):
    seq = say(lobby, alice, "NOT this one, OR that: NEAR the door")
    say(lobby, alice, "this door")
    assert found(alice, "not near") == [("lobby", seq)]
    assert found(alice, "this -door") == found(alice, "this door")


def test_overlong_queries_are_a_400(as_bob):
    assert as_bob.get(URL, {"q": "x" * 5000}).status_code == 400
    assert as_bob.get(URL, {"q": " ".join(f"w{i}" for i in range(40))}).status_code == 400


def test_a_lone_surrogate_in_the_url_is_no_500(lobby, alice, as_bob):
    seq = say(lobby, alice, "word")
    response = as_bob.get(URL + "?q=%ED%A0%80word")
    assert response.status_code == 200
    # Django decodes it to U+FFFD, a separator; and one reaching search() directly:
    assert found(alice, "\ud800word") == [("lobby", seq)]
    with pytest.raises(search.SearchError):
        search.search(alice, "\ud800")


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(q=st.text(max_size=80))
def test_any_text_is_a_query(lobby, alice, q):
    try:
        results, _ = search.search(alice, q)
    except search.SearchError:
        return
    assert isinstance(results, list)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(q=st.text(alphabet=st.sampled_from('"*^-:()NEARORNOTand ab\x00'), max_size=40))
def test_fts_shaped_text_is_a_query(lobby, alice, q):
    with contextlib.suppress(search.SearchError):
        search.search(alice, q)


# --- the highlight ----------------------------------------------------------------------


def test_the_highlight_escapes_the_body(lobby, alice):
    say(lobby, alice, '<script>alert("hi")</script> & <b>bold</b> alert')
    [r], _ = search.search(alice, "alert")
    assert r["highlight"] == (
        "&lt;script&gt;<mark>alert</mark>(&quot;hi&quot;)&lt;/script&gt; &amp; "
        "&lt;b&gt;bold&lt;/b&gt; <mark>alert</mark>"
    )
    assert "<script" not in r["highlight"] and "<b>" not in r["highlight"]


def test_a_mark_in_the_body_is_text(lobby, alice):
    say(lobby, alice, "<mark>fake</mark> real")
    [r], _ = search.search(alice, "real")
    assert r["highlight"] == "&lt;mark&gt;fake&lt;/mark&gt; <mark>real</mark>"


def test_the_highlight_folds_as_the_search_does():
    terms = search.parse("Hello CAFE").terms
    assert search.highlight("hello, Café! hellos", terms) == (
        "<mark>hello</mark>, <mark>Café</mark>! hellos"
    )


def test_a_long_body_is_cut_around_its_match():
    body = "x " * 300 + "needle" + " y" * 300
    out = search.highlight(body, search.parse("needle").terms)
    assert "<mark>needle</mark>" in out and out.startswith("…") and out.endswith("…")
    assert len(out) < 300


# --- paging -----------------------------------------------------------------------------


def test_paging_with_the_cursor_across_rooms(lobby, secret, alice):
    seqs = []
    for i in range(7):
        seqs.append(("lobby", say(lobby, alice, f"page item {i}")))
        seqs.append(("secret", say(secret, alice, f"page item {i}")))
    expected = seqs[::-1]
    seen, cursor = [], None
    while True:
        results, has_more = search.search(alice, "page item", limit=4, cursor=cursor)
        seen += [(r["room"], r["seq"]) for r in results]
        if not has_more:
            break
        cursor = results[-1]["cursor"]
    assert seen == expected


def test_paging_with_before_in_a_room(lobby, alice, as_bob):
    seqs = [say(lobby, alice, f"history {i}") for i in range(5)]
    first = as_bob.get(URL, {"q": "history", "room": "lobby", "limit": "2"}).json()
    assert [r["seq"] for r in first["results"]] == seqs[:-3:-1] and first["has_more"]
    before = first["results"][-1]["seq"]
    rest = as_bob.get(URL, {"q": "history", "room": "lobby", "before": before}).json()
    assert [r["seq"] for r in rest["results"]] == seqs[-3::-1] and not rest["has_more"]


def test_limit_is_bounded(lobby, alice, as_bob):
    for i in range(3):
        say(lobby, alice, f"many {i}")
    body = as_bob.get(URL, {"q": "many", "limit": "1000"}).json()
    assert len(body["results"]) == 3


# --- the page ---------------------------------------------------------------------------


def test_the_page_shows_highlighted_results_linking_to_the_room(
    lobby, alice, as_bob, plain_static_storage
):
    seq = say(lobby, alice, "<img src=x onerror=alert(1)> release notes")
    page = as_bob.get("/search/", {"q": "release"})
    assert page.status_code == 200
    text = page.content.decode()
    assert f'href="/rooms/lobby/?at={seq}"' in text
    assert "<mark>release</mark>" in text
    assert "<img src=x" not in text and "&lt;img src=x" in text
    assert 'role="search"' in text  # the header's box


def test_the_page_says_a_bad_query(as_bob, plain_static_storage):
    page = as_bob.get("/search/", {"q": "!!!"})
    assert page.status_code == 400
    assert "no words" in page.content.decode()


def test_the_page_asks_anonymous_to_log_in(client, plain_static_storage):
    page = client.get("/search/", {"q": "x"})
    assert page.status_code == 302 and "/accounts/login/" in page["Location"]


def test_anonymous_pages_have_no_search_box(client, lobby, plain_static_storage):
    assert 'role="search"' not in client.get("/").content.decode()


# --- the migration ----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_backfills_and_reverses(lobby, alice):
    from django.core.management import call_command

    seq = say(lobby, alice, "before the index existed")
    call_command("migrate", "chat", "0002", verbosity=0)
    try:
        with connection.cursor() as cursor:
            tables = connection.introspection.table_names(cursor)
        assert "chat_message_fts" not in tables
        # Raw SQL: today's models have columns that 0002's tables do not.
        later = seq + 1
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO chat_message (room_id, seq, kind, user_id, body, html, mentions, "
                "reply_to, emoji, op, created_at) VALUES "
                "(%s, %s, 'message', %s, %s, '', '[]', NULL, '', '', CURRENT_TIMESTAMP)",
                [lobby.id, later, alice.id, "written while unindexed"],
            )
            cursor.execute("UPDATE chat_room SET last_seq = %s WHERE id = %s", [later, lobby.id])
    finally:
        call_command("migrate", "chat", verbosity=0)
    assert found(alice, "existed") == [("lobby", seq)]
    assert found(alice, "unindexed") == [("lobby", later)]
