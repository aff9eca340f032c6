"""The parsers of untrusted wire input: numbers and JSON frames, each written once.

Every transport, and the JSON API, reads numbers (``since``, ``timeout``,
``Last-Event-ID``, ``before``, ``limit``) and JSON frames from clients. Each parser here
either returns a value or raises ``ValueError`` with a text fit for the client: never
another exception, which would be a 500 or a dropped connection.

Nothing here imports Django or Twisted: the Django side (``chat/api.py``) and the live
side share the same rules.
"""

from __future__ import annotations

import json
import re

# Seqs are 64-bit integers in the database; a larger number is not a seq (and would
# overflow the database's integer comparison), so it is refused rather than looked up.
MAX_INT = 2**63 - 1
# ASCII digits only. ``str.isdigit`` also accepts "¹" or "٣" (which ``int`` then refuses,
# or accepts: "٣" is 3), and ``int`` accepts " 7", "+7" and "7_0": a number on the wire
# is none of those. Nineteen digits hold every value up to MAX_INT.
_DIGITS = re.compile(r"[0-9]{1,19}")
_DIGITS_BYTES = re.compile(rb"[0-9]{1,19}")

# Client frames are flat objects (an ``attachments`` list is the deepest part of one).
# A bound far above that refuses pathological nesting before anything walks it.
MAX_FRAME_DEPTH = 32
_OPENERS = ("[", "{")


class FrameError(ValueError):
    """A frame that is not a JSON object we accept; ``str()`` is the text for the client."""


def parse_int(
    raw: str | bytes, name: str = "value", minimum: int = 0, maximum: int = MAX_INT
) -> int:
    """``raw`` as an integer in ``minimum..maximum`` written in ASCII digits.

    Raises ValueError (with a message naming ``name``) for anything else.
    """
    pattern = _DIGITS_BYTES if isinstance(raw, bytes) else _DIGITS
    if isinstance(raw, str | bytes) and pattern.fullmatch(raw):
        value = int(raw)
        if minimum <= value <= maximum:
            return value
    raise ValueError(f"{name} must be an integer from {minimum} to {maximum}.")


def parse_frame(data: str | bytes, max_bytes: int | None = None) -> dict:
    """A client frame: the JSON object in ``data`` (text, or UTF-8 bytes).

    Raises FrameError for anything else: not UTF-8, not JSON, nested deeper than
    MAX_FRAME_DEPTH (including nesting deep enough to exhaust Python's recursion limit
    inside ``json.loads``), a non-standard constant (NaN, Infinity), or not an object.
    The fields are not checked here: that is ``chat.live.validation``'s job, once, for
    every transport.
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise FrameError(f"The frame is over {max_bytes} bytes.")
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise FrameError("The frame is not UTF-8.") from None
    try:
        frame = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise FrameError("The frame is nested too deeply.") from None
    except ValueError:  # JSONDecodeError, and int() refusing a number of 4300+ digits
        raise FrameError("The frame is not JSON.") from None
    if not isinstance(frame, dict):
        raise FrameError("The frame is not a JSON object.")
    # Counting brackets (in C) is cheap; walking the value is only needed when they
    # could add up to more than the bound, which no well-formed frame comes near.
    if sum(data.count(c) for c in _OPENERS) > MAX_FRAME_DEPTH and _too_deep(frame):
        raise FrameError("The frame is nested too deeply.")
    return frame


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _too_deep(value: object) -> bool:
    """Whether ``value`` nests containers deeper than MAX_FRAME_DEPTH (no recursion)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_FRAME_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False
