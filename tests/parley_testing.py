"""Helpers for tests that run Parley for real: ``serve.py`` in a subprocess on a free port,
and data made in its database through one long-lived Django process (``server_shell``)."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from server_shell import ServerShell

REPO = Path(__file__).resolve().parent.parent
_SERVING = re.compile(r"serving on (http://\S+?)/? ")
SECRET_KEY = "parley-tests-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"

# A fresh serve.py spent about 18 of its 22 s migrating a new SQLite database and
# collecting STATIC_ROOT (2026-12-03, a loaded machine), the same work for each of the
# suite's servers. A server whose database and static files are Parley's defaults starts
# instead from copies of one database migrated (lobby and cache table included) and one
# STATIC_ROOT collected once per test process: serve.py's own migrate and collectstatic
# then find nothing to do. Anything that changes the schema or the static files (these
# variables, ``--settings``, a database of the test's own) gets a fresh start.
_OWN_SETUP = ("DATABASE_URL", "STATIC_ROOT", "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG")
_template: Path | None = None


def _prepared_template() -> Path:
    """The directory holding the migrated ``db.sqlite3`` and the collected ``static``."""
    global _template
    if _template is None:
        path = Path(tempfile.mkdtemp(prefix="parley-template-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        env = {
            **{k: v for k, v in os.environ.items() if k not in _OWN_SETUP},
            "DATABASE_URL": f"sqlite:///{path / 'db.sqlite3'}",
            "STATIC_ROOT": str(path / "static"),
            "DJANGO_SECRET_KEY": SECRET_KEY,
        }
        script = "from project.prepare import collect_static, migrate; migrate(); collect_static()"
        done = subprocess.run(
            [sys.executable, str(REPO / "manage.py"), "shell", "-c", script],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"the template's migrate/collectstatic failed:\n{done.stderr}")
        _template = path
    return _template


class ServerProcess:
    """``python serve.py`` with its own database and static root, on a port it picks."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        database_url: str | None = None,
        template: bool = True,
    ) -> None:
        """``template``: start from the prepared database and static files when the setup
        is Parley's default (see ``_prepared_template``); False: a fresh install."""
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.static_root = workdir / "static"
        self.log_path = workdir / "server.log"
        self.database_url = database_url or f"sqlite:///{workdir / 'db.sqlite3'}"
        self.env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "STATIC_ROOT": str(self.static_root),
            "MEDIA_ROOT": str(workdir / "media"),
            "DJANGO_SECRET_KEY": SECRET_KEY,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self._default_setup = (
            template and database_url is None and not set(env or {}) & set(_OWN_SETUP)
        )
        self.args = args or []
        self.port: int | None = None
        self.url = ""
        self.proc: subprocess.Popen | None = None
        self._shell = ServerShell(workdir / "shell.log")

    def start(self, timeout: float = 60.0, port: int = 0) -> ServerProcess:
        self._from_template()
        # The log is appended to across restarts: only what this start writes counts.
        offset = len(self.log())
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "serve.py"), *self.command(port)],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=self.pass_fds,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.announced(self.log()[offset:]):
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve.py exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"serve.py did not start in {timeout}s:\n{self.log()}")

    def _from_template(self) -> None:
        """Before the first start of a server with Parley's default setup: its database
        and STATIC_ROOT as copies of the prepared ones (each only if not there yet: a
        test may have collected or planted files first)."""
        if not self._default_setup or "--settings" in self.args:
            return
        database = self.workdir / "db.sqlite3"
        if not database.exists():
            for suffix in ("", "-wal"):  # a WAL not checkpointed yet holds part of it
                source = _prepared_template() / f"db.sqlite3{suffix}"
                if source.exists():
                    shutil.copy2(source, self.workdir / source.name)
        if not self.static_root.exists():
            shutil.copytree(_prepared_template() / "static", self.static_root)

    # Descriptors the server inherits (a test's systemd-style socket, say).
    pass_fds: tuple[int, ...] = ()

    def command(self, port: int) -> list[str]:
        """serve.py's arguments for one start."""
        return ["--port", str(port), *self.args]

    def announced(self, log: str) -> bool:
        """Whether ``log`` (this start's part) says the server is serving; sets ``url``."""
        match = _SERVING.search(log)
        if match is None:
            return False
        self.url = match.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])
        return True

    def restart(self, timeout: float = 60.0) -> ServerProcess:
        """Start again on the same port (after stop() or kill())."""
        return self.start(timeout=timeout, port=self.port or 0)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self._shell.close()
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        self._shell.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def manage(self, *command: str, input: str | None = None) -> str:
        """Run ``manage.py`` against this server's database."""
        done = subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *command],
            cwd=REPO,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def shell(self, code: str) -> str:
        """Run Python ``code`` against this server's database, as ``manage("shell", "-c",
        code)`` would, in a Django process kept for the next call (started on the first,
        again after stop() or kill()); returns what it printed. Raises ``ShellError`` (a
        CalledProcessError) with the traceback if the code raised."""
        return self._shell.run(code, self.env)

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 10.0), **kwargs)


def login_client(server: ServerProcess, username: str, password: str) -> httpx.Client:
    """An httpx client signed in through the real login form (session + CSRF cookies)."""
    client = server.client()
    page = client.get("/accounts/login/")
    token = client.cookies["csrftoken"]
    response = client.post(
        "/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": server.url + "/accounts/login/"},
    )
    assert response.status_code == 302, (page.status_code, response.status_code, response.text)
    return client


def create_user(server: ServerProcess, username: str, password: str, staff: bool = False) -> None:
    server.shell(
        "from django.contrib.auth.models import User;"
        f"u = User.objects.create_user({username!r}, password={password!r});"
        f"u.is_staff = u.is_superuser = {staff!r}; u.save()",
    )


def wait_for_js(page, expression: str, timeout: float = 15.0) -> None:
    """Wait until ``expression`` is truthy in a Playwright ``page``.

    Playwright's own ``wait_for_function`` polls with the page's ``eval``, which Parley's
    Content-Security-Policy (no 'unsafe-eval') refuses; ``page.evaluate`` runs through
    the browser's debugging protocol, which the CSP does not govern.
    """
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"{expression!r} still false after {timeout}s")
        time.sleep(0.05)
