"""Who may read and post (chat/access.py, used by every door), and the live Origin rule."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from hypothesis import example, given
from hypothesis import strategies as st

from chat import access, log
from chat.live.auth import _resolve_access, origin_allowed, parse_origin, server_origin
from chat.live.records import RoomInfo, SendRequest
from chat.models import Room


@pytest.fixture
def rooms(rooms, alice):
    """tests/unit/conftest.py's rooms, and a private archived one of alice's."""
    vault = Room.objects.create(slug="vault", name="Vault", is_public=False, is_archived=True)
    vault.members.add(alice)
    return {**rooms, "vault": vault}


# (room, who) -> (may read, may post); who: alice is a member of the private rooms.
RULE = {
    ("lobby", "anonymous"): (True, False),
    ("lobby", "alice"): (True, True),
    ("lobby", "bob"): (True, True),
    ("secret", "anonymous"): (False, False),
    ("secret", "alice"): (True, True),
    ("secret", "bob"): (False, False),
    ("attic", "anonymous"): (True, False),
    ("attic", "alice"): (True, False),
    ("vault", "alice"): (True, False),
    ("vault", "bob"): (False, False),
}


@pytest.mark.django_db
@pytest.mark.parametrize(("slug", "who"), list(RULE))
def test_the_rule_is_the_same_through_every_door(rooms, alice, bob, slug, who):
    """The model methods (views, templates), the id functions (API, live auth) and the
    batch forms (the log) all give the same answer, because they are one function."""
    user = {"anonymous": AnonymousUser(), "alice": alice, "bob": bob}[who]
    user_id = access.user_id_of(user)
    room = rooms[slug]
    info = RoomInfo(room.id, room.slug, room.is_public, room.is_archived, room.last_seq)
    read, post = RULE[slug, who]
    assert (room.can_read(user), room.can_post(user)) == (read, post)
    assert (access.may_read(info, user_id), access.may_post(info, user_id)) == (read, post)
    assert ((room.id, user_id) in access.readers([(room, user_id)])) == read
    assert ((room.id, user_id) in access.posters([(info, user_id)])) == post
    assert (room in Room.objects.visible_to(user)) == read


@pytest.mark.django_db
def test_user_id_of():
    assert access.user_id_of(None) is None
    assert access.user_id_of(AnonymousUser()) is None


@pytest.mark.django_db
def test_the_batch_form_asks_the_database_once_for_every_pair(
    rooms, alice, bob, django_assert_num_queries
):
    pairs = [(rooms[slug], user.id) for slug in rooms for user in (alice, bob)]
    pairs += [(rooms["secret"], None), (rooms["lobby"], None)]
    with django_assert_num_queries(1):
        allowed = access.posters(pairs)
    assert allowed == {
        (rooms["lobby"].id, alice.id),
        (rooms["lobby"].id, bob.id),
        (rooms["secret"].id, alice.id),
    }
    with django_assert_num_queries(0):  # public rooms alone need no query
        assert access.readers([(rooms["lobby"], None)]) == {(rooms["lobby"].id, None)}


@pytest.mark.django_db
def test_the_log_posts_by_the_rule(rooms, alice, bob):
    def send(user, slug):
        return SendRequest(slug, user.id, user.username, "hi", None)

    results = log.append_events(
        [send(bob, "secret"), send(alice, "secret"), send(alice, "vault"), send(bob, "lobby")]
    )
    assert [r.error for r in results] == ["forbidden", None, "forbidden", None]


@pytest.mark.django_db(transaction=True)
def test_live_auth_reads_by_the_rule(rooms, alice, bob, client):
    client.force_login(bob)
    bob_session = client.session.session_key
    assert _resolve_access(bob_session, "secret").can_read is False
    assert _resolve_access(bob_session, "lobby").can_read is True
    assert _resolve_access(None, "secret").can_read is False
    client.force_login(alice)
    access_ = _resolve_access(client.session.session_key, "secret")
    assert access_.can_read is True and access_.user.username == "alice"
    assert _resolve_access(None, "nowhere").room is None


# --------------------------------------------------------------------------- Origin

ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "chat.example.com"]


def own(scheme: str, host: str):
    return server_origin(scheme, host, ALLOWED_HOSTS)


@pytest.mark.parametrize(
    ("origin", "scheme", "host"),
    [
        ("http://127.0.0.1:8000", "http", "127.0.0.1:8000"),
        ("http://localhost:8000", "http", "localhost:8000"),
        ("http://chat.example.com", "http", "chat.example.com:80"),  # default ports
        ("http://chat.example.com:80", "http", "chat.example.com"),
        ("https://chat.example.com", "https", "chat.example.com:443"),
        ("https://chat.example.com:443", "https", "chat.example.com"),
        ("HTTP://Chat.Example.COM:8000", "http", "chat.example.com:8000"),  # case
        ("http://chat.example.com:8000", "HTTP", "CHAT.example.com:8000"),
        ("http://[::1]:8000", "http", "[::1]:8000"),  # IPv6
        ("http://[0:0:0:0:0:0:0:1]:8000", "http", "[::1]:8000"),
        (" http://127.0.0.1:8000 ", "http", "127.0.0.1:8000"),
    ],
)
def test_the_own_origin_is_allowed(origin, scheme, host):
    assert origin_allowed(origin, own(scheme, host))


@pytest.mark.parametrize(
    ("origin", "scheme", "host"),
    [
        ("http://127.0.0.1:8001", "http", "127.0.0.1:8000"),  # another port: the bug
        ("http://127.0.0.1", "http", "127.0.0.1:8000"),
        ("http://127.0.0.1:8000", "http", "127.0.0.1"),
        ("https://127.0.0.1:8000", "http", "127.0.0.1:8000"),  # another scheme
        ("http://chat.example.com", "https", "chat.example.com"),
        ("https://chat.example.com:80", "https", "chat.example.com"),
        ("http://localhost:8000", "http", "127.0.0.1:8000"),  # another name of the host
        ("http://[::1]:8000", "http", "127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http", "127.0.0.1:8000"),  # an origin has no path
        ("http://127.0.0.1:8000/rooms", "http", "127.0.0.1:8000"),
        ("http://127.0.0.1:8000?x", "http", "127.0.0.1:8000"),
        ("http://user@127.0.0.1:8000", "http", "127.0.0.1:8000"),
        ("http://127.0.0.1.evil.example:8000", "http", "127.0.0.1:8000"),
        ("http://evil.example:8000", "http", "evil.example:8000"),  # not an allowed host
    ],
)
def test_another_origin_is_refused(origin, scheme, host):
    assert not origin_allowed(origin, own(scheme, host))


@pytest.mark.parametrize(
    "origin",
    [
        "null",
        "",
        " ",
        "127.0.0.1:8000",
        "//127.0.0.1:8000",
        "http://",
        "http://:8000",
        "http://127.0.0.1:",
        "http://127.0.0.1:0",
        "http://127.0.0.1:65536",
        "http://127.0.0.1:99999999",
        "http://127.0.0.1:\uff18\uff10\uff10\uff10",  # fullwidth digits
        "http://127.0.0.1:+80",
        "http://[::1",
        "http://[::g]:8000",
        "http://[127.0.0.1]:8000",
        "http://a b:8000",
        "http://-bad-.example",
        "ftp://127.0.0.1:8000",
        "file://",
        "javascript:alert(1)",
        "http://\u0441hat.example.com",  # a Cyrillic letter: browsers send punycode
        "http://127.0.0.1:8000\x00",
        "http://127.0.0.1:8000\ud800",
    ],
)
def test_garbage_and_null_are_refused(origin):
    assert parse_origin(origin) is None
    assert not origin_allowed(origin, own("http", "127.0.0.1:8000"))


def test_no_origin_is_a_non_browser_client_and_allowed():
    assert origin_allowed(None, own("http", "127.0.0.1:8000"))
    assert origin_allowed(None, None)


@pytest.mark.parametrize("host", [None, "", "evil.example:8000", "127.0.0.1:x", "[::1"])
def test_a_host_that_is_not_ours_gives_no_own_origin(host):
    assert own("http", host) is None
    assert not origin_allowed("http://evil.example:8000", own("http", host))


TRUSTED = ["https://chat.example.org", "https://*.example.net", "http://localhost:3000/"]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://chat.example.org", True),
        ("https://chat.example.org:443", True),
        ("http://chat.example.org", False),
        ("https://chat.example.org:8443", False),
        ("https://other.example.org", False),
        ("https://a.example.net", True),
        ("https://a.b.example.net", True),
        ("https://example.net", True),  # as Django's is_same_domain
        ("https://badexample.net", False),
        ("http://a.example.net", False),
        ("http://localhost:3000", True),  # the setting's trailing slash is forgiven
        ("http://localhost:3001", False),
    ],
)
def test_trusted_origins_as_in_csrf_trusted_origins(origin, allowed):
    assert origin_allowed(origin, own("http", "127.0.0.1:8000"), TRUSTED) is allowed
    assert origin_allowed(origin, None, TRUSTED) is allowed


hosts = st.sampled_from(["127.0.0.1", "localhost", "[::1]", "chat.example.com"])


@given(st.text() | st.from_regex(r"\Ahttps?://[a-z0-9.:\[\]-]{0,30}(:[0-9]{0,6})?\Z"))
@example("http://[::1]:8000")
@example("http://127.0.0.1:8000\n")
def test_any_origin_header_is_a_clean_yes_or_no(origin):
    """Whatever the header holds, the check answers (no exception), and yes only for
    the server's own origin."""
    allowed = origin_allowed(origin, own("http", "127.0.0.1:8000"))
    assert allowed is (parse_origin(origin.strip()) == ("http", "127.0.0.1", 8000))


@given(
    scheme=st.sampled_from(["http", "https"]),
    host=hosts,
    port=st.integers(min_value=1, max_value=65535),
    other=st.integers(min_value=1, max_value=65535),
)
def test_an_origin_is_its_scheme_host_and_port(scheme, host, port, other):
    server = own(scheme, f"{host}:{port}")
    assert origin_allowed(f"{scheme}://{host}:{port}", server)
    assert origin_allowed(f"{scheme}://{host}:{other}", server) is (other == port)
    flipped = "https" if scheme == "http" else "http"
    assert not origin_allowed(f"{flipped}://{host}:{port}", server)
