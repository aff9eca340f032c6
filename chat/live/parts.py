"""The parts of the room check (chat/live/service.py ``CHECK_PARTS``): which rooms and
which inbox users one part of it checks. A key's part never changes, so every room and
every user is checked once a round, whoever comes and goes meanwhile."""

from __future__ import annotations

import zlib


def in_part(key: str | int, part: int, parts: int) -> bool:
    """Whether ``key`` (a room's slug, a user's id) is checked by ``part`` of ``parts``."""
    if parts <= 1:
        return True
    number = key if isinstance(key, int) else zlib.crc32(key.encode())
    return number % parts == part
