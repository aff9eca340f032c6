"""IRC lines: framing bounds, IRCv3 message tags (parsed and serialized), the rest parsed
by Twisted's ``irc.parsemsg``.

Twisted's IRC server protocol serializes tags (``sendCommand(..., tags=...)``) but has no
parser for tags a client sends; this is the small one of the IRCv3 "message-tags" spec:
``@key=value;key2;+client/tag=v`` before the command, values escaped with ``\\:`` ``\\s``
``\\\\`` ``\\r`` ``\\n``. No Django, no reactor: unit- and property-tested alone.
"""

from __future__ import annotations

import re

from twisted.words.protocols import irc

# RFC 1459: 512 bytes with the CRLF. IRCv3 message-tags: the tags (with their "@" and the
# space after them) may take 8191 bytes more, on lines from clients 4094 of them; we take
# the server's larger bound, as many servers do.
MAX_LINE = 512
MAX_TAGS = 8191

# Commands whose last parameter is text, always written as a trailing parameter.
_TEXT = {"PRIVMSG", "NOTICE", "PART", "KICK", "ERROR", "QUIT", "TOPIC", "CAP"}
_SAFE = re.compile(r"[\r\n\x00]")
_UNESCAPE = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
_ESCAPE = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}


class LineTooLong(Exception):
    """A line over the bounds above (417 ERR_INPUTTOOLONG)."""


def unescape_value(value: str) -> str:
    out: list[str] = []
    chars = iter(value)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars, None)
        if following is None:
            break  # a trailing lone backslash is dropped (the spec)
        out.append(_UNESCAPE.get(following, following))
    return "".join(out)


def escape_value(value: str) -> str:
    return "".join(_ESCAPE.get(char, char) for char in value)


def parse_tags(text: str) -> dict[str, str]:
    """``key=value;key2`` (without the "@") -> {key: unescaped value ("" when none)}; a
    later duplicate wins, empty keys are ignored."""
    tags: dict[str, str] = {}
    for item in text.split(";"):
        key, _, value = item.partition("=")
        if key:
            tags[key] = unescape_value(value)
    return tags


def format_tags(tags: dict[str, str]) -> str:
    """The inverse of ``parse_tags`` (without the "@"); a key without value is bare."""
    return ";".join(
        f"{key}={escape_value(value)}" if value else key for key, value in tags.items()
    )


def check_length(line: bytes) -> None:
    """Raise ``LineTooLong`` for a line (without its CRLF) over the bounds."""
    if line.startswith(b"@"):
        space = line.find(b" ")
        if space < 0:
            if len(line) > MAX_TAGS:
                raise LineTooLong()
            return
        if space + 1 > MAX_TAGS:
            raise LineTooLong()
        line = line[space + 1 :]
    if len(line) + 2 > MAX_LINE:
        raise LineTooLong()


def parse_line(line: str) -> tuple[dict[str, str], str, str, list[str]]:
    """(tags, prefix, COMMAND, params) of one decoded line; ValueError when it has no
    command."""
    tags: dict[str, str] = {}
    if line.startswith("@"):
        head, _, line = line.partition(" ")
        tags = parse_tags(head[1:])
    line = line.lstrip(" ")
    if not line or line == ":" or (line.startswith(":") and " " not in line):
        raise ValueError("no command")
    try:
        prefix, command, params = irc.parsemsg(line)
    except (IndexError, ValueError, irc.IRCBadMessage):
        raise ValueError("no command") from None
    if not command:
        raise ValueError("no command")
    return tags, prefix, command.upper(), params


def split_text(text: str, limit: int = 400) -> list[str]:
    """A message body as IRC lines: one per line of text, each cut to ``limit`` UTF-8
    bytes at a character boundary (an IRC line holds no newline, and 512 bytes in all)."""
    lines: list[str] = []
    for part in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        encoded = part.encode("utf-8", "replace")
        while len(encoded) > limit:
            cut = _boundary(encoded, limit)
            lines.append(encoded[:cut].decode("utf-8", "replace"))
            encoded = encoded[cut:]
        lines.append(encoded.decode("utf-8", "replace"))
    return [line if line else " " for line in lines] or [" "]


def _boundary(encoded: bytes, limit: int) -> int:
    """The largest cut at most ``limit`` bytes into UTF-8 ``encoded`` that splits no
    character (at least one character, so that a cut always moves on)."""
    cut = limit
    while cut > 0 and (encoded[cut] & 0xC0) == 0x80:
        cut -= 1  # not inside a character
    if cut == 0:
        cut = limit + 1
        while cut < len(encoded) and (encoded[cut] & 0xC0) == 0x80:
            cut += 1
    return cut


def text_limit(command: str, target: str, prefix: str | None) -> int:
    """How many bytes of text fit one ``command`` line to ``target`` from ``prefix``:
    at most 400, less when a long nick and channel take their share of the 512."""
    head = f":{prefix} {command} {target} :" if prefix else f"{command} {target} :"
    return max(32, min(400, MAX_LINE - 2 - len(head.encode("utf-8", "replace"))))


def format_line(command: str, params, prefix: str | None, tags: dict | None) -> bytes:
    """One line on the wire. Text goes as a trailing parameter always (clients expect it
    of PRIVMSG and numerics), any other last parameter only when it must; CR, LF and NUL
    in a parameter (a room description, say) become spaces: never a second line."""
    params = [_SAFE.sub(" ", p) for p in params]
    if params:
        last = params[-1]
        if command in _TEXT or command.isdigit() or not last or " " in last or last[0] == ":":
            params[-1] = ":" + last
    line = " ".join([command, *params])
    if prefix:
        line = f":{prefix} {line}"
    encoded = line.encode("utf-8", "replace")
    if len(encoded) + 2 > MAX_LINE:
        # A reply that echoes what the client sent (USERHOST's nicks, a channel name)
        # can outgrow the 512 bytes a client reads as one line: it is cut, not sent whole.
        encoded = encoded[: _boundary(encoded, MAX_LINE - 2)]
    if tags:
        encoded = f"@{format_tags(tags)} ".encode("utf-8", "replace") + encoded
    return encoded + b"\r\n"
