"""Full-text search of messages (PROTOCOL.md "Search (v2)").

The index is kept by the database itself, in the transaction of every write to
``chat_message`` (chat/log.py's appends, edits and deletions need no change):

- SQLite: ``chat_message_fts``, an external-content FTS5 table over the ``body`` of the
  ``message`` rows that are not deleted (rowid = ``chat_message.id``), tokenizer
  ``unicode61 remove_diacritics 2``, kept by AFTER INSERT/UPDATE/DELETE triggers. An edit
  re-indexes the row, a deletion (``deleted_at`` set, or the row removed) takes it out.
  The index is never ``rebuild``-ed: that would read every row of ``chat_message``,
  reactions and edits included; the backfill inserts just the indexed rows.
- PostgreSQL: ``chat_message.search_vector``, a stored generated ``tsvector`` column
  (``to_tsvector('simple', body)`` of those same rows, NULL for the others; ``simple``:
  lowercased whole words, no stemming) with a partial GIN index. PostgreSQL computes it
  in the writing statement itself; adding the column fills it for existing rows. The
  model does not declare it (Django never writes it; chat/search.py reads it in SQL).
"""

from django.db import migrations

INDEXED = "{row}.kind = 'message' AND {row}.deleted_at IS NULL"

SQLITE_FORWARD = [
    "CREATE VIRTUAL TABLE chat_message_fts USING fts5("
    "body, content='chat_message', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    f"""CREATE TRIGGER chat_message_fts_insert AFTER INSERT ON chat_message
    WHEN {INDEXED.format(row="new")}
    BEGIN
        INSERT INTO chat_message_fts(rowid, body) VALUES (new.id, new.body);
    END""",
    f"""CREATE TRIGGER chat_message_fts_delete AFTER DELETE ON chat_message
    WHEN {INDEXED.format(row="old")}
    BEGIN
        INSERT INTO chat_message_fts(chat_message_fts, rowid, body)
        VALUES ('delete', old.id, old.body);
    END""",
    # One trigger, two statements in order: out with what was indexed, in with what is.
    f"""CREATE TRIGGER chat_message_fts_update AFTER UPDATE OF body, kind, deleted_at
    ON chat_message
    BEGIN
        INSERT INTO chat_message_fts(chat_message_fts, rowid, body)
        SELECT 'delete', old.id, old.body WHERE {INDEXED.format(row="old")};
        INSERT INTO chat_message_fts(rowid, body)
        SELECT new.id, new.body WHERE {INDEXED.format(row="new")};
    END""",
    "INSERT INTO chat_message_fts(rowid, body) SELECT id, body FROM chat_message m "
    f"WHERE {INDEXED.format(row='m')}",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS chat_message_fts_update",
    "DROP TRIGGER IF EXISTS chat_message_fts_delete",
    "DROP TRIGGER IF EXISTS chat_message_fts_insert",
    "DROP TABLE IF EXISTS chat_message_fts",
]

POSTGRES_FORWARD = [
    # Stored, so that a match's recheck (phrases) and a filter by it read the vector
    # instead of parsing the body again; the ADD fills it in for every existing row.
    "ALTER TABLE chat_message ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    f"CASE WHEN {INDEXED.format(row='chat_message')} "
    "THEN to_tsvector('simple'::regconfig, body) END) STORED",
    "CREATE INDEX chat_message_search ON chat_message USING gin (search_vector) "
    f"WHERE {INDEXED.format(row='chat_message')}",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS chat_message_search",
    "ALTER TABLE chat_message DROP COLUMN IF EXISTS search_vector",
]

STATEMENTS = {
    "sqlite": (SQLITE_FORWARD, SQLITE_BACKWARD),
    "postgresql": (POSTGRES_FORWARD, POSTGRES_BACKWARD),
}


def _run(schema_editor, forward: bool) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in STATEMENTS:
        raise RuntimeError(f"Search needs SQLite or PostgreSQL, not {vendor}.")
    for sql in STATEMENTS[vendor][0 if forward else 1]:
        schema_editor.execute(sql)


def forwards(apps, schema_editor):
    _run(schema_editor, True)


def backwards(apps, schema_editor):
    _run(schema_editor, False)


class Migration(migrations.Migration):
    dependencies = [("chat", "0002_conversations")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
