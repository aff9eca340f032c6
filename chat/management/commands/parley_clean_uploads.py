"""``manage.py parley_clean_uploads [--hours H]``: remove uploads never attached.

Every server process does this itself, hourly (chat/live/service.py); the command is for
a deployment that wants it from cron, or at once. Prints how many were removed.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand

from chat.uploads import UNATTACHED_LIFETIME, remove_unattached


class Command(BaseCommand):
    help = "Remove uploads never attached to a message and older than 24 h (rows and files)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--hours",
            type=float,
            default=UNATTACHED_LIFETIME.total_seconds() / 3600,
            help="age past which an unattached upload is removed (default 24)",
        )

    def handle(self, *args, hours: float, **options) -> None:
        removed = remove_unattached(lifetime=timedelta(hours=max(hours, 0.0)))
        self.stdout.write(f"{removed} unattached upload(s) removed")
