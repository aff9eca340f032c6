"""The ``serve.py`` command and the ``parley`` command: flags -> settings -> prepare the
database and static files -> one server, or the supervisor of ``--workers``.

``serve.py`` at the repository's top is a thin launcher of ``main`` (so ``python
serve.py`` works in a clone), and ``pip install .`` makes the ``parley`` command
(``parley serve ...``). ``--settings mysite.settings`` (or ``DJANGO_SETTINGS_MODULE``)
serves a Django project of one's own that installs the chat app (PROTOCOL.md "Hosting
your own Django project"; chat/conf.py gives it Parley's settings).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

logger = logging.getLogger("parley.serve")


def parse_args(argv: list[str] | None = None, prog: str = "serve.py") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Serve Parley: Django (pages, admin, API) through Twisted's WSGIResource and "
            "live chat (WebSocket, SSE, long-poll) on ONE port and ONE reactor. "
            "Configuration comes from the environment (see README)."
        ),
    )
    parser.add_argument(
        "--settings",
        metavar="MODULE",
        help="the Django settings module to serve (a project of your own that installs "
        "the chat app), as DJANGO_SETTINGS_MODULE [$DJANGO_SETTINGS_MODULE or "
        "project.settings]; the working directory is importable",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on [%(default)s]")
    parser.add_argument("--port", type=_port, default=8000, help="port to listen on [%(default)s]")
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve HTTPS (and WSS) with this PEM certificate, on --host/--port or on every "
        "--endpoint (not ssl: ones, which have their own); the file may hold the "
        "intermediate certificates after it (a full chain)",
    )
    parser.add_argument(
        "--tls-key", metavar="FILE", help="the PEM private key of --tls-cert (not encrypted)"
    )
    parser.add_argument(
        "--endpoint",
        metavar="DESCRIPTION",
        action="append",
        help="listen on this Twisted server endpoint instead of --host/--port; repeat it "
        "for several: tcp:8000:interface=0.0.0.0, ssl:8443:privateKey=key.pem:"
        "certKey=cert.pem, unix:/run/parley.sock:mode=660, systemd:domain=INET:index=0 "
        "(socket activation). With --workers: tcp, tcp6, ssl, unix and systemd only",
    )
    # IRC gateway (chat/irc/, PROTOCOL.md "IRC gateway"): a second port of the same
    # reactor, off unless given; TLS with --tls-cert/--tls-key like the HTTP listeners.
    parser.add_argument(
        "--irc-port",
        type=_port,
        default=os.environ.get("PARLEY_IRC_PORT") or None,
        help="also serve IRC on this port (off by default) [$PARLEY_IRC_PORT]",
    )
    parser.add_argument(
        "--irc-host",
        default=os.environ.get("PARLEY_IRC_HOST") or None,
        help="address of the IRC port [$PARLEY_IRC_HOST, else --host]",
    )
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
    # One per listener, in order: FD, or FD:tls when the worker wraps it in TLS.
    parser.add_argument("--worker-fd", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535, got {value}")
    return number


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


def main(argv: list[str] | None = None, prog: str = "serve.py") -> int:
    args = parse_args(argv, prog)
    use_settings(args.settings)
    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except ImproperlyConfigured as error:
        # A bad environment variable: say which, without a traceback, and do not start.
        print(f"serve.py: configuration error: {error}", file=sys.stderr)
        return 2
    from django.conf import settings

    from project.listen import ListenError, listeners

    try:
        # Checked before migrations run: a typo in a flag should not wait for them.
        found = listeners(args, check=not args.worker_fd)
    except ListenError as error:
        print(f"serve.py: {error}", file=sys.stderr)
        return 2
    if (
        settings.PARLEY_HTTPS
        and not settings.TRUSTED_PROXIES
        and not args.worker_fd
        and not _serves_tls(found)
    ):
        logger.warning(
            "PARLEY_HTTPS=1 but this server speaks plain HTTP and trusts no proxy "
            "(TRUSTED_PROXIES is unset): every page will redirect to https://. Set "
            "TRUSTED_PROXIES to the proxy that terminates TLS, or use --tls-cert/--tls-key"
        )
    if args.workers > 1 and not args.worker_fd:
        from project.listen import check_shareable

        try:
            for listener in found:
                check_shareable(listener)
        except ListenError as error:
            print(f"serve.py: {error}", file=sys.stderr)
            return 2
    if args.workers > 1 and not settings.REDIS_URL:
        print(
            "serve.py: --workers > 1 needs REDIS_URL (the processes share rooms through "
            "Redis); set REDIS_URL=redis://host:6379/0 or run with --workers 1",
            file=sys.stderr,
        )
        return 2
    prepare(args)
    if args.workers > 1 and not args.worker_fd:
        from project.supervisor import run_supervisor

        return run_supervisor(args, found)
    from project.runner import run_server

    return run_server(args, found)


def use_settings(module: str | None) -> None:
    """``--settings`` (else ``DJANGO_SETTINGS_MODULE``, else Parley's own project).

    Set in the environment, so that ``--workers`` processes inherit it. The working
    directory goes on ``sys.path``, as ``manage.py`` has it: ``mysite.settings`` is found
    where the command runs, whether that is ``python serve.py`` or the ``parley``
    command (whose own directory is the venv's ``bin``).
    """
    if module:
        os.environ["DJANGO_SETTINGS_MODULE"] = module
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(1, here)


def _serves_tls(found: list) -> bool:
    return any(
        listener.tls is not None or listener.description.lstrip().startswith("ssl:")
        for listener in found
    )


def parley(argv: list[str] | None = None) -> int:
    """The ``parley`` command (pyproject.toml's console script): ``parley serve ...`` is
    ``python serve.py ...``; ``parley manage ...`` is ``manage.py`` for the same settings."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else "--help"
    if command == "serve":
        return main(argv, prog="parley serve")
    if command == "manage":
        use_settings(_settings_flag(argv))
        from django.core.management import execute_from_command_line

        execute_from_command_line(["parley manage", *argv])
        return 0
    if command in ("-h", "--help", "help"):
        print(
            "usage: parley {serve,manage} ...\n\n"
            "  serve    serve Parley: pages, admin, static files and live chat on one port\n"
            "           (the flags of serve.py: parley serve --help)\n"
            "  manage   Django's manage.py for the same settings (parley manage migrate,\n"
            "           parley manage createsuperuser, parley manage parley_send ...)"
        )
        return 0
    print(f"parley: unknown command {command!r} (try parley --help)", file=sys.stderr)
    return 2


def _settings_flag(argv: list[str]) -> str | None:
    """``--settings X`` / ``--settings=X`` among Django's own flags (left in place)."""
    for index, arg in enumerate(argv):
        if arg.startswith("--settings="):
            return arg.partition("=")[2]
        if arg == "--settings" and index + 1 < len(argv):
            return argv[index + 1]
    return None
