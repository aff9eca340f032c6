"""``serve.py --workers N``: one supervisor, N worker processes on one listening socket.

The supervisor opens the socket once and hands it to every worker (each adopts it into
its own reactor), so all workers accept on one port with one accept queue: a worker that
dies or restarts loses no queued connection. The supervisor does not serve; it starts
workers, restarts one that dies (with a growing delay, so a worker that cannot start does
not spin), and on SIGTERM/SIGINT forwards SIGTERM to every worker, waits for them to
drain, and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

logger = logging.getLogger("parley.supervisor")

# A worker that dies within this many seconds of its start counts as failing to start;
# its restart waits twice as long as the last one did, up to RESTART_MAX_DELAY.
RESTART_MIN_UPTIME = 10.0
RESTART_MAX_DELAY = 30.0
SERVE = Path(__file__).resolve().parent.parent / "serve.py"


def listening_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    sock.setblocking(False)
    return sock


class Worker:
    def __init__(self, index: int, command: list[str], fd: int) -> None:
        self.index = index
        self.command = command
        self.fd = fd
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.delay = 0.5
        self.restart_at: float | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [*self.command, "--worker-index", str(self.index)], pass_fds=[self.fd]
        )
        self.started = time.monotonic()
        self.restart_at = None
        logger.info("worker %d started (pid %d)", self.index, self.proc.pid)


class Supervisor:
    def __init__(self, args: argparse.Namespace, sock: socket.socket) -> None:
        self.args = args
        self.sock = sock
        command = [
            sys.executable,
            str(SERVE),
            "--worker-fd",
            str(sock.fileno()),
            "--threads",
            str(args.threads),
            "--grace",
            str(args.grace),
            "--no-migrate",
            "--no-collectstatic",
        ]
        self.workers = [Worker(i, command, sock.fileno()) for i in range(args.workers)]
        self.stopping = False

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for worker in self.workers:
            worker.start()
        while not self.stopping:
            self._watch()
            time.sleep(0.2)
        return self._drain()

    def _stop(self, signum, _frame) -> None:
        logger.info("supervisor: %s, draining workers", signal.Signals(signum).name)
        self.stopping = True

    def _watch(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.restart_at is not None:
                if now >= worker.restart_at:
                    worker.start()
                continue
            code = worker.proc.poll()
            if code is None:
                continue
            if now - worker.started < RESTART_MIN_UPTIME:
                worker.delay = min(worker.delay * 2, RESTART_MAX_DELAY)
            else:
                worker.delay = 0.5
            logger.warning(
                "worker %d (pid %d) exited with %s; restarting in %.1fs",
                worker.index,
                worker.proc.pid,
                code,
                worker.delay,
            )
            worker.restart_at = now + worker.delay

    def _drain(self) -> int:
        running = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        self.sock.close()  # the workers hold their own copies until they stop listening
        deadline = time.monotonic() + self.args.grace + 10.0
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
        logger.info("supervisor: all workers stopped")
        return 0


def run_supervisor(args: argparse.Namespace) -> int:
    sock = listening_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(
        f"Parley is serving on http://{shown}:{port}/ ({args.workers} workers, "
        f"{args.threads} WSGI threads each)\n"
        "Create an admin with: python manage.py createsuperuser   (then open /admin/)",
        flush=True,
    )
    return Supervisor(args, sock).run()
