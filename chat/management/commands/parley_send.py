"""``manage.py parley_send <room> <user> <text> [--client-id ID]``: post from a script.

A thin command over ``chat.parley.send`` (the Python API): it prints the committed event
as one line of JSON and exits 0, or prints the refusal (``code: detail``) on stderr and
exits 1 (``unavailable``: 75, EX_TEMPFAIL, so that a cron job or CI step may retry).
Repeating a ``--client-id`` posts nothing new and prints the original event.
"""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from chat import parley

EX_TEMPFAIL = 75


class Command(BaseCommand):
    help = "Post a message in a room as a user (prints the event as JSON)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("room", help="the room's slug")
        parser.add_argument("user", help="the username to post as")
        parser.add_argument("text", help="the message (Markdown, as typed in the browser)")
        parser.add_argument(
            "--client-id",
            default=None,
            help="idempotency key (up to 64 chars): a repeat posts nothing and prints the "
            "original event",
        )

    def handle(self, *args, room: str, user: str, text: str, client_id: str | None, **options):
        try:
            event = parley.send(room, user, text, client_id=client_id)
        except parley.Unavailable as refusal:
            self.stderr.write(f"parley_send: {refusal}")
            sys.exit(EX_TEMPFAIL)
        except parley.Refused as refusal:
            raise CommandError(str(refusal), returncode=1) from None
        self.stdout.write(json.dumps(event, ensure_ascii=False))
