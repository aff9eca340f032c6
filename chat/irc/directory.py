"""What the IRC gateway asks the database: logins, a channel's access, the room list,
recent history, direct rooms. ``Directory`` runs each reader in the store's threads
(``Store.run``), never on the reactor; the unit tests of the protocol give it a fake.

Store-thread readers (below the class): each imports Django inside the function, as
chat/live/inbox_reads.py does, so that importing this module touches no ORM.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import defer

from chat.live.records import RoomInfo, UserInfo

HISTORY_MESSAGES = 50  # PROTOCOL.md: JOIN replays the last 50 messages
MAX_LISTED = 1000  # LIST answers at most this many rooms
MAX_DIRECT = 200  # direct rooms followed per connection (newest first)


@dataclass(frozen=True)
class Login:
    """A login's answer: the user (None: refused), and the credential key the live side
    re-checks the connection with (a token's; None for a password login)."""

    user: UserInfo | None
    credential: str | None = None


@dataclass(frozen=True)
class Channel:
    """A room as a channel: ``refusal`` is the numeric of a JOIN that may not (403, 473,
    474), else None; ``room`` the live side's RoomInfo."""

    room: RoomInfo | None
    refusal: str | None
    name: str = ""
    topic: str = ""
    history: tuple[dict, ...] = ()
    last_seq: int = 0


class Directory:
    def __init__(self, store) -> None:
        self.store = store

    def token_login(self, secret: str) -> defer.Deferred[Login]:
        return self.store.run(token_login, secret)

    def password_login(
        self, username: str, password: str, address: str = ""
    ) -> defer.Deferred[Login]:
        return self.store.run(password_login, username, password, address)

    def signs_in(self, credential: str) -> defer.Deferred[UserInfo | None]:
        """Whom a token's credential key signs in now (None: revoked, expired)."""
        from chat.tokens import credential_user

        return self.store.run(credential_user, credential)

    def channel(self, user_id: int, slug: str, history: bool) -> defer.Deferred[Channel]:
        return self.store.run(channel, user_id, slug, history)

    def rooms(self, user_id: int) -> defer.Deferred[list[tuple[str, int, str]]]:
        return self.store.run(listed_rooms, user_id)

    def direct_room(self, user_id: int, nick: str) -> defer.Deferred[tuple[RoomInfo, str] | None]:
        return self.store.run(direct_room, user_id, nick)

    def direct_rooms(self, user_id: int) -> defer.Deferred[list[tuple[RoomInfo, str]]]:
        return self.store.run(direct_rooms, user_id)


# -- store-thread readers -----------------------------------------------------------------


def _user_info(user) -> UserInfo:
    return UserInfo(user.pk, user.get_username())


def token_login(secret: str) -> Login:
    from chat import tokens

    token = tokens.check(secret)
    if token is None:
        return Login(None)
    return Login(_user_info(token.user), tokens.credential(secret))


def password_login(username: str, password: str, address: str = "") -> Login:
    """SASL PLAIN: a token as the password signs in its own user; otherwise Django's
    authenticate(), whose backends refuse bots (chat/token_auth.py) and inactive users,
    and count failures per username and address (django-axes' lockout, as the login
    page's: it wants a request, so it gets one saying where the IRC client is)."""
    from django.contrib.auth import authenticate
    from django.http import HttpRequest

    if password.startswith("prl_"):
        login = token_login(password)
        if login.user is not None and login.user.username.lower() == username.lower():
            return login
        return Login(None)
    request = HttpRequest()
    request.method = "POST"
    request.path = request.path_info = "/irc/sasl/"
    request.META.update(REMOTE_ADDR=address or "0.0.0.0", HTTP_USER_AGENT="IRC gateway")
    user = authenticate(request, username=username, password=password)
    return Login(_user_info(user) if user is not None else None)


def _room_info(room) -> RoomInfo:
    return RoomInfo(room.id, room.slug, room.is_public, room.is_archived, room.last_seq)


def channel(user_id: int, slug: str, history: bool) -> Channel:
    """The room ``#slug`` for ``user_id``: 403 no such channel (or a direct room: those are
    PRIVMSG nick), 474 banned, 473 private and not a member; with ``history``, its last
    messages in their current state and the seq they are read at."""
    from chat import access
    from chat.history import current_events
    from chat.models import Message, Room

    room = Room.objects.filter(slug=slug).first()
    if room is None or room.kind == Room.Kind.DIRECT:
        return Channel(None, "403")
    info = _room_info(room)
    if access.is_banned(room.id, user_id):
        return Channel(info, "474")
    if not access.may_read(info, user_id):
        return Channel(info, "473")
    events: tuple[dict, ...] = ()
    if history:
        rows = list(
            # At or below the last_seq read above: the feed subscribes with since=it, so
            # a message committed in between comes once, from the room's replay.
            Message.objects.filter(
                room_id=room.id, kind="message", deleted_at__isnull=True, seq__lte=room.last_seq
            )
            .select_related("user")
            .order_by("-seq")[:HISTORY_MESSAGES]
        )
        rows.reverse()
        events = tuple(current_events(room.id, room.slug, rows))
    return Channel(info, None, room.name, room.description, events, room.last_seq)


def listed_rooms(user_id: int) -> list[tuple[str, int, str]]:
    """LIST: (slug, members, description) of the rooms the user may read (not direct)."""
    from django.db.models import Count

    from chat import access
    from chat.models import Room

    rooms = access.visible_rooms(Room.objects.exclude(kind=Room.Kind.DIRECT), user_id)
    rows = rooms.annotate(n=Count("members")).order_by("slug")[:MAX_LISTED]
    return [(room.slug, room.n, room.description) for room in rows]


def direct_room(user_id: int, nick: str) -> tuple[RoomInfo, str] | None:
    """PRIVMSG nick: the direct room of the two (made when needed), and the other's name."""
    from django.contrib.auth import get_user_model

    from chat import dms

    me = get_user_model()._default_manager.filter(pk=user_id, is_active=True).first()
    if me is None:
        return None
    try:
        other = dms.find_user(nick)
    except dms.NoSuchUser:
        return None
    room, _created = dms.open_direct(me, other)
    room.refresh_from_db(fields=["last_seq"])
    return _room_info(room), other.get_username()


def direct_rooms(user_id: int) -> list[tuple[RoomInfo, str]]:
    """The user's direct rooms (newest activity first), each with the other's name (their
    own for notes to self)."""
    from django.contrib.auth import get_user_model

    from chat import dms
    from chat.models import Room

    rooms = list(
        Room.objects.filter(kind=Room.Kind.DIRECT, members=user_id).order_by("-last_seq")[
            :MAX_DIRECT
        ]
    )
    others: dict[str, int] = {}
    for room in rooms:
        pair = dms.participants(room.slug)
        if pair is not None:
            others[room.slug] = pair[1] if pair[0] == user_id else pair[0]
    users = get_user_model()._default_manager.filter(pk__in=set(others.values()))
    names = {user.pk: user.get_username() for user in users}
    return [
        (_room_info(room), names[others[room.slug]])
        for room in rooms
        if others.get(room.slug) in names
    ]
