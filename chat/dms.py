"""Direct messages (PROTOCOL.md "Rooms, membership and permissions", ``POST /api/dms/``,
``/dm/<username>/``).

A direct room is a ``Room`` of ``kind=direct``: private, its members exactly the two users
(or one: a user's notes to self), never archived, no moderators but staff. Everything
else is what any private room has: the may-read rule (chat/access.py: members only) keeps
it out of everyone else's room list, search, inbox and live connections, and
chat/membership.py refuses to join or leave it.

Its slug is made of its two members' ids, ``dm-<low>-<high>`` (``dm-<id>-<id>`` for notes
to self), so "the direct room of these two" is one unique row whoever asks first: two
simultaneous ``open_direct`` calls insert the same slug, the database's unique index lets
one in, and the other reads the winner's room (``IntegrityError``, then a read). Ordinary
rooms may not take a ``dm-`` slug (``check_room``, used by the admin's form), so the
prefix always means this.

The room's stored ``name`` is both usernames, for the admin; each member sees it named by
the other (chat/room_objects.py ``direct_names``). The members are added with
``room.members.add`` in the creating transaction: the m2m signal makes both read
positions at ``last_seq``, which is 0 in a new room (PROTOCOL.md: "in a new direct room
it starts at 0"), and announces the change after the commit, which sends both members'
inbox streams a ``rooms`` frame (chat/live/inbox.py ``access_changed``), in this process
and, over the bus, in every other.
"""

from __future__ import annotations

import re

from django import forms
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from chat.live.validation import storable
from chat.models import Room

PREFIX = "dm-"
_DIRECT_SLUG = re.compile(r"dm-([1-9][0-9]{0,20})-([1-9][0-9]{0,20})\Z")
# Room.name's max_length; two long usernames are cut (the name is for the admin only).
_NAME_CHARS = 100


class NoSuchUser(Exception):
    """No active account has that username (the API's 404)."""


def direct_slug(first_id: int, second_id: int) -> str:
    """The slug of the direct room of two user ids, whichever order they come in."""
    low, high = sorted((int(first_id), int(second_id)))
    return f"{PREFIX}{low}-{high}"


def participants(slug: str) -> tuple[int, int] | None:
    """The two user ids a direct room's slug names (equal for notes to self), or None."""
    match = _DIRECT_SLUG.match(slug)
    if match is None:
        return None
    return int(match.group(1)), int(match.group(2))


def find_user(username: str):
    """The active account of ``username``: exact, else the one account whose username
    matches ignoring case (people type "Bob" for "bob"). Raises NoSuchUser."""
    users = get_user_model()._default_manager.filter(is_active=True)
    field = get_user_model().USERNAME_FIELD
    if not username or not storable(username):
        raise NoSuchUser(username)
    found = users.filter(**{field: username}).first()
    if found is not None:
        return found
    loose = list(users.filter(**{f"{field}__iexact": username})[:2])
    if len(loose) == 1:
        return loose[0]
    raise NoSuchUser(username)


def open_direct(user, other) -> tuple[Room, bool]:
    """The direct room of ``user`` and ``other`` (two accounts, or the same one), made if
    needed; True when this call made it.

    Safe against itself: a concurrent call that made the room first wins, this one reads
    it. A member missing from an existing room (an account the admin took out) is put
    back: the slug says who the room is for.
    """
    room = Room.objects.filter(slug=direct_slug(user.pk, other.pk)).first()
    if room is None:
        room, created = create_or_get(user, other)
        if created:
            return room, True
    wanted = {user.pk, other.pk}
    missing = wanted - set(
        Room.members.through.objects.filter(room_id=room.pk).values_list("user_id", flat=True)
    )
    if missing:
        room.members.add(*missing)
    return room, False


def create_or_get(user, other) -> tuple[Room, bool]:
    """Insert the direct room of the two; when the unique slug says another request made
    it first (between our read and this insert), that room. True when this made it."""
    slug = direct_slug(user.pk, other.pk)
    try:
        with transaction.atomic():
            names = sorted({user.get_username(), other.get_username()})
            room = Room.objects.create(
                slug=slug,
                name=", ".join(names)[:_NAME_CHARS],
                kind=Room.Kind.DIRECT,
                is_public=False,
            )
            # m2m_changed: the read positions (at 0) and the access notice after commit.
            room.members.add(user.pk, other.pk)
        return room, True
    except IntegrityError:
        return Room.objects.get(slug=slug), False


def check_room(slug: str, kind: str, is_public: bool, is_archived: bool, member_ids) -> None:
    """Raises ValidationError (by field) when a room's fields break the direct-room rules:
    a ``dm-`` slug on a room that is not direct; a direct room that is public, archived,
    not on its own kind of slug, or has a member its slug does not name. For the admin's
    form (chat/admin/room_admin.py); ``open_direct`` makes only valid rooms."""
    errors: dict[str, str] = {}
    if kind != Room.Kind.DIRECT:
        if slug and slug.startswith(PREFIX):
            errors["slug"] = f"Slugs starting with “{PREFIX}” are kept for direct messages."
        if errors:
            raise ValidationError(errors)
        return
    pair = participants(slug or "")
    if pair is None:
        errors["slug"] = "A direct room's slug is dm-<user id>-<user id>."
    if is_public:
        errors["is_public"] = "A direct room is always private."
    if is_archived:
        errors["is_archived"] = "A direct room is never archived."
    if pair is not None and member_ids is not None:
        strangers = set(member_ids) - set(pair)
        if strangers:
            errors["members"] = (
                "A direct room's members are its two users only; nobody else can be added."
            )
    if errors:
        raise ValidationError(errors)


class RoomForm(forms.ModelForm):
    """The admin's room form with the direct-room rules (``check_room``): staff see
    direct rooms, but cannot add a third member, a moderator, make one public or
    archived, nor give an ordinary room a ``dm-`` slug. Subclass it for other checks."""

    class Meta:
        model = Room
        fields = "__all__"

    def clean(self) -> dict:
        data = super().clean()
        room = self.instance
        members = data.get("members")
        moderators = data.get("moderators")
        kind = data.get("kind", room.kind)
        slug = data.get("slug", room.slug)
        try:
            check_room(
                slug or "",
                kind,
                data.get("is_public", room.is_public),
                data.get("is_archived", room.is_archived),
                None if members is None else [u.pk for u in members],
            )
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                self.add_error(field if field in self.fields else None, messages)
        if kind == Room.Kind.DIRECT and moderators:
            self.add_error(
                "moderators" if "moderators" in self.fields else None,
                "A direct room has no moderators but staff.",
            )
        return data
