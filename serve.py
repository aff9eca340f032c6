#!/usr/bin/env python
"""Run Parley: Django pages, static files and live chat on one port, one reactor.

    python serve.py                      # http://127.0.0.1:8000, SQLite, one process
    python serve.py --port 9000 --threads 16

Flags -> settings -> prepare the database and static files -> build the Site -> run the
reactor until SIGINT/SIGTERM, then drain gracefully and exit 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

logger = logging.getLogger("parley.serve")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="serve.py",
        description=(
            "Serve Parley: Django (pages, admin, API) through Twisted's WSGIResource and "
            "live chat (WebSocket, SSE, long-poll) on ONE port and ONE reactor. "
            "Configuration comes from the environment (see README)."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [%(default)s]")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on [%(default)s]")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=10,
        help="threads in Django's WSGI pool; pages beyond that wait in a queue [%(default)s]",
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="processes sharing the port (more than 1 needs REDIS_URL) [%(default)s]",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=10.0,
        help="seconds in-flight requests get to finish on SIGTERM/SIGINT [%(default)s]",
    )
    parser.add_argument(
        "--no-migrate", action="store_true", help="do not apply database migrations at start"
    )
    parser.add_argument(
        "--no-collectstatic",
        action="store_true",
        help="do not run collectstatic at start (STATIC_ROOT must already be filled)",
    )
    # Set by the supervisor of --workers for the processes it starts.
    parser.add_argument("--worker-fd", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def prepare(args: argparse.Namespace) -> None:
    """Blocking start-up work, done before the reactor runs: migrate, lobby, static files."""
    from django.conf import settings

    from project.prepare import collect_static, migrate

    if not args.no_migrate and migrate():
        logger.info("created the public room 'lobby'")
    if not args.no_collectstatic and not settings.DEBUG and collect_static():
        logger.info("collected static files into %s", settings.STATIC_ROOT)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from django.conf import settings

    if args.workers > 1 and not settings.REDIS_URL:
        print(
            "serve.py: --workers > 1 needs REDIS_URL (the processes share rooms through "
            "Redis); set REDIS_URL=redis://host:6379/0 or run with --workers 1",
            file=sys.stderr,
        )
        return 2
    prepare(args)
    if args.workers > 1 and args.worker_fd is None:
        from project.supervisor import run_supervisor

        return run_supervisor(args)
    from project.runner import run_server

    return run_server(args)


if __name__ == "__main__":
    sys.exit(main())
