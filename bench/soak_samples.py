"""The soak's measurements (bench/soak.py): the server's processes sampled every
``--sample-seconds`` (RSS, descriptors, client connections, threads, database
connections, Redis memory, the server's own delivery histogram), the verdict on them,
and the chart of a run's samples."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import server_metrics  # noqa: E402

# --------------------------------------------------------------------------- samples


def signal_servers(server, signum: int) -> None:
    tree = process_tree(server.proc.pid)
    # The serving processes only: a --workers supervisor has no handler (and would die).
    for pid in tree if len(tree) == 1 else tree[1:]:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return pids


def client_sockets(pid: int, ports: set[int]) -> set[str]:
    """The inodes of established TCP connections on the server's ports (its clients)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "01" and int(cols[1].rsplit(":", 1)[1], 16) in ports:
                    inodes.add(f"socket:[{cols[9]}]")
    return inodes


def _readlink(fd: Path) -> str:
    # A descriptor may close between the listing and the read: it still counted.
    try:
        return os.readlink(fd)
    except OSError:
        return ""


def sample(server, args) -> dict:
    rss = fds = threads = db = clients = 0
    db_file = server.database_url.removeprefix("sqlite:///")
    ports = {server.port, args.irc_port}
    for pid in process_tree(server.proc.pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            links = [_readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss += int(fields["VmRSS"].split()[0]) * 1024
        threads += int(fields["Threads"])
        fds += len(links)
        db += sum(link == db_file for link in links)
        clients += len(client_sockets(pid, ports) & set(links))
    row = {"t": time.time(), "rss": rss, "fds": fds, "threads": threads, "db_conns": db,
           "client_sockets": clients}  # fmt: skip
    # The server's own append->delivery histogram (cumulative): what the server took, apart
    # from the clients' lag in the send->ack they time. One process: the sum of workers'
    # histograms is not served by one port, so only the single-process soak has it.
    if not args.postgres:
        scraped = server_metrics.scrape(server.port) or {}
        row["delivery_buckets"] = {
            labels: value for (name, labels), value in scraped.items()
            if name == "parley_append_to_delivery_seconds_bucket"
        }  # fmt: skip
    if args.postgres:
        import psycopg

        with psycopg.connect(server.database_url, connect_timeout=5) as c:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            row["db_conns"] = c.execute(query).fetchone()[0] - 1  # not this one
        with socket.create_connection(("127.0.0.1", 6379), timeout=5) as s:
            s.sendall(b"INFO memory\r\n")
            text = s.recv(65536).decode(errors="replace")
        row["redis_used_memory"] = int(text.split("used_memory:")[1].split()[0])
    return row


def sampler(server, args, samples: list, stop: threading.Event) -> None:
    # --trace-memory: the server's allocations dumped at the end of warm-up and near the
    # end of the run (SIGUSR2, project/memory_dump.py): the second names what grew.
    t0 = time.time()
    dumps = [t0 + args.minutes * 12, t0 + args.minutes * 60 - 2 * args.sample_seconds]
    while not stop.wait(args.sample_seconds):
        if args.trace_memory and dumps and time.time() >= dumps[0]:
            dumps.pop(0)
            signal_servers(server, signal.SIGUSR2)
        try:
            samples.append(sample(server, args))
        except Exception as exc:  # a failed sample must not end the soak
            samples.append({"t": time.time(), "error": repr(exc)})


def args_threads() -> int:
    """Django's pool threads, each of which may hold a database connection (SQLite: the
    file, its WAL and its shared-memory file) opened lazily during the run."""
    return 10


P99_CEILING_MS = 1000.0  # the last third's p99 send->ack must also stay under this


def p99(values: list[float]) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * 0.99))], 1)


def verdict(
    samples: list, lat: list, t0: float, stop_at: float, baseline: dict, after: dict, ramp: float
) -> dict:
    load = [s for s in samples if "rss" in s and t0 <= s["t"] <= stop_at]
    warm = load[max(1, len(load) // 5) :] or load
    growth = (warm[-1]["rss"] - warm[0]["rss"]) / warm[0]["rss"] if warm else None
    # The thirds of the time after every client has arrived (the ramp).
    third = (stop_at - t0 - ramp) / 3
    first = p99([ms for t, ms, *_ in lat if t0 + ramp <= t < t0 + ramp + third])
    last = p99([ms for t, ms, *_ in lat if t >= stop_at - third])
    by_door = {}
    for t, ms, *door in lat:
        if t >= t0 + ramp and door:
            by_door.setdefault(door[0], []).append(ms)
    ramp_end = t0 + ramp
    checks = {
        "rss_growth_after_warmup": round(growth, 4) if growth is not None else None,
        "rss_ok": growth is not None and growth < 0.05,
        "fds_baseline": baseline["fds"],
        "fds_after": after["fds"],
        # Descriptors the server keeps (database files, pools) may open during the run;
        # what must come back is the count of client connections, and the total nearly.
        "client_sockets_after": after["client_sockets"],
        "fds_ok": after["client_sockets"] <= baseline["client_sockets"]
        and after["fds"] <= baseline["fds"] + 5 + 3 * args_threads(),
        "p99_first_third_ms": first,
        "p99_last_third_ms": last,
        # Flat, and low: a server starved of CPU is flat at tens of seconds (seen with
        # 2,000 clients, PostgreSQL and 2 workers sharing this machine's 2 cores).
        "p99_ok": first is not None
        and last is not None
        and (last <= 1.5 * first or last <= first + 25)
        and last <= P99_CEILING_MS,
        "sends_timed": len(lat),
        "p99_after_ramp_ms_by_door": {door: p99(v) for door, v in sorted(by_door.items())},
        # The bucket bound holding the server's own append->delivery p99 (reported only).
        "server_delivery_p99_first_third_s": _server_p99(load, ramp_end, ramp_end + third),
        "server_delivery_p99_last_third_s": _server_p99(load, stop_at - third, stop_at),
    }
    return checks


def _server_p99(samples: list, start: float, end: float) -> float | None:
    inside = [s for s in samples if "delivery_buckets" in s and start <= s["t"] <= end]
    if len(inside) < 2:
        return None
    name = "parley_append_to_delivery_seconds_bucket"
    before, after = (
        {(name, labels): v for labels, v in s["delivery_buckets"].items()}
        for s in (inside[0], inside[-1])
    )
    return server_metrics.histogram_quantile(
        before, after, "parley_append_to_delivery_seconds", 0.99
    )


# --------------------------------------------------------------------------- charts


def chart(samples_path: Path) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        venv = REPO / "bench/.venv-bench/bin/python"
        if venv.exists():
            soak = REPO / "bench/soak.py"  # matplotlib is in the bench venv only
            subprocess.run([str(venv), str(soak), "--chart", str(samples_path)], check=False)
        return samples_path.with_name("soak.png")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(samples_path.read_text())
    rows = [s for s in data["samples"] if "rss" in s]
    t0 = data["t0"]
    panels = [
        ("rss", "RSS (MiB)", 2**20),
        ("fds", "descriptors", 1),
        ("client_sockets", "client connections", 1),
        ("threads", "threads", 1),
        ("db_conns", "database connections", 1),
        ("redis_used_memory", "Redis (MiB)", 2**20),
    ]
    panels = [p for p in panels if any(p[0] in r for r in rows)]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(8, 2.2 * (len(panels) + 1)), sharex=True)
    for ax, (key, label, scale) in zip(axes, panels, strict=False):
        ax.plot([(r["t"] - t0) / 60 for r in rows], [r.get(key, 0) / scale for r in rows])
        ax.set_ylabel(label)
    lat = data["latency"]
    axes[-1].plot([(x[0] - t0) / 60 for x in lat], [x[1] for x in lat], ",", alpha=0.4)
    axes[-1].set_ylabel("send→ack (ms)")
    axes[-1].set_yscale("log")
    axes[-1].set_xlabel("minutes")
    fig.suptitle(f"Parley soak: {data['config']['clients']} clients")
    fig.tight_layout()
    out = samples_path.with_name("soak.png")
    fig.savefig(out, dpi=100)
    return out
