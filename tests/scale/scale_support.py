"""Helpers of the scale tests: several Parley processes on one PostgreSQL and one Redis.

Each test gets its own database (created from a template migrated once per session), its
own Redis key/channel prefix and database number on the machine's Redis, and its own
servers, which are killed (with their worker processes) before the database is dropped.
The Redis outage test runs a redis-server of its own, which it may kill and restart.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
from live_clients import Account, provision
from parley_testing import ServerProcess

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
PG_ADMIN_DB = "test"  # the database the fixtures connect to for CREATE/DROP DATABASE
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
PASSWORD = "pw-scale-8812"

_WORKER_SERVING = re.compile(r"worker (\d+) serving \(pid (\d+)\)")


def database_url(name: str) -> str:
    return f"postgres://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


def pg_connect(dbname: str = PG_ADMIN_DB, **kwargs) -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        dbname=dbname,
        autocommit=True,
        connect_timeout=5,
        **kwargs,
    )


def pg_admin(*statements: str) -> None:
    """Run statements (each its own transaction) in the admin database."""
    with pg_connect() as conn:
        for statement in statements:
            conn.execute(statement)


def new_database_name(kind: str = "") -> str:
    return f"parley_t_{kind}{secrets.token_hex(5)}"


def db_log(dbname: str, slug: str) -> list[tuple]:
    """The room's log as stored: ``(seq, kind, username, body, client_id)`` by seq."""
    with pg_connect(dbname) as conn:
        return conn.execute(
            "SELECT m.seq, m.kind, u.username, m.body, m.client_id"
            " FROM chat_message m JOIN chat_room r ON r.id = m.room_id"
            " LEFT JOIN auth_user u ON u.id = m.user_id"
            " WHERE r.slug = %s ORDER BY m.seq",
            [slug],
        ).fetchall()


# --------------------------------------------------------------------------- Redis


class RedisConnection:
    """A minimal RESP client on a blocking socket (the test venv has no Redis library)."""

    NAME = "parley-scale-test"  # CLIENT LIST tells the tests' own connections by it

    def __init__(self, host: str = REDIS_HOST, port: int = REDIS_PORT, db: int = 0) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.file = self.sock.makefile("rb")
        self.command("CLIENT", "SETNAME", self.NAME)
        if db:
            self.command("SELECT", db)

    def command(self, *args):
        parts = [str(arg).encode() for arg in args]
        payload = b"*%d\r\n" % len(parts) + b"".join(
            b"$%d\r\n%s\r\n" % (len(part), part) for part in parts
        )
        self.sock.sendall(payload)
        return self._read()

    def _read(self):
        line = self.file.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(f"redis error: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.file.read(size + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise RuntimeError(f"unexpected redis reply {line!r}")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()

    def __enter__(self) -> RedisConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def redis_ping(port: int = REDIS_PORT, host: str = REDIS_HOST) -> bool:
    try:
        with RedisConnection(host, port) as redis:
            return redis.command("PING") == "PONG"
    except OSError:
        return False


def redis_delete_prefix(prefix: str, db: int, port: int = REDIS_PORT) -> int:
    """Delete every key ``<prefix>:*`` of ``db``; returns how many there were."""
    deleted = 0
    with RedisConnection(port=port, db=db) as redis:
        cursor = "0"
        while True:
            cursor, keys = redis.command("SCAN", cursor, "MATCH", f"{prefix}:*", "COUNT", 500)
            if keys:
                deleted += redis.command("DEL", *keys)
            if cursor == "0":
                return deleted


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OwnRedis:
    """A redis-server of the test's own, on a spare port: it can be killed and restarted."""

    def __init__(self, workdir: Path) -> None:
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> OwnRedis:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        with open(self.workdir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if redis_ping(self.port):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
        self.kill()
        raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log}")

    def kill(self) -> None:
        """SIGKILL: a crash, no goodbye to the clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


# --------------------------------------------------------------------------- processes


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def worker_pids_in_log(server: ServerProcess) -> dict[int, int]:
    """``{worker index: pid}`` from the workers' 'worker N serving (pid P)' log lines."""
    return {int(i): int(pid) for i, pid in _WORKER_SERVING.findall(server.log())}


def wait_workers(server: ServerProcess, count: int, timeout: float = 30.0) -> list[int]:
    """Wait until ``count`` workers say they serve; their pids (the live ones)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = worker_pids_in_log(server)
        live = [pid for pid in workers.values() if pid in child_pids(server.proc.pid)]
        if len(live) >= count:
            return sorted(live)
        time.sleep(0.1)
    raise AssertionError(
        f"{count} workers did not start serving in {timeout}s:\n{server.log()[-3000:]}"
    )


def socket_owners(server_port: int, client_ports: set[int], pids: list[int]) -> dict[int, int]:
    """Which of ``pids`` holds the server end of each client connection (by client port)."""
    inode_of: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if local_port == server_port and remote_port in client_ports:
                    inode_of[fields[9]] = remote_port
    owners: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:[") and target[8:-1] in inode_of:
                        owners[inode_of[target[8:-1]]] = pid
    return owners


def kill_tree(server: ServerProcess) -> None:
    """SIGKILL a server and, for ``--workers``, every worker it started (by pid)."""
    proc = server.proc
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGSTOP)  # no worker restarts while we collect them
    children = child_pids(proc.pid)
    server.kill()
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while children and time.monotonic() < deadline:
        children = [pid for pid in children if Path(f"/proc/{pid}").exists()]
        children = [pid for pid in children if not _is_zombie(pid)]
        time.sleep(0.05)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


# --------------------------------------------------------------------------- the cluster


class Cluster:
    """The servers of one test, on its database and Redis namespace."""

    def __init__(self, root: Path, static_root: Path, template: str, namespace, make_db):
        self.root = root
        self.static_root = static_root
        self.template = template
        self.namespace = namespace
        self.make_db = make_db
        self.db_name: str | None = None
        self.redis_url = namespace.url
        self.servers: list[ServerProcess] = []

    def use_database(self, fresh: bool = False) -> str:
        """Create the test's database: a copy of the migrated template, or empty."""
        assert self.db_name is None, "one database per test"
        self.db_name = self.make_db(None if fresh else self.template)
        return self.db_name

    @property
    def database_url(self) -> str:
        if self.db_name is None:
            self.use_database()
        return database_url(self.db_name)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "CHAT_REDIS_PREFIX": self.namespace.prefix,
            "STATIC_ROOT": str(self.static_root),
            "CHAT_RATE_LIMIT": "0",
            **(extra or {}),
        }

    def provision(self, users: list[str], rooms: list) -> dict[str, Account]:
        """Users (signed in, with sessions) and rooms, in one ``manage.py shell``."""
        manager = ServerProcess(self.root / "manage", env=self.env(), database_url=None)
        return provision(manager, users=[(u, PASSWORD) for u in users], rooms=rooms)

    def start(
        self,
        count: int = 1,
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        migrate: bool = False,
    ) -> list[ServerProcess]:
        """Start ``count`` instances at once (``migrate``: each migrates at start)."""
        flags = ["--no-collectstatic", "--grace", "2", *(args or [])]
        if not migrate:
            flags.append("--no-migrate")
        made = []
        for _ in range(count):
            index = len(self.servers)
            server = ServerProcess(
                self.root / f"server-{index}", env=self.env(env), args=list(flags)
            )
            self.servers.append(server)
            made.append(server)
        with ThreadPoolExecutor(max_workers=count) as pool:
            list(pool.map(lambda s: s.start(timeout=60), made))
        return made

    def log(self, slug: str) -> list[tuple]:
        return db_log(self.db_name, slug)

    def close(self) -> None:
        for server in self.servers:
            kill_tree(server)

    def logs(self, tail: int = 4000) -> str:
        return "\n".join(
            f"----- {server.workdir.name} ({server.url}) -----\n{server.log()[-tail:]}"
            for server in self.servers
        )


# --------------------------------------------------------------------------- clients

SLUG = "scale"


def event_key(event: dict) -> tuple:
    return (event.get("seq"), event.get("user"), event.get("body"), event.get("client_id"))


def row_key(row: tuple) -> tuple:
    seq, _kind, username, body, client_id = row
    return (seq, username, body, client_id)


def assert_same_log(who: str, got: list[tuple], expected: list[tuple]) -> None:
    """``got`` (seq, user, body, client_id) is exactly ``expected``, with a useful report."""
    if got == expected:
        return
    got_seqs = [g[0] for g in got]
    wanted = {e[0] for e in expected}
    missing = sorted(wanted - set(got_seqs))
    dupes = sorted({s for s in got_seqs if got_seqs.count(s) > 1})
    first = next(
        (i for i, (g, e) in enumerate(zip(got, expected, strict=False)) if g != e),
        min(len(got), len(expected)),
    )
    raise AssertionError(
        f"{who}: got {len(got)} durable events, expected {len(expected)}; "
        f"missing seqs {missing[:20]}, duplicated {dupes[:20]}, "
        f"in order: {got_seqs == sorted(got_seqs)}; first difference at index {first}: "
        f"got {got[first] if first < len(got) else 'nothing'}, "
        f"expected {expected[first] if first < len(expected) else 'nothing'}"
    )


async def receiver(server, account: Account | None = None, since: int | None = None):
    """A WebSocket stream of the room, once subscribed (its ``hello`` arrived)."""
    from live_clients import WSClient

    ws = await WSClient.connect(server, SLUG, account, since=since)
    await ws.wait_for(
        lambda f: isinstance(f, dict) and f.get("type") == "hello", what="the hello frame"
    )
    return ws


def received(ws) -> list[tuple]:
    return [event_key(e) for e in ws.durable()]
