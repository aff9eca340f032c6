"""The history format of the reliability runs (issue 15), and its writer.

A history is JSON Lines: one record per observation, written by the client that made it.
Every record has ``t`` (``time.time()``), ``client`` (a name unique in the run), ``user``
(the username the client is signed in as, ``null`` for anonymous) and ``kind``:

writes
  ``{"kind": "send", "room": slug, "client_id": cid}``             before the send leaves
  ``{"kind": "ack", "room": slug, "client_id": cid, "seq": N}``    the server acked it
  ``{"kind": "send_error", "room": slug, "client_id": cid, "code": "unavailable"|...}``
  ``{"kind": "send_lost", "room": slug, "client_id": cid}``        the connection died
  before any answer: indeterminate, the write may or may not be in the log.

reads
  ``{"kind": "open", "room": slug, "conn": id, "door": "ws"|"sse"|"poll"|"inbox"|"irc",
  "since": N|null}``                                               the server accepted it
  ``{"kind": "refused", "room": slug, "door": ..., "status": int|str}`` it did not
  ``{"kind": "event", "room": slug, "conn": id, "seq": N, "event_id": ..., "type": ...}``
  ``event_id`` is ``"<user>/<client_id>"`` of a message event (what the log row at that
  seq must hold), or ``null`` when the client did not note it;
  ``{"kind": "close", "conn": id, "reason": ...}``; reason ``"end"`` means the client
  stayed to the end of the run and drained: it must then have seen its room's last seq.

``conn`` is unique in the run (the writer makes them). Only events that carry a seq are
recorded (typing and presence are not in the log). For the inbox and IRC doors ``room``
of an event is the room the event belongs to (one connection carries several rooms).
Other kinds (``upload_ok``, ``upload_error``, ...) may be written; the checker skips them.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

_conn_ids = itertools.count(1)


class History:
    """Appends the records of one or many clients to one file (one process's clients).

    Records are buffered and written by ``flush`` (and ``close``): a client on the event
    loop must not wait on the disk for each event.
    """

    def __init__(self, path: str | Path, prefix: str = "") -> None:
        self.path = Path(path)
        self.prefix = prefix
        self._file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._buffer: list[str] = []
        self.counts: dict[str, int] = {}

    def record(self, client: str, user: str | None, kind: str, **fields: Any) -> None:
        rec = {"t": time.time(), "client": client, "user": user, "kind": kind, **fields}
        self._buffer.append(json.dumps(rec, separators=(",", ":")))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self._buffer) >= 2000:
            self.flush()

    def new_conn(self) -> str:
        return f"{self.prefix}c{next(_conn_ids)}"

    def flush(self) -> None:
        if self._buffer:
            self._file.write("\n".join(self._buffer) + "\n")
            self._file.flush()
            self._buffer.clear()

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()

    def records(self) -> Iterator[dict]:
        """Every record written, in order (closes the writer: one pass over the file)."""
        self.close()
        return read([self.path])


def read(paths: Iterable[str | Path]) -> Iterator[dict]:
    """Every record of the given history files, file after file."""
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
