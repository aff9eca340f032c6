"""granian (a Rust HTTP server with a WSGI interface) as the second HTTP peer.

The same Django project (``project.wsgi:application``), database and STATIC_ROOT as Parley
and gunicorn, one worker process and as many WSGI threads (``--blocking-threads``) as
Parley's pool, no access log. Two ways to serve the static files:

* ``static="whitenoise"``: whitenoise's middleware in Django (``gunicorn_settings``), the
  same Python code path as the gunicorn reference: this is the fair peer, since Parley's
  static files also come from whitenoise's index (compressed variants, hashed names
  immutable, ETag/Range/304).
* ``static="granian"``: granian's own Rust file server mounted on ``/static`` (plain
  ``project.settings``). Faster, but it does less (no Brotli/gzip variant, no
  immutable cache headers for hashed names): reported for reference.

Imported by bench/httpbench.py (which puts bench/ on sys.path for ``common``).
"""

from __future__ import annotations

import os
from pathlib import Path

from common import BENCH, BENCH_PY, REPO, Server, free_port, parley_env

GRANIAN = Path(BENCH_PY).parent / "granian"


def granian_command(port: int, threads: int, static: str, static_root: Path) -> list[str]:
    cmd = [
        str(GRANIAN),
        "--interface",
        "wsgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--blocking-threads",
        str(threads),
        "--backlog",
        "1024",
        "--no-access-log",
    ]
    if static == "granian":
        cmd += [
            "--static-path-route",
            "/static",
            "--static-path-mount",
            str(static_root),
            "--static-path-expires",
            "60",
        ]
    return [*cmd, "project.wsgi:application"]


def start_granian(
    workdir: Path,
    db_url: str,
    static_root: Path,
    *,
    threads: int = 10,
    static: str = "whitenoise",
    pin: bool = True,
) -> Server:
    """granian serving Parley's Django project; ``static`` is ``whitenoise`` or ``granian``."""
    if static not in ("whitenoise", "granian"):
        raise ValueError(f"static must be whitenoise or granian, not {static!r}")
    port = free_port()
    settings = "gunicorn_settings" if static == "whitenoise" else "project.settings"
    env = parley_env(
        db_url,
        static_root,
        {
            "DJANGO_SETTINGS_MODULE": settings,
            "PYTHONPATH": os.pathsep.join([str(BENCH / "peers"), str(REPO)]),
        },
    )
    name = f"granian-{static}"
    server = Server(
        name=name,
        kind="gunicorn",  # an HTTP-only peer: same client side as gunicorn's
        cmd=granian_command(port, threads, static, static_root),
        env=env,
        log_path=workdir / f"{name}-{port}.log",
        port=port,
        pin=pin,
        ready=r"[Ll]istening|[Ss]tarted worker|Spawning worker",
    )
    return server.start()
