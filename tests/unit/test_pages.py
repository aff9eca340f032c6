"""The pages: room list, room page (the DOM contract of the ui/ modules), signup, login, logout.

The accounts (alice, mallory) and rooms (lobby, secret, attic) are tests/unit/conftest.py's.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from chat import log
from chat.live.records import SendRequest
from chat.models import Message, Room

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("plain_static_storage")]

HOSTILE = "<img src=x onerror=alert(1)>"
PASSWORD = "correct-horse-battery-9"  # of the accounts these tests sign up


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Element | None) -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element] = []
        self.text_parts: list[str] = []

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Element]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and (cls is None or cls in child.classes):
                found.append(child)
            found.extend(child.find_all(tag, cls))
        return found

    def find(self, tag: str | None = None, cls: str | None = None) -> Element:
        (element,) = self.find_all(tag, cls)
        return element

    def by_id(self, element_id: str) -> Element:
        (element,) = [e for e in self.find_all() if e.attrs.get("id") == element_id]
        return element

    def has_ancestor(self, other: Element) -> bool:
        node = self.parent
        while node is not None:
            if node is other:
                return True
            node = node.parent
        return False


class Page(HTMLParser):
    """A small DOM of a rendered page; attribute values and text are unescaped."""

    VOID = {"meta", "link", "img", "input", "br", "hr", "source", "path", "circle", "rect"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {}, None)
        self.stack = [self.root]
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs), self.stack[-1])
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1].children.append(Element(tag, dict(attrs), self.stack[-1]))

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data):
        for element in self.stack[1:]:
            element.text_parts.append(data)


def page_of(response) -> Element:
    assert response.status_code == 200
    return Page(response.content.decode()).root


def say(user, body: str, room: str = "lobby", client_id: str | None = None) -> int:
    (result,) = log.append_events([SendRequest(room, user.id, user.username, body, client_id)])
    return result.seq


# room list


def test_room_list_anonymous(client, rooms):
    root = page_of(client.get("/"))
    cards = root.find_all("li", "room-card")
    assert [c.find(cls="room-name").text.strip() for c in cards] == ["Attic", "Lobby"]
    assert "Secret Garden" not in client.get("/").content.decode()
    lobby = cards[1]
    assert lobby.find("a").attrs["href"] == "/rooms/lobby/"
    assert lobby.find(cls="room-description").text == "Everyone's welcome"
    assert not lobby.find_all(cls="badge")
    assert cards[0].find(cls="badge").text == "archived"
    links = {a.attrs["href"].split("?")[0] for a in root.find("nav").find_all("a")}
    assert {"/accounts/login/", "/accounts/signup/"} <= links
    assert not root.find("nav").find_all("form")


def test_room_list_member_sees_private_room_with_lock_and_logout(client, rooms, alice):
    client.force_login(alice)
    root = page_of(client.get("/"))
    cards = {c.find(cls="room-name").text.strip(): c for c in root.find_all("li", "room-card")}
    assert list(cards) == ["Attic", "Lobby", "Secret Garden"]
    assert cards["Secret Garden"].find_all(cls="lock")
    assert not cards["Lobby"].find_all(cls="lock")
    nav = root.find("nav")
    assert nav.find(cls="account-name").text == "alice"
    logout = nav.find("form")
    assert (logout.attrs["method"], logout.attrs["action"]) == ("post", "/accounts/logout/")
    assert logout.find("input").attrs["name"] == "csrfmiddlewaretoken"


def test_room_list_non_member_does_not_see_private_room(client, rooms, mallory):
    client.force_login(mallory)
    assert "Secret Garden" not in client.get("/").content.decode()


def test_pages_refuse_post(client, rooms):
    assert client.post("/").status_code == 405
    assert client.post("/rooms/lobby/").status_code == 405


# room page: permissions


def test_room_unknown_slug_is_404(client, rooms):
    assert client.get("/rooms/nowhere/").status_code == 404


def test_private_room_sends_anonymous_to_login(client, rooms):
    response = client.get("/rooms/secret/?transport=ws")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/rooms/secret/%3Ftransport%3Dws"


def test_private_room_is_403_for_a_non_member(client, rooms, mallory):
    client.force_login(mallory)
    response = client.get("/rooms/secret/")
    assert response.status_code == 403
    assert "Secret Garden" not in response.content.decode()


def test_private_room_is_open_to_a_member(client, rooms, alice):
    client.force_login(alice)
    main = page_of(client.get("/rooms/secret/")).by_id("room")
    assert main.attrs["data-room"] == "secret"
    assert main.attrs["data-can-post"] == "1"


# room page: the DOM contract


def test_room_page_dom_contract(client, rooms, alice, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 1234
    say(alice, "hello world", client_id="c-7f3a")
    say(alice, "no id")
    client.force_login(alice)

    root = page_of(client.get("/rooms/lobby/"))

    main = root.by_id("room")
    assert main.tag == "main"
    assert {k: v for k, v in main.attrs.items() if k.startswith("data-")} == {
        "data-room": "lobby",
        "data-user": "alice",
        "data-can-post": "1",
        "data-archived": "0",
        "data-last-seq": "2",
        "data-history-url": "/api/rooms/lobby/messages/",
        "data-ws-url": "/ws/rooms/lobby/",
        "data-sse-url": "/events/rooms/lobby/",
        "data-poll-url": "/poll/rooms/lobby/",
        "data-transport": "",
    }
    state = root.by_id("conn-state")
    assert (state.tag, state.attrs["data-state"], state.text) == (
        "span",
        "connecting",
        "connecting…",
    )
    assert root.by_id("presence").tag == "ul"
    typing = root.by_id("typing")
    assert (typing.tag, typing.attrs["aria-live"]) == ("div", "polite")

    messages = root.by_id("messages")
    assert messages.tag == "ol"
    items = messages.find_all("li")
    assert [li.classes for li in items] == [["msg"], ["msg"]]
    first, second = items
    assert (first.attrs["data-seq"], first.attrs["data-client-id"]) == ("1", "c-7f3a")
    assert (second.attrs["data-seq"], second.attrs["data-client-id"]) == ("2", "")
    assert first.find("span", "msg-user").text == "alice"
    assert first.find("div", "msg-body").text == "hello world"
    ts = first.find("time", "msg-ts")
    created = Message.objects.get(room=rooms["lobby"], seq=1).created_at
    assert ts.attrs["datetime"] == created.isoformat()
    assert ts.text == created.strftime("%H:%M")

    composer = root.by_id("composer")
    assert composer.tag == "form"
    textarea = composer.find("textarea")
    assert textarea.attrs["name"] == "body"
    assert textarea.attrs["maxlength"] == "1234"
    assert "disabled" not in textarea.attrs
    button = composer.find("button", cls="send-button")  # not the attach button
    assert (button.attrs["type"], button.text) == ("submit", "Send")
    assert "disabled" not in button.attrs
    # The hint is there for the client to show if posting ends (the room archived), hidden.
    assert all("hidden" in hint.attrs for hint in composer.find_all(cls="composer-hint"))
    for element in (state, root.by_id("presence"), messages, typing, composer):
        assert element.has_ancestor(main)

    csrf = [i for i in root.find_all("input") if i.attrs.get("name") == "csrfmiddlewaretoken"]
    assert csrf and all(i.attrs["value"] for i in csrf)
    assert client.cookies["csrftoken"].value
    (script,) = [s for s in root.find_all("script") if s.attrs.get("src")]
    assert script.attrs["src"] == "/static/chat/ui/app.js"
    assert script.attrs["type"] == "module"


def test_room_page_for_anonymous_disables_the_composer(client, rooms, alice):
    say(alice, "hi")
    root = page_of(client.get("/rooms/lobby/"))
    main = root.by_id("room")
    assert (main.attrs["data-user"], main.attrs["data-can-post"]) == ("", "0")
    composer = root.by_id("composer")
    assert "disabled" in composer.find("textarea").attrs
    assert "disabled" in composer.find("button", cls="send-button").attrs
    assert "log in to post" in composer.find(cls="composer-hint").text.lower()
    assert [li.attrs["data-seq"] for li in root.by_id("messages").find_all("li")] == ["1"]
    # The long-poll client of an anonymous reader still finds a token on the page.
    assert client.cookies["csrftoken"].value


def test_archived_room_disables_the_composer(client, rooms, alice):
    client.force_login(alice)
    root = page_of(client.get("/rooms/attic/"))
    main = root.by_id("room")
    assert (main.attrs["data-archived"], main.attrs["data-can-post"]) == ("1", "0")
    composer = root.by_id("composer")
    assert "disabled" in composer.find("textarea").attrs
    assert "disabled" in composer.find("button", cls="send-button").attrs
    assert "archived" in composer.find(cls="composer-hint").text


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("transport=ws", "ws"),
        ("transport=sse", "sse"),
        ("transport=longpoll", "longpoll"),
        ("transport=carrier-pigeon", ""),
        ("transport=%22%3E%3Cscript%3Ealert(1)%3C/script%3E", ""),
        ("", ""),
    ],
)
def test_room_page_transport_override(client, rooms, query, expected):
    response = client.get(f"/rooms/lobby/?{query}")
    assert page_of(response).by_id("room").attrs["data-transport"] == expected
    assert "<script>alert(1)" not in response.content.decode()


def test_room_page_renders_only_the_last_50_events(client, rooms, alice):
    log.append_events(
        [SendRequest("lobby", alice.id, "alice", f"m{i}", None) for i in range(1, 61)]
    )
    items = page_of(client.get("/rooms/lobby/")).by_id("messages").find_all("li")
    assert [int(li.attrs["data-seq"]) for li in items] == list(range(11, 61))
    assert page_of(client.get("/rooms/lobby/")).by_id("room").attrs["data-last-seq"] == "60"


def test_deleted_message_is_shown_as_deleted_without_its_body(client, rooms, alice):
    say(alice, "before")
    say(alice, "a secret I regret")
    say(alice, "after")
    log.delete_message(Message.objects.get(room=rooms["lobby"], seq=2).id)

    response = client.get("/rooms/lobby/")
    root = page_of(response)

    items = root.by_id("messages").find_all("li")
    # seq 4 is the `deleted` event: it is not a line of its own.
    assert [li.attrs["data-seq"] for li in items] == ["1", "2", "3"]
    deleted = items[1]
    assert deleted.classes == ["msg", "deleted"]
    assert deleted.find("div", "msg-body").text == "This message was deleted."
    assert "a secret I regret" not in response.content.decode()
    assert root.by_id("room").attrs["data-last-seq"] == "4"


def test_hostile_body_is_rendered_as_text(client, rooms, alice):
    say(alice, HOSTILE, client_id='"><b>id</b>')
    response = client.get("/rooms/lobby/")
    html = response.content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert HOSTILE not in html
    assert "<b>id</b>" not in html
    root = page_of(response)
    (li,) = root.by_id("messages").find_all("li")
    assert li.find("div", "msg-body").text == HOSTILE
    assert li.attrs["data-client-id"] == '"><b>id</b>'
    assert not li.find_all("img")


def test_hostile_room_fields_and_username_are_escaped(client, django_user_model):
    evil = django_user_model.objects.create_user("<i>eve</i>", password=PASSWORD)
    Room.objects.create(slug="evil", name="<script>x()</script>", description=HOSTILE)
    say(evil, "hi", room="evil")
    client.force_login(evil)
    for url in ("/", "/rooms/evil/"):
        html = client.get(url).content.decode()
        assert "<script>x()</script>" not in html
        assert HOSTILE not in html
        assert "<i>eve</i>" not in html
        assert "&lt;i&gt;eve&lt;/i&gt;" in html


# accounts


def test_signup_creates_the_user_signs_in_and_goes_home(client, django_user_model):
    form = page_of(client.get("/accounts/signup/"))
    names = {i.attrs.get("name") for i in form.find_all("input")}
    assert {"username", "password1", "password2", "csrfmiddlewaretoken"} <= names

    response = client.post(
        "/accounts/signup/",
        {"username": "newbie", "password1": PASSWORD, "password2": PASSWORD},
    )

    assert response.status_code == 302
    assert response["Location"] == "/"
    user = django_user_model.objects.get(username="newbie")
    assert user.check_password(PASSWORD)
    assert client.session["_auth_user_id"] == str(user.pk)
    home = page_of(client.get("/"))
    assert home.find(cls="account-name").text == "newbie"


def test_signup_follows_a_safe_next(client):
    response = client.post(
        "/accounts/signup/?next=/rooms/lobby/",
        {"username": "newbie", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response["Location"] == "/rooms/lobby/"


@pytest.mark.parametrize("unsafe", ["https://evil.example/", "//evil.example/", "javascript:x"])
def test_signup_ignores_an_unsafe_next(client, unsafe):
    response = client.post(
        "/accounts/signup/",
        {"username": "newbie", "password1": PASSWORD, "password2": PASSWORD, "next": unsafe},
    )
    assert response["Location"] == "/"


def test_signup_with_errors_shows_the_form_again(client, django_user_model, alice):
    mismatch = client.post(
        "/accounts/signup/",
        {"username": "newbie", "password1": PASSWORD, "password2": PASSWORD + "x"},
    )
    taken = client.post(
        "/accounts/signup/", {"username": "alice", "password1": PASSWORD, "password2": PASSWORD}
    )
    for response in (mismatch, taken):
        assert response.status_code == 200
        assert page_of(response).find_all(cls="field-error")
    assert not django_user_model.objects.filter(username="newbie").exists()
    assert "_auth_user_id" not in client.session


def test_login_page_and_login(client, alice, user_password):
    root = page_of(client.get("/accounts/login/?next=/rooms/lobby/"))
    form = root.find("form", "stack-form")
    assert form.attrs["method"] == "post"
    inputs = {i.attrs.get("name"): i for i in form.find_all("input")}
    assert inputs["next"].attrs["value"] == "/rooms/lobby/"
    assert {"username", "password", "csrfmiddlewaretoken"} <= set(inputs)

    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": user_password, "next": "/rooms/lobby/"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/rooms/lobby/"
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_login_without_next_goes_home(client, alice, user_password):
    response = client.post("/accounts/login/", {"username": "alice", "password": user_password})
    assert response["Location"] == "/"


def test_login_with_a_wrong_password_shows_an_error(client, alice):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert page_of(response).find_all(cls="form-errors")
    assert "_auth_user_id" not in client.session


def test_logout_is_a_post_and_signs_out(client, alice):
    client.force_login(alice)
    assert client.get("/accounts/logout/").status_code == 405
    assert client.session.get("_auth_user_id") == str(alice.pk)
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert "_auth_user_id" not in client.session


def test_csrf_is_enforced_on_the_account_forms(alice, user_password):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = strict.post("/accounts/login/", {"username": "alice", "password": user_password})
    assert response.status_code == 403
