"""``serve.py --workers N``: one supervisor, N worker processes on one listening socket.

The supervisor opens each socket once (``project/listen.py``: every ``--endpoint``, or
``--host``/``--port``) and hands them to every worker (each adopts them into its own
reactor, wrapping TLS ones itself), so all workers accept on one port with one accept
queue: a worker that dies or restarts loses no queued connection. The supervisor does
not serve; it starts workers, restarts one that dies (with a growing delay, so a worker
that cannot start does not spin), and on SIGTERM/SIGINT forwards SIGTERM to every worker,
waits for them to drain, and exits 0. A worker whose supervisor is gone (kill -9, a
crash) drains and exits by itself (``watch_supervisor``): nobody would restart it, stop
it or give its port back.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from project.listen import Listener, ListenError, SharedSocket, open_shared

logger = logging.getLogger("parley.supervisor")

# A worker that dies within this many seconds of its start counts as failing to start;
# its restart waits twice as long as the last one did, up to RESTART_MAX_DELAY.
RESTART_MIN_UPTIME = 10.0
RESTART_MAX_DELAY = 30.0
# How often a worker looks for its supervisor (one getppid() call).
SUPERVISOR_CHECK_SECONDS = 1.0
SERVE = Path(__file__).resolve().parent.parent / "serve.py"


# systemd's socket-activation variables describe the supervisor's descriptors, for the
# supervisor's pid; a worker has its sockets from --worker-fd and must not see them.
SYSTEMD_VARIABLES = ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def watch_supervisor(reactor, interval: float = SUPERVISOR_CHECK_SECONDS):
    """In a worker: when the process that started it is gone (the worker is re-parented),
    stop the reactor, which drains gracefully (project/runner.py's shutdown triggers).
    Polling getppid() rather than PR_SET_PDEATHSIG: that needs a preexec_fn, unsafe in
    a supervisor with threads, and fires when the forking *thread* ends."""
    from twisted.internet import task

    parent = os.getppid()

    def check() -> None:
        if os.getppid() != parent:
            logger.warning("the supervisor (pid %d) is gone: this worker drains and exits", parent)
            watch.stop()
            reactor.stop()

    watch = task.LoopingCall(check)
    watch.clock = reactor
    reactor.callWhenRunning(watch.start, interval, now=False)
    return watch


class Worker:
    def __init__(self, index: int, command: list[str], fds: list[int]) -> None:
        self.index = index
        self.command = command
        self.fds = fds
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.delay = 0.5
        self.restart_at: float | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARIABLES}
        self.proc = subprocess.Popen(
            [*self.command, "--worker-index", str(self.index)], pass_fds=self.fds, env=env
        )
        self.started = time.monotonic()
        self.restart_at = None
        logger.info("worker %d started (pid %d)", self.index, self.proc.pid)


class Supervisor:
    def __init__(self, args: argparse.Namespace, sockets: list[SharedSocket]) -> None:
        self.args = args
        self.sockets = sockets
        command = [sys.executable, str(SERVE), *_listen_flags(args)]
        for shared in sockets:
            fd = shared.sock.fileno()
            command += ["--worker-fd", f"{fd}:tls" if shared.tls else str(fd)]
        command += [
            "--threads",
            str(args.threads),
            "--grace",
            str(args.grace),
            "--no-migrate",
            "--no-collectstatic",
        ]
        fds = [shared.sock.fileno() for shared in sockets]
        self.workers = [Worker(i, command, fds) for i in range(args.workers)]
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
        for shared in self.sockets:
            shared.sock.close()  # the workers hold their own copies until they stop listening
        deadline = time.monotonic() + self.args.grace + 10.0
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait()
        for shared in self.sockets:
            shared.close()  # and remove a UNIX socket's path, release its lock
        logger.info("supervisor: all workers stopped")
        return 0


def _listen_flags(args: argparse.Namespace) -> list[str]:
    """The flags that say what each listener is, for a worker to rebuild its TLS."""
    flags = ["--host", args.host, "--port", str(args.port)]
    for description in args.endpoint or []:
        flags += ["--endpoint", description]
    if args.tls_cert:
        flags += ["--tls-cert", args.tls_cert, "--tls-key", args.tls_key]
    if getattr(args, "irc_port", None) is not None:  # the IRC gateway's listener (chat/irc/)
        flags += ["--irc-port", str(args.irc_port)]
        if args.irc_host:
            flags += ["--irc-host", args.irc_host]
    return flags


def run_supervisor(args: argparse.Namespace, found: list[Listener]) -> int:
    sockets: list[SharedSocket] = []
    try:
        for listener in found:
            sockets.append(open_shared(listener))
    except ListenError as error:
        for shared in sockets:
            shared.close()
        print(f"serve.py: {error}", file=sys.stderr, flush=True)
        return 1
    print(
        f"Parley is serving on {' and '.join(s.shown for s in sockets)} ({args.workers} "
        f"workers, {args.threads} WSGI threads each)\n"
        "Create an admin with: python manage.py createsuperuser   (then open /admin/)",
        flush=True,
    )
    return Supervisor(args, sockets).run()
