"""The phases of ``make bench`` and their registry (run_all.py runs them in this order).

A phase is a method of :class:`Runner` returning a JSON-able dict. A phase from another
tool's module goes through :func:`call_external`: when that module or function is not
there, or does not take the arguments offered, the phase is reported as *missing* (with
why) instead of failing the run. To add a phase: a method here and one :class:`Phase`
entry in ``PHASES``; its goals go into targets.py, or into its own result as
``{"targets": [...]}``, its tables into report.py, its charts into charts.py.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path

from common import RESULTS_DIR, log, prepare_parley, start_named
from durable import DURABLE_ROOMS, DURABLE_USERS, durable
from features import run_features
from loadclient import ReceiverPool, loop_name
from samples import fanout_with_cdf
from spy import Spy, available, format_summary, summarize
from workers import run_workers
from wsload import fanout, hold


class OutOfTime(Exception):
    pass


class Missing(Exception):
    """A phase's tool is not there (or not usable as called): reported, not an error."""


@dataclass(frozen=True)
class Phase:
    name: str
    what: str  # one line for --help and the report


PHASES = (
    Phase("fanout_ws", "one room x1000 receivers: Parley, Daphne (memory, Redis), bare floor"),
    Phase("latency", "1000 receivers at 10 msg/s: p99 (issue 14 part 3)"),
    Phase("sweep", "fan-out against receivers 10..10,000: Parley, bare, Daphne (part 7)"),
    Phase("fanout_http", "Parley's fan-out over WebSocket, SSE and long-poll"),
    Phase("hold", "10,000 idle WebSockets against Daphne"),
    Phase("idle", "up to 100k idle WebSockets against the bare floor (bench/idle.py, part 2)"),
    Phase("workers", "--workers 2 + Redis against one worker (bench/workers.py, part 4)"),
    Phase("durable", "committed sends/s, SQLite and PostgreSQL"),
    Phase("scenario", "10,000 users over 1,000 rooms vs Daphne (bench/scenario.py, part 1)"),
    Phase("features", "inbox, unread counts, search, /api/rooms/, uploads (bench/features.py)"),
    Phase("http", "Django page and static file vs gunicorn and granian (bench/httpbench.py)"),
)
PHASE_NAMES = tuple(p.name for p in PHASES)


def call_external(module: str, function: str, **offered):
    """``module.function(**offered)``, passing only the arguments it declares."""
    try:
        fn = getattr(importlib.import_module(module), function)
    except ImportError as error:
        raise Missing(f"bench/{module}.py cannot be imported: {error}") from error
    except AttributeError as error:
        raise Missing(f"bench/{module}.py has no {function}()") from error
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return fn(**offered)
    needed = [n for n, p in params.items() if p.default is p.empty and
              p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]  # fmt: skip
    unknown = [n for n in needed if n not in offered]
    if unknown:
        raise Missing(f"{module}.{function}() needs {unknown}, which run_all does not know")
    return fn(**{k: v for k, v in offered.items() if k in params})


def machine() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": shutil.which("wrk") is not None,
        "client_loop": loop_name(),
    }


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


class Runner:
    def __init__(self, cfg: dict, workdir: Path, procs: int, quick: bool) -> None:
        self.cfg = cfg
        self.quick = quick
        self.workdir = workdir
        self.procs = procs
        self.results: dict = {"phases": {}, "errors": {}, "missing": {}, "profiles": {},
                              "loadavg": {}, "seconds": {}}  # fmt: skip
        self.data = None
        self.pg_data = None

    # -- phases --------------------------------------------------------------------

    def _fanout_on(self, pool, name: str, n: int, **kwargs) -> dict:
        server = start_named(name, self.workdir, self.data)
        with server:
            cookie = self.data.cookie("bench-sender") if name == "parley" else None
            return fanout_with_cdf(fanout, server, pool, n, cookie=cookie, **kwargs)

    def fanout_ws(self) -> dict:
        cfg = self.cfg
        out = {}
        with ReceiverPool(self.procs, capacity=65536) as pool:
            for name in ("daphne-memory", "parley", "daphne-redis", "bare"):
                window = cfg["window_peer"] if name.startswith("daphne") else cfg["window_fast"]
                out[name] = self._fanout_on(
                    pool, name, cfg["fanout_n"], window=window,
                    duration=cfg["fanout_seconds"], drain_timeout=30,
                )  # fmt: skip
                log("   " + _line(out[name]))
        return out

    def latency(self) -> dict:
        cfg = self.cfg
        out = {}
        with ReceiverPool(self.procs, capacity=65536) as pool:
            for name in ("parley", "bare"):
                out[name] = self._fanout_on(
                    pool, name, cfg["latency_n"], rate=cfg["latency_rate"],
                    duration=cfg["latency_seconds"],
                )  # fmt: skip
                log("   " + _line(out[name]))
        return out

    def fanout_http(self) -> dict:
        cfg = self.cfg
        out = {}
        with ReceiverPool(self.procs, capacity=65536) as pool:
            for transport in ("ws", "sse", "poll"):
                out[transport] = self._fanout_on(
                    pool, "parley", cfg["http_n"], transport=transport,
                    window=cfg["window_fast"], duration=cfg["http_seconds"],
                )  # fmt: skip
                log("   " + _line(out[transport]))
        return out

    def hold(self) -> dict:
        cfg = self.cfg
        out = {}
        with ReceiverPool(self.procs, capacity=16) as pool:
            for name in ("daphne-memory", "parley", "daphne-redis", "bare"):
                server = start_named(name, self.workdir, self.data)
                with server:
                    out[name] = hold(server, pool, cfg["hold_n"], hold_seconds=cfg["hold_seconds"])
                log(f"   hold {name}: {json.dumps(out[name])}")
        return out

    def durable(self) -> dict:
        cfg = self.cfg
        out = {}
        kwargs = {"duration": cfg["durable_seconds"], "senders": cfg["durable_senders"]}
        out["sqlite-w1"] = durable(self.data, self.workdir, workers=1, **kwargs)
        log(f"   durable sqlite w1: {out['sqlite-w1']['committed_per_s']}/s")
        self.pg_data = prepare_parley(
            self.workdir, "postgres", users=DURABLE_USERS, rooms=("lobby", *DURABLE_ROOMS)
        )
        for workers in (1, 2):
            key = f"postgres-w{workers}"
            out[key] = durable(self.pg_data, self.workdir, workers=workers, **kwargs)
            log(f"   durable {key}: {out[key]['committed_per_s']}/s")
        return out

    def sweep(self) -> dict:
        """Fan-out against receivers: each server with a window of about the same number of
        deliveries in flight whatever N (20 messages x 1000 receivers for Parley)."""
        cfg = self.cfg
        out: dict = {}
        with ReceiverPool(self.procs, capacity=65536) as pool:
            for n in cfg["sweep_sizes"]:
                for name in ("parley", "bare", "daphne-memory"):
                    peer = name.startswith("daphne")
                    if peer and n > cfg["sweep_peer_max"]:
                        continue
                    window = max(3, 3000 // n) if peer else max(3, 20_000 // n)
                    out.setdefault(name, {})[str(n)] = self._fanout_on(
                        pool, name, n, window=min(window, 1000),
                        duration=cfg["sweep_seconds"], drain_timeout=30,
                    )  # fmt: skip
                    log("   " + _line(out[name][str(n)]))
        return out

    def workers(self) -> dict:
        cfg = self.cfg
        return run_workers(
            self.data, self.workdir, receivers=cfg["workers_n"], rate=cfg["workers_rate"],
            duration=cfg["workers_seconds"], throughput_seconds=cfg["workers_seconds"],
            procs=self.procs,
        )  # fmt: skip

    def features(self) -> dict:
        return run_features(quick=self.quick, timeout=self.cfg["feature_timeout"])

    def idle(self) -> dict:
        cfg = self.cfg
        return call_external(
            "idle", "run_idle", steps=tuple(cfg["idle_steps"]), hold_seconds=cfg["idle_hold"],
            daphne=cfg["idle_daphne"], procs=self.procs, workdir=self.workdir / "idle",
            data=self.data, pin=True,
        )  # fmt: skip

    def scenario(self) -> dict:
        cfg = self.cfg
        return call_external(
            "scenario", "run_scenario", servers=("parley", "daphne"),
            users=cfg["scenario_users"], rooms=cfg["scenario_rooms"], per_user=5,
            rates=tuple(cfg["scenario_rates"]), duration=cfg["scenario_seconds"],
            peer_users=cfg["scenario_peer_users"], peer_rates=tuple(cfg["scenario_peer_rates"]),
        )  # fmt: skip

    def http(self) -> dict:
        if shutil.which("wrk") is None:
            raise RuntimeError("wrk is not installed (bench/setup_venvs.sh installs it)")
        return call_external(
            "httpbench", "run_http", data=self.data, workdir=self.workdir,
            duration=self.cfg["wrk_seconds"], rounds=self.cfg["http_rounds"],
        )  # fmt: skip

    # -- profiles of misses ------------------------------------------------------------

    def profile_misses(self, misses: list[str]) -> None:
        if not available():
            log("py-spy is not installed: no profiles")
            return
        cfg = self.cfg
        seconds = 6.0
        for miss in misses:
            path = RESULTS_DIR / f"profile-{miss}.txt"
            path.unlink(missing_ok=True)
            log(f"== profile of Parley for {miss}")
            try:
                if miss in ("fanout", "latency"):
                    rate = cfg["latency_rate"] if miss == "latency" else None
                    with ReceiverPool(self.procs, capacity=65536) as pool:
                        self._fanout_on(
                            pool, "parley", cfg["fanout_n"], rate=rate,
                            window=None if rate else cfg["window_fast"],
                            duration=seconds, profile=path,
                        )  # fmt: skip
                elif miss == "durable":
                    durable(self.data, self.workdir, workers=1, duration=seconds,
                            senders=cfg["durable_senders"], profile=path)  # fmt: skip
                elif miss in ("http-page", "http-static"):
                    self._profile_http(miss, path, seconds)
                elif miss == "hold":
                    # The connect phase of 10,000 handshakes, py-spy for its first 10 s.
                    with ReceiverPool(self.procs, capacity=16) as pool:
                        server = start_named("parley", self.workdir, self.data)
                        with server:
                            hold(server, pool, cfg["hold_n"], hold_seconds=0, profile=path)
                if path.exists():
                    summary = summarize(path)
                    self.results["profiles"][miss] = summary
                    log(format_summary(summary, top=8))
            except OutOfTime:
                raise
            except Exception as error:
                log(f"profile {miss} failed: {error}")
                self.results["errors"][f"profile-{miss}"] = str(error)

    def _profile_http(self, miss: str, path: Path, seconds: float) -> None:
        from common import start_parley, static_file_path
        from httpbench import wrk

        target = "/" if miss == "http-page" else static_file_path(self.data.static_root)
        db = self.data.fresh_db_url()
        with start_parley(self.workdir, db, self.data.static_root) as server:
            spy = Spy(server.pid, path, seconds).start()
            wrk(f"http://127.0.0.1:{server.port}{target}", duration=seconds)
            spy.wait()


def _line(result: dict) -> str:
    from wsload import summary

    return summary(result)
