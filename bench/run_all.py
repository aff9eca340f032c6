#!/usr/bin/env python
"""The whole benchmark set (``make bench``), bounded in time; writes bench/RESULTS.md.

    bench/.venv-bench/bin/python bench/run_all.py            # full set, ~10-15 min
    bench/.venv-bench/bin/python bench/run_all.py --quick    # smaller N, ~3 min

Every measurement starts fresh server processes; the peers and Parley are measured in the
same run, alternating (peer, Parley, peer, bare floor). Where a target is missed, Parley is
profiled with py-spy in a separate short pass (so the profiler does not perturb the
measured numbers) and the hot spots go into RESULTS.md. Raw numbers go to
bench/results/run-<time>.json. A hand-written section between the ``analysis`` markers
of an existing RESULTS.md is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from common import (
    BENCH,
    RESULTS_DIR,
    clean_workdir,
    log,
    pin_client,
    prepare_parley,
    raise_fd_limit,
    start_named,
    versions,
)
from durable import DURABLE_ROOMS, DURABLE_USERS, durable
from httpbench import http_bench
from loadclient import ReceiverPool, loop_name
from spy import Spy, available, format_summary, summarize
from wsload import fanout, hold

RESULTS_MD = BENCH / "RESULTS.md"
ANALYSIS_START = "<!-- analysis:start -->"
ANALYSIS_END = "<!-- analysis:end -->"

FULL = {
    "fanout_n": 1000, "fanout_seconds": 8.0, "window_fast": 20, "window_peer": 3,
    "latency_n": 1000, "latency_rate": 10.0, "latency_seconds": 10.0,
    "http_n": 200, "http_seconds": 8.0,
    "hold_n": 10_000, "hold_seconds": 5.0,
    "durable_seconds": 8.0, "durable_senders": 16,
    "wrk_seconds": 8.0, "budget": 15 * 60,
}  # fmt: skip
QUICK = {
    "fanout_n": 200, "fanout_seconds": 3.0, "window_fast": 20, "window_peer": 3,
    "latency_n": 200, "latency_rate": 10.0, "latency_seconds": 4.0,
    "http_n": 50, "http_seconds": 3.0,
    "hold_n": 1000, "hold_seconds": 2.0,
    "durable_seconds": 3.0, "durable_senders": 8,
    "wrk_seconds": 3.0, "budget": 5 * 60,
}  # fmt: skip


class OutOfTime(Exception):
    pass


def _alarm(_signum, _frame):
    raise OutOfTime("the time budget of run_all is spent")


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
    def __init__(self, cfg: dict, workdir: Path, procs: int) -> None:
        self.cfg = cfg
        self.workdir = workdir
        self.procs = procs
        self.results: dict = {"phases": {}, "errors": {}, "profiles": {}, "loadavg": {}}
        self.data = None
        self.pg_data = None

    def phase(self, name: str, fn) -> None:
        log(f"== {name} (load average {loadavg()})")
        self.results["loadavg"][name] = loadavg()
        started = time.monotonic()
        try:
            self.results["phases"][name] = fn()
        except OutOfTime:
            self.results["errors"][name] = "skipped: time budget spent"
            raise
        except Exception as error:  # one broken phase must not lose the others
            log(f"{name} failed: {error}")
            self.results["errors"][name] = f"{type(error).__name__}: {error}"
            traceback.print_exc()
        log(f"   {name} took {time.monotonic() - started:.0f}s")

    # -- phases --------------------------------------------------------------------

    def _fanout_on(self, pool, name: str, n: int, **kwargs) -> dict:
        server = start_named(name, self.workdir, self.data)
        with server:
            cookie = self.data.cookie("bench-sender") if name == "parley" else None
            return fanout(server, pool, n, cookie=cookie, **kwargs)

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

    def http(self) -> dict:
        if shutil.which("wrk") is None:
            raise RuntimeError("wrk is not installed (bench/setup_venvs.sh installs it)")
        return http_bench(self.data, self.workdir, duration=self.cfg["wrk_seconds"])

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


# --------------------------------------------------------------------------- targets


def _get(results: dict, *keys, default=None):
    current = results
    for key in keys:
        if not isinstance(current, dict) or key not in current:
            return default
        current = current[key]
    return current


def _ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def evaluate(results: dict) -> list[dict]:
    """Each target of issue 5: the measured value, the limit, met or not."""
    p = results["phases"]
    rows = []

    def add(key, what, value, limit, met, note=""):
        rows.append({"key": key, "target": what, "value": value, "limit": limit,
                     "met": met, "note": note})  # fmt: skip

    fan = p.get("fanout_ws", {})
    pa, dm, dr, bare = (fan.get(k) for k in ("parley", "daphne-memory", "daphne-redis", "bare"))
    if pa and dm:
        r = _ratio(pa["delivered_per_s"], dm["delivered_per_s"])
        add("fanout", "WS fan-out x1000: delivered msgs/s >= 20x Daphne (memory layer)",
            r, 20, r is not None and r >= 20)  # fmt: skip
        c = _ratio(pa["cpu_s_per_1000"], dm["cpu_s_per_1000"])
        add("fanout", "CPU per 1000 deliveries <= 1/20 of Daphne (memory layer)",
            c, 0.05, c is not None and c <= 0.05)  # fmt: skip
    if pa and dr:
        r = _ratio(pa["delivered_per_s"], dr["delivered_per_s"])
        add("fanout", "WS fan-out x1000: delivered msgs/s >= 20x Daphne (Redis layer)",
            r, 20, r is not None and r >= 20)  # fmt: skip
        c = _ratio(pa["cpu_s_per_1000"], dr["cpu_s_per_1000"])
        add("fanout", "CPU per 1000 deliveries <= 1/20 of Daphne (Redis layer)",
            c, 0.05, c is not None and c <= 0.05)  # fmt: skip
    if pa and bare:
        c = _ratio(pa["cpu_s_per_1000"], bare["cpu_s_per_1000"])
        add("fanout", "CPU per 1000 deliveries within 2x of the bare floor",
            c, 2, c is not None and c <= 2)  # fmt: skip
    if pa:
        bad = pa["lost"] + pa["duplicated"] + pa["out_of_order"]
        add("fanout", "zero lost / duplicated / out of order (Parley, x1000)", bad, 0, bad == 0)
    lat = _get(p, "latency", "parley")
    if lat:
        add("latency", f"{lat['receivers']} receivers at {lat['mode']}: p99 <= 50 ms",
            lat["lat_p99_ms"], 50,
            lat["lat_p99_ms"] is not None and lat["lat_p99_ms"] <= 50)  # fmt: skip
    hp, hd = _get(p, "hold", "parley"), _get(p, "hold", "daphne-memory")
    if hp:
        ok = hp["connected"] >= hp["requested"] and hp["alive_after_hold"] >= hp["requested"]
        add("hold", f"{hp['requested']} idle WS held by one process", hp["alive_after_hold"],
            hp["requested"], ok)  # fmt: skip
    for layer in ("memory", "redis"):
        hd = _get(p, "hold", f"daphne-{layer}")
        if hp and hd:
            m = _ratio(hp["rss_per_conn_kb"], hd["rss_per_conn_kb"])
            add("hold", f"memory per connection <= 1/2 of Daphne's ({layer} layer)", m, 0.5,
                m is not None and m <= 0.5)  # fmt: skip
            c = _ratio(hp["cpu_per_connect_ms"], hd["cpu_per_connect_ms"])
            add("hold", f"CPU per connect <= 1/5 of Daphne's ({layer} layer)", c, 0.2,
                c is not None and c <= 0.2)  # fmt: skip
    d = p.get("durable", {})
    if d.get("sqlite-w1"):
        v = d["sqlite-w1"]["committed_per_s"]
        add("durable", "durable sends, SQLite, one process >= 5000 committed msgs/s", v, 5000,
            v >= 5000)  # fmt: skip
    if d.get("postgres-w1") and d.get("postgres-w2"):
        r = _ratio(d["postgres-w2"]["committed_per_s"], d["postgres-w1"]["committed_per_s"])
        add("durable-pg", "PostgreSQL --workers 2 >= 1.6x one worker", r, 1.6,
            r is not None and r >= 1.6)  # fmt: skip
    h = p.get("http", {})
    if h.get("parley") and h.get("gunicorn"):
        r = _ratio(h["parley"]["page"]["req_per_s"], h["gunicorn"]["page"]["req_per_s"])
        add("http-page", "Django page req/s: WSGIResource >= gunicorn gthread (same threads)",
            r, 1.0, r is not None and r >= 1.0)  # fmt: skip
        r = _ratio(h["parley"]["static"]["req_per_s"], h["gunicorn"]["static"]["req_per_s"])
        add("http-static", "static file req/s >= 3x gunicorn + whitenoise", r, 3.0,
            r is not None and r >= 3.0)  # fmt: skip
    return rows


# --------------------------------------------------------------------------- report


def _fmt(value, digits=2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) < 1:
            return f"{value:.3g}"
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


def report(results: dict, targets: list[dict], args, started: float) -> str:
    p = results["phases"]
    m = results["machine"]
    out = [
        "# Parley benchmark results",
        "",
        f"Written by `bench/run_all.py{' --quick' if args.quick else ''}` on"
        f" {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(started))}, in"
        f" {results.get('minutes', (time.time() - started) / 60):.1f} min."
        " Numbers are from this one run; raw JSON:"
        f" `{results['json']}`.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {m['cpu']} ({m['cores']} cores), memory {m['memory']}, Linux {m['kernel']}",
        "- Servers under test pinned to core 0, all client processes (and wrk) to core 1"
        " (durable sends: not pinned).",
        f"- Client: {results.get('procs', args.procs)} receiver processes,"
        f" {m['client_loop']} event loop, raw WebSocket/SSE/long-poll protocols"
        " (bench/loadclient.py).",
        f"- Load average at each phase: {json.dumps(results['loadavg'])}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(results["versions"].items())),
        "",
        "Command: `make bench` = `bench/setup_venvs.sh && bench/.venv-bench/bin/python"
        f" bench/run_all.py{' --quick' if args.quick else ''}`",
        "",
        "## Targets",
        "",
    ]
    out += _table(
        ["target", "measured", "limit", "met?"],
        [[t["target"], t["value"], t["limit"], "met" if t["met"] else "**MISSED**"]
         for t in targets],
    )  # fmt: skip
    fan = p.get("fanout_ws")
    if fan:
        names = [n for n in ("parley", "daphne-memory", "daphne-redis", "bare") if n in fan]
        rows = []
        for label, key in (
            ("receivers", "receivers"), ("mode", "mode"), ("messages sent", "sent"),
            ("delivered", "delivered"), ("lost", "lost"), ("duplicated", "duplicated"),
            ("out of order", "out_of_order"), ("closed by server", "closed_by_server"),
            ("delivered msgs/s", "delivered_per_s"),
            ("server CPU s per 1000 deliveries", "cpu_s_per_1000"),
            ("server CPU utilisation", "server_cpu_util"),
            ("client CPU utilisation (1 core)", "client_cpu_util"),
            ("latency p50 ms", "lat_p50_ms"), ("latency p95 ms", "lat_p95_ms"),
            ("latency p99 ms", "lat_p99_ms"), ("latency max ms", "lat_max_ms"),
        ):  # fmt: skip
            rows.append([label, *(fan[n][key] for n in names)])
        pa = fan.get("parley")
        if pa:
            rows.append(["**Parley/peer: delivered msgs/s**",
                         *(_ratio(pa["delivered_per_s"], fan[n]["delivered_per_s"])
                           for n in names)])  # fmt: skip
            rows.append(["**Parley/peer: CPU per 1000**",
                         *(_ratio(pa["cpu_s_per_1000"], fan[n]["cpu_s_per_1000"])
                           for n in names)])  # fmt: skip
        out += ["", "## WebSocket fan-out, throughput (one room, one sender)", ""]
        out += _table(["", *names], rows)
        out += [
            "",
            "`window W`: the sender keeps at most W messages not yet received by every"
            " receiver (end-to-end flow control), so each server runs as fast as it can"
            " without unbounded queues; the peer gets a smaller window because at ~1-2k"
            " deliveries/s a window of 20 messages x 1000 receivers is 10-20 s of backlog"
            " (the latencies above are queueing in that window, not idle latency).",
        ]
    lat = p.get("latency")
    if lat:
        names = list(lat)
        rows = [[label, *(lat[n][key] for n in names)] for label, key in (
            ("receivers", "receivers"), ("mode", "mode"), ("sent", "sent"),
            ("delivered", "delivered"), ("lost", "lost"), ("duplicated", "duplicated"),
            ("out of order", "out_of_order"),
            ("server CPU s per 1000 deliveries", "cpu_s_per_1000"),
            ("latency p50 ms", "lat_p50_ms"), ("latency p95 ms", "lat_p95_ms"),
            ("latency p99 ms", "lat_p99_ms"), ("latency max ms", "lat_max_ms"),
        )]  # fmt: skip
        out += ["", "## WebSocket fan-out, latency at a fixed rate", ""]
        out += _table(["", *names], rows)
    ht = p.get("fanout_http")
    if ht:
        names = list(ht)
        rows = [[label, *(ht[n][key] for n in names)] for label, key in (
            ("receivers", "receivers"), ("mode", "mode"), ("sent", "sent"),
            ("delivered", "delivered"), ("lost", "lost"), ("duplicated", "duplicated"),
            ("out of order", "out_of_order"), ("delivered msgs/s", "delivered_per_s"),
            ("server CPU s per 1000 deliveries", "cpu_s_per_1000"),
            ("latency p50 ms", "lat_p50_ms"), ("latency p99 ms", "lat_p99_ms"),
        )]  # fmt: skip
        out += ["", "## Parley fan-out by transport (WebSocket vs SSE vs long-poll)", ""]
        out += _table(["", *names], rows)
    hd = p.get("hold")
    if hd:
        names = [n for n in ("parley", "daphne-memory", "daphne-redis", "bare") if n in hd]
        rows = [[label, *(hd[n][key] for n in names)] for label, key in (
            ("requested", "requested"), ("connected", "connected"), ("failed", "failed"),
            ("alive after hold", "alive_after_hold"), ("connect phase s", "connect_seconds"),
            ("handshake p50 ms", "handshake_p50_ms"), ("handshake p99 ms", "handshake_p99_ms"),
            ("server RSS before MiB", "rss_before_mb"), ("server RSS after MiB", "rss_after_mb"),
            ("RSS per connection KiB", "rss_per_conn_kb"),
            ("server CPU per connect ms", "cpu_per_connect_ms"),
        )]  # fmt: skip
        hp = hd.get("parley")
        if hp:
            rows.append(["**Parley/peer: RSS per connection**",
                         *(_ratio(hp["rss_per_conn_kb"], hd[n]["rss_per_conn_kb"])
                           for n in names)])  # fmt: skip
            rows.append(["**Parley/peer: CPU per connect**",
                         *(_ratio(hp["cpu_per_connect_ms"], hd[n]["cpu_per_connect_ms"])
                           for n in names)])  # fmt: skip
        out += ["", "## Idle WebSocket connections held by one process", ""]
        out += _table(["", *names], rows)
    du = p.get("durable")
    if du:
        rows = [[k, v["db"], v["workers"], v["senders"], v["rooms"], v["window"],
                 v["committed_per_s"], v["errors"], v["server_cpu_s"],
                 v.get("machine_busy_cores")]
                for k, v in du.items()]  # fmt: skip
        out += ["", "## Durable sends (committed = acked messages per second)", ""]
        out += _table(["run", "db", "workers", "senders", "rooms", "window/sender",
                       "committed msgs/s", "errors", "Parley CPU s",
                       "machine busy cores (of 2)"], rows)  # fmt: skip
    ht = p.get("http")
    if ht:
        rows = []
        for label in ("page", "static"):
            for name in ("gunicorn", "parley"):
                r = ht[name][label]
                rows.append([f"{label}: {name}", r["req_per_s"], r["lat_p50_ms"],
                             r["lat_p99_ms"], r["non_2xx"],
                             r["socket_errors"] or "-"])  # fmt: skip
            rows.append([f"**{label}: Parley/gunicorn**",
                         _ratio(ht["parley"][label]["req_per_s"],
                                ht["gunicorn"][label]["req_per_s"]), "", "", "", ""])  # fmt: skip
        out += ["", f"## HTTP under wrk ({ht['threads']} threads each; static file"
                f" `{ht['static_path']}`)", ""]  # fmt: skip
        out += _table(["", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors"], rows)
    if results["profiles"]:
        out += ["", "## py-spy profiles of Parley for the missed targets", ""]
        for miss, summary in results["profiles"].items():
            out += [f"### {miss}", "", "```", format_summary(summary, top=12), "```", ""]
    if results["errors"]:
        out += ["", "## Errors", ""]
        out += [f"- {k}: {v}" for k, v in results["errors"].items()]
    return "\n".join(out) + "\n"


def keep_analysis(text: str) -> str:
    try:
        old = RESULTS_MD.read_text()
    except FileNotFoundError:
        old = ""
    if ANALYSIS_START in old and ANALYSIS_END in old:
        kept = old[old.index(ANALYSIS_START) : old.index(ANALYSIS_END) + len(ANALYSIS_END)]
    else:
        kept = f"{ANALYSIS_START}\n{ANALYSIS_END}"
    return text + "\n" + kept + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller N and durations")
    parser.add_argument("--procs", type=int, default=2, help="client receiver processes")
    parser.add_argument("--only", nargs="*", default=None,
                        help="fanout_ws latency fanout_http hold durable http")  # fmt: skip
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS_MD)
    parser.add_argument("--from-json", type=Path, default=None,
                        help="measure nothing: rewrite the report from a run's JSON")  # fmt: skip
    args = parser.parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        args.quick = results.get("quick", args.quick)
        for miss in list(results["profiles"]):  # re-read: the summary may have improved
            path = RESULTS_DIR / f"profile-{miss}.txt"
            if path.exists():
                results["profiles"][miss] = summarize(path)
        targets = evaluate(results)
        results["targets"] = targets
        text = report(results, targets, args, results.get("started", time.time()))
        args.output.write_text(keep_analysis(text) if args.output == RESULTS_MD else text)
        log(f"wrote {args.output} from {args.from_json}")
        return 0
    cfg = QUICK if args.quick else FULL
    started = time.time()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(cfg["budget"]))
    raise_fd_limit()
    pin_client()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    workdir = RESULTS_DIR / "work"
    clean_workdir(workdir)
    runner = Runner(cfg, workdir, args.procs)
    results = runner.results
    results["machine"] = machine()
    results["versions"] = versions()
    results["config"] = cfg
    results["quick"] = args.quick
    results["started"] = started
    results["procs"] = args.procs
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    json_path = RESULTS_DIR / f"run-{stamp}.json"
    results["json"] = str(json_path.relative_to(BENCH.parent))
    phases = args.only or ["fanout_ws", "latency", "fanout_http", "hold", "durable", "http"]
    try:
        log("preparing Parley's SQLite database (users signed in once)")
        runner.data = prepare_parley(
            workdir,
            users=("bench-sender", *DURABLE_USERS),
            rooms=("lobby", *DURABLE_ROOMS),
        )
        for name in phases:
            runner.phase(name, getattr(runner, name))
        targets = evaluate(results)
        misses = sorted({t["key"] for t in targets if not t["met"]} - {"durable-pg"})
        if misses and not args.no_profile:
            runner.profile_misses(misses)
    except OutOfTime as error:
        log(str(error))
        results["errors"]["run_all"] = str(error)
    finally:
        signal.alarm(0)
        for data in (runner.data, runner.pg_data):
            if data is not None:
                data.drop()
    targets = evaluate(results)
    results["targets"] = targets
    results["minutes"] = (time.time() - started) / 60
    json_path.write_text(json.dumps(results, indent=2, default=str))
    text = report(results, targets, args, started)
    if args.output == RESULTS_MD:
        text = keep_analysis(text)
    args.output.write_text(text)
    log(f"wrote {args.output} and {json_path}")
    for t in targets:
        log(f"{'met   ' if t['met'] else 'MISSED'} {t['target']}: {_fmt(t['value'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
