"""Chaos under load (issue 15, part 3): Parley ``--workers 2`` on a Redis and a PostgreSQL
of its own, ``--clients`` recording clients, and faults: kill -9 a random worker every
``--kill-every`` seconds; restart Redis; restart PostgreSQL (a crash: ``-m immediate``);
freeze Redis with SIGSTOP for 10 s; fill the tmpfs that holds ``MEDIA_ROOT``. Each of the
last four is injected ``--rounds`` times (default: as often as fits, at least 3 in 20
minutes), one at a time, spread over the run.

    .venv/bin/python bench/chaos.py                      # 20 minutes, 500 clients
    .venv/bin/python bench/chaos.py --minutes 3 --clients 200

Then every client's history and the database log go through the checker: every
acknowledged write in the log exactly once, every connection a gap-free, duplicate-free
ordered run of seqs, nobody sees a private room they may not read; every client ends at
its room's last seq (it resumed through everything); every upload answered 201 is served
back byte for byte. Needs root (mount, the ``postgres`` user), ``redis-server`` and
Debian's PostgreSQL binaries. Prints the result as JSON and writes it, with the history
and the log, under ``--out`` (default bench/results/chaos-<time>/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE / "reliability"))

import chaos_load  # noqa: E402
import chaos_run  # noqa: E402
import checker  # noqa: E402
from faults import PrivatePostgres, PrivateRedis, SmallDisk, WorkerKiller  # noqa: E402
from history import History  # noqa: E402

PARLEY_PY = REPO / ".venv" / "bin" / "python"
SECRET_KEY = "parley-chaos-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
FAULTS = ("redis_restart", "postgres_restart", "redis_freeze", "disk_full")


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Parley:
    """``serve.py --workers N`` in its own process group."""

    def __init__(self, workdir: Path, env: dict[str, str], workers: int) -> None:
        self.port = free_port()
        self.log_path = workdir / "parley.log"
        self.env, self.workers = env, workers
        self.proc: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120.0) -> None:
        command = [str(PARLEY_PY), "serve.py", "--port", str(self.port), "--no-migrate"]
        command += ["--workers", str(self.workers), "--threads", "10"]
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            if len(re.findall(r"worker \d+ serving", text)) >= self.workers:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve.py exited {self.proc.returncode}:\n{text[-3000:]}")
            time.sleep(0.2)
        raise RuntimeError("serve.py did not start its workers in time")

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def worker_restarts(self) -> int:
        return self.log_path.read_text(errors="replace").count("exited with")


def parley_env(db_url: str, redis_url: str, media: Path, static: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "MEDIA_ROOT": str(media),
        "STATIC_ROOT": str(static),
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "CHAT_RATE_LIMIT": "0",
        "CHAT_MAX_CONNECTIONS_PER_USER": "100000",
        "CHAT_REDIS_PREFIX": "chaos",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)  # pytest-django's; serve.py picks its own
    return env


def _wait_ready(parley: Parley, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(parley.base + "/healthz", timeout=2, trust_env=False).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("Parley's /healthz did not answer 200")


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out or REPO / "bench" / "results" / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="parley-chaos-"))
    redis = PrivateRedis(workdir, args.redis_port)
    postgres = PrivatePostgres(args.pg_port)
    disk = SmallDisk(workdir / "media", args.disk_mb)
    parley: Parley | None = None
    try:
        redis.start()
        postgres.init()
        postgres.execute("CREATE DATABASE parley_chaos")
        disk.mount()
        env = parley_env(
            postgres.url("parley_chaos"), redis.url, disk.mountpoint, workdir / "static"
        )
        plan = chaos_run.plan_clients(args.clients)
        log(f"provisioning {len(plan.specs)} clients in {len(plan.rooms)} rooms")
        plan.provision(env)
        parley = Parley(workdir, env, args.workers)
        parley.start()
        _wait_ready(parley)
        log(f"Parley serving on {parley.base}; clients start, {args.minutes} min")
        killer = WorkerKiller(parley.proc.pid, args.workers, parley.log_path, seed=args.seed)
        injectors = {
            "worker_kill": killer.kill,
            "redis_restart": lambda: redis.restart(args.down),
            "postgres_restart": lambda: postgres.restart(args.down),
            "redis_freeze": lambda: redis.freeze(args.freeze),
            "disk_full": lambda: disk.full(args.full),
        }
        run_s = args.minutes * 60.0
        schedule = chaos_run.schedule(run_s, args.kill_every, args.rounds, FAULTS)
        history = History(out / "history.jsonl")
        load = chaos_load.Load(parley.base, history, send_interval=args.send_interval)
        db_url = postgres.url("parley_chaos")
        faults, t0 = asyncio.run(
            chaos_run.drive(
                load, plan, schedule, injectors, run_s, lambda: chaos_run.room_tops(db_url), log
            )
        )
        log("load stopped; reading the log and checking")
        uploads = chaos_run.verify_uploads(parley.base, history.records(), plan.tokens)
        rows = chaos_run.read_log(db_url)
        with open(out / "log.jsonl", "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        result = {
            "config": {k: v for k, v in vars(args).items() if k != "out"},
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)),
            "load_s": round(time.time() - t0, 1),  # the run, its drain, the upload fetches
            "faults": chaos_run.summarize_faults(faults, t0, history.records()),
            "clients": chaos_run.summarize_clients(history.records()),
            "checker": checker.check(history.records(), rows, plan.access()),
            "caught_up": chaos_run.caught_up(load.last_seen, plan.room_of(), rows),
            "uploads": uploads,
            "worker_restarts_in_log": parley.worker_restarts(),
        }
        result["pass"] = chaos_run.passed(result, args.rounds_required, FAULTS)
        (out / "result.json").write_text(json.dumps(result, indent=2))
        result["out"] = str(out)
        return result
    finally:
        if parley is not None:
            parley.stop()
            shutil.copy(parley.log_path, out / "parley.log")
        redis.stop()
        postgres.destroy()
        disk.unmount()
        shutil.rmtree(workdir, ignore_errors=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=30.0, help="seconds between kills")
    parser.add_argument(
        "--rounds", type=int, default=0, help="times each other fault is injected (0: fit)"
    )
    parser.add_argument("--rounds-required", type=int, default=None, help="pass needs this")
    parser.add_argument("--down", type=float, default=3.0, help="s Redis/PostgreSQL stay down")
    parser.add_argument("--freeze", type=float, default=10.0, help="s Redis stays SIGSTOPped")
    parser.add_argument("--full", type=float, default=10.0, help="s the media disk stays full")
    parser.add_argument("--send-interval", type=float, default=4.0)
    parser.add_argument("--disk-mb", type=int, default=64)
    parser.add_argument("--redis-port", type=int, default=6390)
    parser.add_argument("--pg-port", type=int, default=5440)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.rounds_required is None:
        args.rounds_required = 3 if args.minutes >= 15 else 1
    return args


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like an error, so the tmpfs, PostgreSQL and Redis are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(parse_args(argv))
    print(json.dumps(result, indent=2))
    verdict = "PASS" if result["pass"] else "FAIL"
    log(
        f"{verdict}: {result['checker']['violation_count']} violations; written to {result['out']}"
    )
    log(checker.summary(result["checker"]))
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
