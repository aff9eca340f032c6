"""The chaos run's private services and its fault injectors (issue 15, part 3).

Every fault needs a service we may kill, restart or freeze, so the run brings its own: a
Redis (``redis-server`` as our child, no persistence), a PostgreSQL cluster (``initdb``
into a temp dir, run as the ``postgres`` user, trust auth) and a small tmpfs for
``MEDIA_ROOT`` that can be filled to ENOSPC without touching any other filesystem. The
machine's shared Redis (6379) and PostgreSQL (5432) are never touched.

Each injector blocks its caller (the chaos run calls them from a thread of its own, never
from an event loop) and returns a dict saying what it did and how long the outage lasted.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def _wait_port(port: int, timeout: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


class PrivateRedis:
    """``redis-server`` on its own port, as a child process we may kill and freeze."""

    def __init__(self, workdir: Path, port: int = 6390) -> None:
        self.workdir = workdir
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / f"redis-{port}.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if _wait_port(self.port, 0.2):
            raise RuntimeError(f"port {self.port} is taken: refusing to share a Redis")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--daemonize", "no"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        if not _wait_port(self.port, 10):
            raise RuntimeError(f"redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGCONT)  # a frozen one cannot exit
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, down: float = 3.0) -> dict:
        """kill -9, stay down ``down`` seconds, start again (empty: no persistence)."""
        started = time.monotonic()
        self.stop()
        time.sleep(down)
        self.start()
        return {"down_s": round(time.monotonic() - started, 2)}

    def freeze(self, seconds: float = 10.0) -> dict:
        """SIGSTOP for ``seconds``: connections stay open, nothing answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)
        return {"frozen_s": seconds}


class PrivatePostgres:
    """A PostgreSQL cluster of our own (Debian's binaries), as the ``postgres`` user."""

    def __init__(self, port: int = 5440) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not found:
            raise RuntimeError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
        self.bin = Path(found[-1]).parent
        self.port = port
        # In /tmp itself: the postgres user must reach it through every parent directory.
        self.root = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        os.chmod(self.root, 0o755)
        shutil.chown(self.root, "postgres", "postgres")

    def url(self, dbname: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            user="postgres" if os.geteuid() == 0 else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def init(self) -> None:
        if _wait_port(self.port, 0.2):
            raise RuntimeError(f"port {self.port} is taken: refusing to share a PostgreSQL")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

    def start(self) -> None:
        # fsync off: the run tests Parley's handling of a crash of the server process, not
        # the disk; a restart is `-m immediate` (a crash), so recovery still runs.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200 -c synchronous_commit=on"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "start"
        )
        if not _wait_port(self.port, 60):
            raise RuntimeError("PostgreSQL did not listen")
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = subprocess.run(
                [str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True,
            )
            if done.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("PostgreSQL is not ready")

    def execute(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as c:
            c.execute(statement)

    def restart(self, down: float = 3.0) -> dict:
        """``pg_ctl stop -m immediate`` (a crash: every connection dies), down, start."""
        started = time.monotonic()
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        time.sleep(down)
        self.start()
        return {"down_s": round(time.monotonic() - started, 2)}

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class SmallDisk:
    """A tmpfs of ``size_mb`` for ``MEDIA_ROOT`` alone: filling it gives the kernel's
    ENOSPC to Parley's uploads and to nothing else on the machine."""

    def __init__(self, mountpoint: Path, size_mb: int = 16) -> None:
        self.mountpoint = mountpoint
        self.size_mb = size_mb
        self.mounted = False
        self.filler = mountpoint / ".chaos-filler"

    def mount(self) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.size_mb}m,mode=0755",
                "tmpfs",
                str(self.mountpoint),
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cannot mount a tmpfs for MEDIA_ROOT: {done.stderr.strip()}")
        self.mounted = True

    def fill(self) -> int:
        """Write a filler until the kernel says ENOSPC; returns the bytes written."""
        written = 0
        chunk = b"\0" * 65536
        with open(self.filler, "ab") as out:
            try:
                while True:
                    out.write(chunk)
                    out.flush()
                    written += len(chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
        # The buffered tail: write byte by byte until even one byte does not fit.
        with contextlib.suppress(OSError), open(self.filler, "ab", buffering=0) as out:
            while out.write(b"\0"):
                written += 1
        return written

    def free_bytes(self) -> int:
        stat = os.statvfs(self.mountpoint)
        return stat.f_bavail * stat.f_frsize

    def release(self) -> None:
        self.filler.unlink(missing_ok=True)

    def full(self, seconds: float = 10.0) -> dict:
        written = self.fill()
        free = self.free_bytes()
        time.sleep(seconds)
        self.release()
        return {"filled_bytes": written, "free_bytes_while_full": free, "full_s": seconds}

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True)
            self.mounted = False


def child_pids(parent: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``parent``."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = Path(stat).read_text()
            fields = text[text.rindex(")") + 2 :].split()
            if int(fields[1]) == parent and fields[0] != "Z":
                out.append(int(stat.split("/")[2]))
    return sorted(out)


class WorkerKiller:
    """kill -9 one of the supervisor's workers at random; wait for its replacement."""

    def __init__(self, supervisor_pid: int, workers: int, log_path: Path, seed: int = 0) -> None:
        self.supervisor_pid = supervisor_pid
        self.workers = workers
        self.log_path = log_path
        self.random = random.Random(seed)

    def _serving_lines(self) -> int:
        try:
            return self.log_path.read_text(errors="replace").count(" serving")
        except FileNotFoundError:
            return 0

    def kill(self, timeout: float = 60.0) -> dict:
        pids = child_pids(self.supervisor_pid)
        if not pids:
            raise RuntimeError("the supervisor has no worker to kill")
        victim = self.random.choice(pids)
        before = self._serving_lines()
        started = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        # Back when the supervisor has started a new one and the log says it serves.
        deadline = started + timeout
        while time.monotonic() < deadline:
            now = child_pids(self.supervisor_pid)
            replaced = victim not in now and len(now) >= self.workers
            if replaced and self._serving_lines() > before:
                return {"pid": victim, "back_s": round(time.monotonic() - started, 2)}
            time.sleep(0.1)
        return {"pid": victim, "back_s": None, "error": "no replacement worker in time"}
