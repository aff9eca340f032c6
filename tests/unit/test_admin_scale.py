"""The admin at scale (chat/admin/scale.py, chat/admin/message_admin.py): no changelist
page counts the room log without a bound, the search box uses the full-text index (no
``LIKE '%x%'`` over the log), and the room filter is a typed slug, not a list of rooms.

bench/admin_scale.py times the same pages on 1M messages; this proves, query by query,
the protection that keeps them fast. Runs on PostgreSQL too (DATABASE_URL).
"""

from __future__ import annotations

import re

import pytest
from django.core.paginator import Paginator
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat import log
from chat.admin.scale import EstimatedCountPaginator, bounded_count, estimated_rows
from chat.live.records import SendRequest
from chat.models import Message, Room

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_static_storage")]

TABLE = "chat_message"
_COUNT = re.compile(r"\bCOUNT\(", re.IGNORECASE)


def _from(table: str) -> re.Pattern:
    return re.compile(rf'\bFROM\s+"?{table}"?(?=[\s)]|$)', re.IGNORECASE)


_FROM_LOG = _from(TABLE)


def unbounded_counts(queries: list[dict], table: str = TABLE) -> list[str]:
    """The statements that COUNT rows of ``table`` with no LIMIT bounding them: a count
    of the whole log, or of one room's whole log (a correlated count per room)."""
    found = []
    source = _from(table)
    for query in queries:
        sql = query["sql"]
        if _COUNT.search(sql) and source.search(sql) and "LIMIT" not in sql.upper():
            found.append(sql)
    return found


def likes_over_the_log(queries: list[dict]) -> list[str]:
    return [q["sql"] for q in queries if _FROM_LOG.search(q["sql"]) and " LIKE " in q["sql"]]


@pytest.fixture
def busy(alice, bob, lobby):
    rooms = [lobby] + [Room.objects.create(slug=f"room-{i}", name=f"Room {i}") for i in range(30)]
    for i, room in enumerate(rooms[:5]):
        log.append_events(
            [
                SendRequest(room.slug, who.id, who.username, f"hello number {n} in {i}", None)
                for n in range(30)
                for who in (alice, bob)
            ]
        )
    log.delete_message(Message.objects.get(room=lobby, seq=1).id)
    return rooms


PAGES = [
    "/admin/chat/message/",
    "/admin/chat/message/?p=1",
    "/admin/chat/message/?room=lobby",
    "/admin/chat/message/?room=lobby&p=1",
    "/admin/chat/message/?user=alice",
    "/admin/chat/message/?kind__exact=message",
    "/admin/chat/message/?deleted=yes",
    "/admin/chat/message/?q=hello",
    "/admin/chat/message/?q=hello&room=room-1",
    "/admin/chat/message/?q=%40bob",
    "/admin/chat/message/?_facets=True",
    "/admin/chat/message/?all=",
    "/admin/chat/room/",
    "/admin/chat/room/?q=room",
    "/admin/chat/room/?kind__exact=direct",
]


@pytest.mark.parametrize("path", PAGES)
def test_no_changelist_page_counts_the_log_unbounded(admin_client, busy, path):
    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(path)
    assert response.status_code == 200, path
    assert unbounded_counts(captured.captured_queries) == []
    assert likes_over_the_log(captured.captured_queries) == []


def test_the_check_sees_what_a_stock_changelist_would_do(busy):
    # Django's own paginator and full-result count, and the old per-room message count:
    # each is reported, so removing the protection fails the test above.
    with CaptureQueriesContext(connection) as captured:
        assert Paginator(Message.objects.all(), 100).count > 100
        Message.objects.filter(room__slug="lobby").count()
        list(
            Room.objects.raw(
                "SELECT r.id, (SELECT COUNT(*) FROM chat_message m WHERE m.room_id = r.id) n"
                " FROM chat_room r"
            )
        )
    assert len(unbounded_counts(captured.captured_queries)) == 3
    with CaptureQueriesContext(connection) as captured:
        list(Message.objects.filter(body__icontains="hello")[:5])
    assert likes_over_the_log(captured.captured_queries)


def test_search_finds_by_the_index_and_narrows_by_room(admin_client, busy):
    shown = admin_client.get("/admin/chat/message/?q=hello+number+7").context["cl"].result_list
    assert {m.body.split(" in ")[0] for m in shown} == {"hello number 7"}
    assert len(shown) == 10  # 5 rooms x alice and bob
    in_room = admin_client.get("/admin/chat/message/?q=number+7&room=room-1").context["cl"]
    assert {m.room.slug for m in in_room.result_list} == {"room-1"}
    assert len(in_room.result_list) == 2
    # Query syntax is data, never an error page.
    assert admin_client.get('/admin/chat/message/?q="OR+NEAR(*').status_code == 200
    assert admin_client.get("/admin/chat/message/?q=%40bob").context["cl"].result_list
    assert not admin_client.get("/admin/chat/message/?q=!!!").context["cl"].result_list


def test_room_filter_is_typed_not_listed(admin_client, busy):
    html = admin_client.get("/admin/chat/message/").content.decode()
    assert "room__id__exact" not in html
    assert "room-29" not in html  # no list of every room in the sidebar
    assert 'name="room"' in html  # the text box
    page = admin_client.get("/admin/chat/message/?room=room-2&kind__exact=message")
    # The other filters ride along as hidden fields of each text filter's form.
    assert 'type="hidden" name="kind__exact" value="message"' in page.content.decode()
    assert {m.room.slug for m in page.context["cl"].result_list} == {"room-2"}
    # Within one room: newest seq first.
    seqs = [m.seq for m in page.context["cl"].result_list]
    assert seqs == sorted(seqs, reverse=True) and seqs[0] == 60


def test_room_changelist_links_each_room_to_its_messages(admin_client, busy):
    html = admin_client.get("/admin/chat/room/").content.decode()
    assert '/admin/chat/message/?room=lobby"' in html


def test_paginator_estimates_unfiltered_and_caps_filtered(busy):
    everything = Message.objects.all()
    rows = everything.count()
    assert estimated_rows(Message) >= rows if connection.vendor == "sqlite" else True
    assert bounded_count(everything, cap=7) == 7
    assert bounded_count(everything.filter(room__slug="lobby"), cap=10_000) == 61
    filtered = EstimatedCountPaginator(everything.filter(room__slug="room-1"), 25)
    assert (filtered.count, filtered.num_pages) == (60, 3)
    assert len(filtered.page(3).object_list) == 10


def test_filtered_counts_reach_ten_pages_past_the_one_shown(rf, busy):
    from django.contrib import admin as django_admin

    model_admin = django_admin.site.get_model_admin(Message)
    rows = Message.objects.filter(room__slug="lobby")
    for query, cap in (("", 1100), ("?p=3", 1300), ("?p=500", 51_000), ("?p=x", 1100)):
        paginator = model_admin.get_paginator(rf.get(f"/admin/chat/message/{query}"), rows, 100)
        assert paginator.cap == cap, query
    with CaptureQueriesContext(connection) as captured:
        assert EstimatedCountPaginator(rows, 10, cap=20).count == 20
    assert "LIMIT 20" in captured.captured_queries[-1]["sql"]


def test_a_table_keyed_by_text_is_estimated_too(db):
    from chat.models import Upload

    with CaptureQueriesContext(connection) as captured:
        assert estimated_rows(Upload, cap=50) == 0
    assert unbounded_counts(captured.captured_queries, "chat_upload") == []
