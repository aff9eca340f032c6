"""One long-lived Django process that runs code against a test server's database, in
place of a ``manage.py shell -c`` (a full Django start-up) per call.

``ServerShell`` is the test's side: ``run(code)`` sends a block of Python to the child,
which ``exec``s it in a fresh namespace and answers with what it printed, or raises
``ShellError`` with the child's traceback. Run as a script, this file is the child: it
reads requests until its stdin closes, so it never outlives the process that started it.

The framing is JSON lines: ``{"code": ...}`` in, ``{"stdout", "stderr", "error"}`` out.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class ShellError(subprocess.CalledProcessError):
    """The code raised (or the child died); a CalledProcessError, as ``manage.py shell``
    failing was, so that callers catching that keep working."""

    def __init__(self, code: str, stdout: str, stderr: str, error: str) -> None:
        super().__init__(1, ["server_shell", code], stdout, stderr)
        self.error = error

    def __str__(self) -> str:
        return f"server shell code failed:\n{self.cmd[1]}\n--- stderr:\n{self.stderr}{self.error}"


class ServerShell:
    """The child for one environment (a server's ``env``), started on first use."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: subprocess.Popen | None = None
        self._env: dict[str, str] = {}
        # A test may create data from several threads at once; one exchange at a time
        # keeps the answers matched to their requests.
        self._lock = threading.Lock()

    def run(self, code: str, env: dict[str, str]) -> str:
        with self._lock:
            # A child started before the test changed the server's env would act on
            # another setup than manage() does: start again.
            if self._proc is None or self._proc.poll() is not None or self._env != env:
                self._close()
                self._start(env)
            reply = self._exchange({"code": code})
        if reply is None:
            raise ShellError(code, "", self._log_tail(), "the server shell exited")
        if reply["error"]:
            raise ShellError(code, reply["stdout"], reply["stderr"], reply["error"])
        return reply["stdout"]

    def close(self) -> None:
        with self._lock:
            self._close()

    def _start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve())],
                cwd=REPO,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self._env = dict(env)
        if self._receive() is None:
            self._close()
            raise ShellError("django.setup()", "", self._log_tail(), "the shell did not start")

    def _exchange(self, request: dict) -> dict | None:
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")
            self._proc.stdin.flush()
            reply = self._receive()
        except BaseException:
            # Interrupted mid-exchange (a pytest timeout, say): the child's answer would
            # be read as the next call's.
            self._close()
            raise
        if reply is None:
            self._close()
        return reply

    def _receive(self) -> dict | None:
        assert self._proc is not None and self._proc.stdout is not None
        try:
            line = self._proc.stdout.readline()
        except (BrokenPipeError, ValueError):
            return None
        return json.loads(line) if line else None

    def _close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for pipe in (proc.stdin, proc.stdout):
            # A child already gone leaves a broken pipe behind.
            with contextlib.suppress(OSError):
                pipe.close()
        try:
            proc.wait(timeout=10)  # a closed stdin is its signal to exit
        except subprocess.TimeoutExpired:
            proc.kill()  # still running someone's code
            proc.wait()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""


# ----------------------------------------------------------------------------- the child


@contextlib.contextmanager
def _captured(fd: int):
    """Everything written to ``fd`` inside, in the list it yields once the block ends."""
    import tempfile

    text: list[str] = []
    with tempfile.TemporaryFile() as out:
        saved = os.dup(fd)
        os.dup2(out.fileno(), fd)
        try:
            yield text
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            out.seek(0)
            # As ``subprocess.run(text=True)`` read manage.py's output: universal newlines.
            raw = out.read().decode(errors="replace")
            text.append(raw.replace("\r\n", "\n").replace("\r", "\n"))


def _run(code: str) -> dict:
    import traceback

    from django.contrib.contenttypes.models import ContentType
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache
    from django.db import close_old_connections, connections

    from chat.live import redis_publish

    # What a fresh ``manage.py shell`` would not remember from the last call: content
    # type ids (the database may have been replaced) and this process's local cache.
    ContentType.objects.clear_cache()
    for cache in caches.all(initialized_only=True):
        if isinstance(cache, LocMemCache):
            cache.clear()
    error = ""
    sys.stdout.flush()
    sys.stderr.flush()
    # At the descriptors, not just sys.stdout: output of C code and subprocesses is
    # captured too, as it was from manage.py.
    with _captured(1) as out, _captured(2) as err:
        try:
            close_old_connections()
            exec(compile(code, "<server shell>", "exec"), {"__name__": "__main__"})
        except SystemExit as stop:
            if stop.code not in (None, 0):
                error = traceback.format_exc()
        except BaseException:
            error = traceback.format_exc()
        # Every call on a connection of its own, as each manage.py was: a connection
        # kept for CONN_MAX_AGE would outlive a server restart, hold a replaced SQLite
        # file open, or keep a PostgreSQL database from being dropped.
        # Redis too (the publisher of access notices and events, chat/live/redis_publish):
        # a connection left open would be counted as the servers' by the outage tests,
        # and would not come back after a Redis restart until the next publish.
        try:
            connections.close_all()
            redis_publish.reset()
        except Exception:
            error = error or traceback.format_exc()
        sys.stdout.flush()
        sys.stderr.flush()
    return {"stdout": out[0], "stderr": err[0], "error": error}


def main() -> None:
    # The protocol gets descriptors of its own; the code's stdin is empty and anything
    # written to fd 1 between calls goes to the log, not into an answer.
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)
    # As ``python manage.py``: the checkout first on the path, not this directory.
    sys.path[0] = str(REPO)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()

    def answer(reply: dict) -> None:
        answers.write(json.dumps(reply).encode() + b"\n")
        answers.flush()

    answer({"ready": True})
    for line in requests:
        answer(_run(json.loads(line)["code"]))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):  # the run is ending
        main()
