"""Full-text search over the messages a user may read (PROTOCOL.md "Search (v2)").

``search(user, q, room=None, before=None, limit=20)`` answers ``(results, has_more)``,
newest first, over the current text of every ``message`` that is not deleted, in the rooms
``chat.access.visible_rooms`` lets the user read (``room`` narrows to one of them).

The query language is words and ``"quoted phrases"``, all required, each word matched
whole after case folding (SQLite also folds diacritics: ``cafe`` finds ``Café``;
PostgreSQL's ``simple`` configuration does not). Nothing of ``q`` ever reaches the
database as query syntax: ``q`` is cut here into tokens (runs of letters, digits and
private-use characters, as FTS5's ``unicode61`` tokenizer cuts text), and every token
goes in as data: on SQLite a double-quoted FTS5 string (only letters and digits, so no
quote ever needs doubling), on PostgreSQL a parameter of ``plainto_tsquery`` /
``phraseto_tsquery``. A ``q`` with no token at all (empty, punctuation only) is a
``SearchError``, the API's 400, as are a ``q`` over ``MAX_QUERY_CHARS`` characters and
one of more than ``MAX_TERMS`` tokens.

Paging: results are ordered by the message row's id, newest first (within a room that is
seq order). Each result carries ``cursor`` (that id): ``cursor=<the last one's>`` gives the
page after it, across rooms. ``before=<seq>`` (PROTOCOL.md's) keeps messages whose seq is
below it: with ``room``, it pages that room's results like history does.

The index is the database's (chat/migrations/0003_search.py): on SQLite the FTS5 table
``chat_message_fts``, on PostgreSQL the GIN index over the generated column ``search_vector``.
"""

from __future__ import annotations

import html
import unicodedata
from dataclasses import dataclass

from django.db import connection

from chat import access
from chat.models import Message, Room

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_QUERY_CHARS = 1000
MAX_TERMS = 32
# A long body is shown as this many characters around its first match.
SNIPPET_CHARS = 240


class SearchError(ValueError):
    """A query that cannot be searched (empty, too long): the API's 400."""


@dataclass(frozen=True)
class Query:
    words: tuple[str, ...]
    phrases: tuple[tuple[str, ...], ...]

    @property
    def terms(self) -> frozenset[str]:
        """Every token, folded: what the highlight marks."""
        tokens = list(self.words) + [t for phrase in self.phrases for t in phrase]
        return frozenset(fold(t) for t in tokens)


def _is_token_char(char: str) -> bool:
    category = unicodedata.category(char)
    return category[0] in "LN" or category in ("Co", "Mn", "Mc")


def tokens_with_spans(text: str) -> list[tuple[int, int, str]]:
    """The tokens of ``text`` with their (start, end) offsets."""
    found: list[tuple[int, int, str]] = []
    start = None
    for i, char in enumerate(text):
        if _is_token_char(char):
            if start is None:
                start = i
        elif start is not None:
            found.append((start, i, text[start:i]))
            start = None
    if start is not None:
        found.append((start, len(text), text[start:]))
    return found


def fold(token: str) -> str:
    """Case and diacritics folded, as the index compares words."""
    decomposed = unicodedata.normalize("NFD", token)
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn").lower()


def _tokens(text: str) -> tuple[str, ...]:
    # A token that folds to nothing (only combining marks) is no word.
    return tuple(
        unicodedata.normalize("NFC", tok) for _, _, tok in tokens_with_spans(text) if fold(tok)
    )


def parse(q: str) -> Query:
    """``q`` as words and phrases; SearchError when it holds nothing to search."""
    if not isinstance(q, str) or not q.strip():
        raise SearchError("Give q, the words to search for.")
    if len(q) > MAX_QUERY_CHARS:
        raise SearchError(f"q is over {MAX_QUERY_CHARS} characters.")
    words: list[str] = []
    phrases: list[tuple[str, ...]] = []
    # Quoted parts are phrases; a quote left unpaired is only a separator.
    parts = q.split('"')
    for i, part in enumerate(parts):
        quoted = i % 2 == 1 and i < len(parts) - 1
        found = _tokens(part)
        if quoted and len(found) > 1:
            phrases.append(found)
        else:
            words.extend(found)
    words = list(dict.fromkeys(words))
    count = len(words) + sum(len(p) for p in phrases)
    if count == 0:
        raise SearchError("q has no words to search for (letters or digits).")
    if count > MAX_TERMS:
        raise SearchError(f"q has more than {MAX_TERMS} words.")
    return Query(tuple(words), tuple(dict.fromkeys(phrases)))


def fts5_match(query: Query) -> str:
    """The FTS5 MATCH expression: every word and phrase a quoted string, all ANDed."""

    def quote(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    parts = [quote(w) for w in query.words] + [quote(" ".join(p)) for p in query.phrases]
    return " AND ".join(parts)


def highlight(body: str, terms: frozenset[str], width: int = SNIPPET_CHARS) -> str:
    """``body`` HTML-escaped, each matched word in ``<mark>``; a long body cut to ``width``
    characters around its first match. Only the marks are markup."""
    spans = [(s, e) for s, e, tok in tokens_with_spans(body) if fold(tok) in terms]
    start, end = 0, len(body)
    if len(body) > width:
        first = spans[0][0] if spans else 0
        start = max(0, min(first - width // 4, len(body) - width))
        end = start + width
    out: list[str] = ["…"] if start > 0 else []
    at = start
    for s, e in spans:
        if s < start or e > end:
            continue
        out.append(html.escape(body[at:s]))
        out.append(f"<mark>{html.escape(body[s:e])}</mark>")
        at = e
    out.append(html.escape(body[at:end]))
    if end < len(body):
        out.append("…")
    return "".join(out)


def _room_filter(user, room: Room | str | None) -> tuple[str, list]:
    """The SQL ``m.room_id IN (...)`` of the rooms searched, and its parameters."""
    rooms = access.visible_rooms(Room.objects.all(), access.user_id_of(user))
    if room is not None:
        rooms = rooms.filter(slug=room.slug if isinstance(room, Room) else room)
    sql, params = rooms.values("id").query.sql_with_params()
    return f"m.room_id IN ({sql})", list(params)


def matching_ids(query: Query, where: list[str], params: list, limit: int) -> list[int]:
    """The ids of the messages matching ``query`` under ``where``, newest first, at most
    ``limit`` (the search API and the admin's search box)."""
    conditions = " AND ".join(where)
    if connection.vendor == "sqlite":
        # FTS5 as the outer loop, walking its rowids newest first: the LIMIT stops it.
        sql = (
            "SELECT m.id FROM chat_message_fts f CROSS JOIN chat_message m ON m.id = f.rowid "
            f"WHERE f.chat_message_fts MATCH %s AND {conditions} "
            "ORDER BY f.rowid DESC LIMIT %s"
        )
        args = [fts5_match(query), *params, limit]
    elif connection.vendor == "postgresql":
        tsquery = []
        args = []
        if query.words:
            tsquery.append("plainto_tsquery('simple'::regconfig, %s)")
            args.append(" ".join(query.words))
        for phrase in query.phrases:
            tsquery.append("phraseto_tsquery('simple'::regconfig, %s)")
            args.append(" ".join(phrase))
        sql = (
            "SELECT m.id FROM chat_message m "
            f"WHERE m.search_vector @@ ({' && '.join(tsquery)}) "
            f"AND {conditions} ORDER BY m.id DESC LIMIT %s"
        )
        args = [*args, *params, limit]
    else:  # pragma: no cover - the migration refuses other databases
        raise RuntimeError(f"Search needs SQLite or PostgreSQL, not {connection.vendor}.")
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        return [row[0] for row in cursor.fetchall()]


def search(
    user,
    q: str,
    room: Room | str | None = None,
    before: int | None = None,
    limit: int = DEFAULT_LIMIT,
    cursor: int | None = None,
) -> tuple[list[dict], bool]:
    """The newest ``limit`` messages matching ``q`` that ``user`` may read, and whether
    there are more. Raises SearchError for a query with nothing to search."""
    query = parse(q)
    limit = max(1, min(int(limit), MAX_LIMIT))
    rooms_sql, params = _room_filter(user, room)
    where = ["m.kind = 'message'", "m.deleted_at IS NULL", rooms_sql]
    if before is not None:
        where.append("m.seq < %s")
        params.append(before)
    if cursor is not None:
        where.append("m.id < %s")
        params.append(cursor)
    ids = matching_ids(query, where, params, limit + 1)
    has_more = len(ids) > limit
    ids = ids[:limit]
    found = Message.objects.filter(id__in=ids).select_related("room", "user")
    rows = {m.id: m for m in found}
    terms = query.terms
    results = []
    for message_id in ids:
        m = rows.get(message_id)
        if m is None:  # deleted since the search's first query
            continue
        results.append(
            {
                "room": m.room.slug,
                "seq": m.seq,
                "user": m.user.get_username() if m.user_id else None,
                "body": m.body,
                "html": m.html,
                "ts": m.created_at.isoformat(),
                "highlight": highlight(m.body, terms),
                "cursor": m.id,
            }
        )
    return results, has_more
