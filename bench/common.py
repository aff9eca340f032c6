"""What every bench tool shares: the servers under test as fresh processes, their CPU and
memory read from /proc, Parley's prepared database (users signed in once), CPU pinning.

Servers are started in their own process group and killed by that id when done; every
wait has a deadline. Parley runs from its own venv (``.venv``), the peer from
``bench/.venv-peers``, gunicorn from ``bench/.venv-bench`` (see setup_venvs.sh).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
RESULTS_DIR = BENCH / "results"
PARLEY_PY = REPO / ".venv" / "bin" / "python"
PEERS_PY = BENCH / ".venv-peers" / "bin" / "python"
BENCH_PY = BENCH / ".venv-bench" / "bin" / "python"
SECRET_KEY = "parley-bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
PASSWORD = "bench-pw-48213-x"
PG_DSN = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
REDIS_URL = "redis://127.0.0.1:6379/0"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# Two cores: the server under test gets core 0, every client process core 1, so that
# neither steals the other's cycles and the server's CPU time is its own work.
SERVER_CPUS = {0}
CLIENT_CPUS = {1} if (os.cpu_count() or 1) > 1 else {0}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pin_client() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, CLIENT_CPUS)


def raise_fd_limit() -> int:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- /proc


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as handle:
        raw = handle.read()
    return raw[raw.rindex(")") + 2 :].split()  # fields from "state" on (comm may hold spaces)


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (the workers of ``serve.py --workers``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(_stat_fields(int(entry))[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), from /proc/<pid>/stat."""
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as handle:
            return int(handle.read().split()[1]) * PAGE
    except OSError:
        return 0


# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    """One server under test: a process group we started, with its address and kind."""

    name: str  # parley, daphne-memory, daphne-redis, bare, gunicorn
    kind: str  # parley | daphne | bare | gunicorn
    cmd: list[str]
    env: dict[str, str]
    log_path: Path
    port: int = 0
    pin: bool = True
    ready: str = ""  # regex on the log that says "listening"
    ready_count: int = 1
    proc: subprocess.Popen | None = None
    cleanup: list = field(default_factory=list)

    def start(self, timeout: float = 60.0) -> Server:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        pin = self.pin

        def before_exec() -> None:
            if pin:
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(0, SERVER_CPUS)

        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed by that id
                preexec_fn=before_exec,
            )
        deadline = time.monotonic() + timeout
        pattern = re.compile(self.ready)
        while time.monotonic() < deadline:
            if len(pattern.findall(self.log())) >= self.ready_count and self._answers():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not start in {timeout}s:\n{self.log()[-3000:]}")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return process_tree(self.pid)

    def cpu(self) -> float:
        """CPU seconds used so far by the server (all its processes)."""
        return sum(cpu_seconds(pid) for pid in self.pids())

    def rss(self) -> int:
        """Resident bytes of the server (all its processes)."""
        return sum(rss_bytes(pid) for pid in self.pids())

    def versions(self) -> str:
        return ""

    def stop(self, grace: float = 10.0) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        if proc is not None:
            # Whatever is left of the group we started (e.g. workers of --workers 2).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        for fn in self.cleanup:
            with contextlib.suppress(Exception):
                fn()
        self.cleanup.clear()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- what clients need to know ------------------------------------------------

    def ws_path(self, room: str) -> str:
        return f"/ws/chat/{room}/" if self.kind == "daphne" else f"/ws/rooms/{room}/"

    def send_payload(self, body: str, client_id: str) -> bytes:
        if self.kind == "daphne":
            return json.dumps({"message": body}).encode()
        return json.dumps({"type": "send", "body": body, "client_id": client_id}).encode()


def parley_env(db_url: str, static_root: Path, extra: dict | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "STATIC_ROOT": str(static_root),
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "CHAT_RATE_LIMIT": "0",
        # The load tools open thousands of anonymous connections from one address.
        "CHAT_MAX_CONNECTIONS_PER_USER": "100000",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    env.update(extra or {})
    return env


def start_parley(
    workdir: Path,
    db_url: str,
    static_root: Path,
    *,
    name: str = "parley",
    workers: int = 1,
    threads: int = 10,
    extra_env: dict | None = None,
    pin: bool = True,
    pin_workers: bool = False,
    migrate: bool = False,
    collectstatic: bool = False,
) -> Server:
    """``serve.py`` as a fresh process. One worker is pinned to the server's core when
    ``pin``; several workers only with ``pin_workers`` too (all of them on that core: the
    fixed-budget comparison of bench/workers.py), else they roam both cores."""
    port = free_port()
    cmd = [str(PARLEY_PY), "serve.py", "--port", str(port), "--threads", str(threads)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    if not migrate:
        cmd.append("--no-migrate")
    if not collectstatic:
        cmd.append("--no-collectstatic")
    server = Server(
        name=name,
        kind="parley",
        cmd=cmd,
        env=parley_env(db_url, static_root, extra_env),
        log_path=workdir / f"{name}-{port}.log",
        port=port,
        pin=pin and (workers == 1 or pin_workers),
        ready=r"worker \d+ serving" if workers > 1 else r"serving on http://",
        ready_count=workers if workers > 1 else 1,
    )
    return server.start(timeout=120.0 if collectstatic else 60.0)


def start_daphne(workdir: Path, layer: str, *, pin: bool = True) -> Server:
    """The Channels tutorial chat on Daphne, ``layer`` = memory | redis."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(BENCH / "peers"),
        "DJANGO_SETTINGS_MODULE": "chatpeer.settings",
        "PEER_LAYER": layer,
        "PEER_DB": str(workdir / "peer.sqlite3"),
        "PEER_REDIS_URL": REDIS_URL,
        "PEER_REDIS_PREFIX": f"parleybench{secrets.token_hex(4)}",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [
        str(PEERS_PY),
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "chatpeer.asgi:application",
    ]
    server = Server(
        name=f"daphne-{layer}",
        kind="daphne",
        cmd=cmd,
        env=env,
        log_path=workdir / f"daphne-{layer}-{port}.log",
        port=port,
        pin=pin,
        ready=r"Listening on TCP address",
    )
    return server.start()


def start_bare(workdir: Path, *, pin: bool = True) -> Server:
    port = free_port()
    server = Server(
        name="bare",
        kind="bare",
        cmd=[str(PARLEY_PY), str(BENCH / "peers" / "bare_twisted.py"), "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        log_path=workdir / f"bare-{port}.log",
        port=port,
        pin=pin,
        ready=r"bare floor serving on",
    )
    return server.start()


def start_gunicorn(
    workdir: Path, db_url: str, static_root: Path, *, threads: int = 10, pin: bool = True
) -> Server:
    """Parley's Django project under gunicorn gthread + whitenoise (bench/peers)."""
    port = free_port()
    env = parley_env(
        db_url,
        static_root,
        {
            "DJANGO_SETTINGS_MODULE": "gunicorn_settings",
            "PYTHONPATH": os.pathsep.join([str(BENCH / "peers"), str(REPO)]),
            "BENCH_GUNICORN_BIND": f"127.0.0.1:{port}",
            "BENCH_GUNICORN_THREADS": str(threads),
        },
    )
    cmd = [
        str(BENCH_PY),
        "-m",
        "gunicorn",
        "-c",
        str(BENCH / "peers" / "gunicorn_conf.py"),
        "project.wsgi:application",
    ]
    server = Server(
        name="gunicorn",
        kind="gunicorn",
        cmd=cmd,
        env=env,
        log_path=workdir / f"gunicorn-{port}.log",
        port=port,
        pin=pin,
        ready=r"Booting worker",
    )
    return server.start()


# --------------------------------------------------------------------------- Parley's data


@dataclass
class ParleyData:
    """A migrated Parley database with bench users already signed in, cloned per run.

    Signing in costs ~0.5 s of password hashing per user, and migrating a fresh database
    seconds more; both are done once, in a template, and every fresh server gets a copy
    (SQLite: the backup API; PostgreSQL: ``CREATE DATABASE ... TEMPLATE``). Sessions live
    in the database, so the cookies stay valid in every copy.
    """

    workdir: Path
    static_root: Path
    engine: str  # sqlite | postgres
    template: str  # file path (sqlite) or database name (postgres)
    sessions: dict[str, str]  # username -> sessionid
    rooms: list[str]
    _clones: list[str] = field(default_factory=list)

    def fresh_db_url(self) -> str:
        token = secrets.token_hex(4)
        if self.engine == "sqlite":
            path = self.workdir / f"db-{token}.sqlite3"
            with sqlite3.connect(self.template) as src, sqlite3.connect(path) as dst:
                src.backup(dst)
            self._clones.append(str(path))
            return f"sqlite:///{path}"
        name = f"parley_bench_{token}"
        _pg_execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        self._clones.append(name)
        return _pg_url(name)

    def drop_clones(self) -> None:
        for clone in self._clones:
            with contextlib.suppress(Exception):
                if self.engine == "sqlite":
                    for suffix in ("", "-wal", "-shm"):
                        Path(clone + suffix).unlink(missing_ok=True)
                else:
                    _pg_execute(f'DROP DATABASE IF EXISTS "{clone}" WITH (FORCE)')
        self._clones.clear()

    def drop(self) -> None:
        self.drop_clones()
        if self.engine == "postgres":
            with contextlib.suppress(Exception):
                _pg_execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')

    def cookie(self, username: str) -> str:
        return f"sessionid={self.sessions[username]}"


def _pg_url(name: str) -> str:
    return f"postgres://{PG_DSN['user']}@{PG_DSN['host']}:{PG_DSN['port']}/{name}"


def _pg_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(**PG_DSN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


_CREATE = """
import json
from django.contrib.auth.models import User
from chat.models import Room
from project.prepare import migrate
migrate()
spec = json.loads({spec!r})
for name in spec["users"]:
    if not User.objects.filter(username=name).exists():
        User.objects.create_user(name, password=spec["password"])
for slug in spec["rooms"]:
    Room.objects.get_or_create(slug=slug, defaults=dict(name=slug, is_public=True))
print("CREATED")
"""


def prepare_parley(
    workdir: Path,
    engine: str = "sqlite",
    users: tuple[str, ...] = ("bench-sender",),
    rooms: tuple[str, ...] = ("lobby",),
) -> ParleyData:
    """Migrate a template database, create ``users`` and ``rooms``, sign the users in."""
    import httpx

    workdir.mkdir(parents=True, exist_ok=True)
    static_root = RESULTS_DIR / "static"  # kept between runs: collectstatic is then a no-op
    if engine == "sqlite":
        template = str(workdir / f"template-{secrets.token_hex(3)}.sqlite3")
        db_url = f"sqlite:///{template}"
    else:
        template = f"parley_bench_tmpl_{secrets.token_hex(4)}"
        _pg_execute(f'CREATE DATABASE "{template}"')
        db_url = _pg_url(template)
    env = parley_env(db_url, static_root)
    spec = json.dumps({"users": list(users), "rooms": list(rooms), "password": PASSWORD})
    done = subprocess.run(
        [str(PARLEY_PY), "manage.py", "shell", "-c", _CREATE.format(spec=spec)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if "CREATED" not in done.stdout:
        raise RuntimeError(f"preparing Parley's database failed:\n{done.stdout}{done.stderr}")
    sessions: dict[str, str] = {}
    # collectstatic runs here (skipped when bench/results/static is current).
    with start_parley(workdir, db_url, static_root, name="parley-login", collectstatic=True) as s:
        base = f"http://127.0.0.1:{s.port}"
        for name in users:
            with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
                client.get("/accounts/login/")
                token = client.cookies["csrftoken"]
                answer = client.post(
                    "/accounts/login/",
                    data={"username": name, "password": PASSWORD, "csrfmiddlewaretoken": token},
                    headers={"Referer": base + "/accounts/login/"},
                )
                if answer.status_code != 302 or "sessionid" not in client.cookies:
                    raise RuntimeError(f"login of {name} failed: {answer.status_code}")
                sessions[name] = client.cookies["sessionid"]
    return ParleyData(workdir, static_root, engine, template, sessions, list(rooms))


def static_file_path(static_root: Path, name: str = "admin/css/base.css") -> str:
    """The hashed URL path of a collected static file (what pages link to)."""
    manifest = json.loads((static_root / "staticfiles.json").read_text())
    return "/static/" + manifest["paths"][name]


def clean_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def versions() -> dict[str, str]:
    """Versions of what is measured (from each venv's metadata)."""
    found: dict[str, str] = {}
    probes = {
        PARLEY_PY: ["Django", "Twisted", "wsproto", "whitenoise", "websockets"],
        PEERS_PY: ["channels", "daphne", "channels-redis", "Django", "Twisted", "autobahn"],
        BENCH_PY: ["gunicorn", "uvloop", "py-spy"],
    }
    for python, names in probes.items():
        if not python.exists():
            continue
        code = (
            "import importlib.metadata as m, json, sys\n"
            f"names = {names!r}\n"
            "out = {}\n"
            "for n in names:\n"
            "    try: out[n] = m.version(n)\n"
            "    except Exception: pass\n"
            "out['python'] = sys.version.split()[0]\n"
            "print(json.dumps(out))"
        )
        done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
        label = {PARLEY_PY: "parley", PEERS_PY: "peers", BENCH_PY: "bench"}[python]
        with contextlib.suppress(ValueError):
            for key, value in json.loads(done.stdout).items():
                found[f"{label}:{key}"] = value
    return found


def start_named(name: str, workdir: Path, data: ParleyData | None = None, **kwargs) -> Server:
    """Start a fresh server by its bench name: parley, daphne-memory, daphne-redis, bare."""
    if name == "parley":
        assert data is not None, "parley needs prepare_parley() first"
        return start_parley(workdir, data.fresh_db_url(), data.static_root, **kwargs)
    if name.startswith("daphne-"):
        return start_daphne(workdir, name.removeprefix("daphne-"), **kwargs)
    if name == "bare":
        return start_bare(workdir, **kwargs)
    raise ValueError(f"unknown server {name!r}")
