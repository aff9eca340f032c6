"""RESULTS.md from a run's results: the goals table, a table per phase, the charts.

``report()`` reads only the results dict (what run_all.py saves as JSON), so
``run_all.py --from-json`` can rewrite RESULTS.md without measuring anything.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from spy import format_summary
from targets import get, ratio

ANALYSIS_START = "<!-- analysis:start -->"
ANALYSIS_END = "<!-- analysis:end -->"
CHART_TITLES = {
    "latency_cdf": "Delivery latency CDF per server",
    "sweep": "Fan-out throughput and CPU per delivery against receivers",
    "memory": "Server memory against idle connections",
    "workers": "One worker against two (CPU per delivery, throughput)",
    "scenario": "Many rooms: delivery p99 and server CPU against the message rate",
}


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


def report(
    results: dict,
    targets: list[dict],
    *,
    quick: bool,
    started: float,
    charts: dict[str, str] | None = None,
) -> str:
    """RESULTS.md from a run's results (``charts``: name -> path relative to bench/)."""
    p = results["phases"]
    m = results["machine"]
    out = [
        "# Parley benchmark results",
        "",
        f"Written by `bench/run_all.py{' --quick' if quick else ''}` on"
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
        f"- Client: {results.get('procs', 2)} receiver processes,"
        f" {m['client_loop']} event loop, raw WebSocket/SSE/long-poll protocols"
        " (bench/loadclient.py).",
        f"- Load average at each phase: {json.dumps(results['loadavg'])}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(results["versions"].items())),
        "",
        f"Command: `make bench{'-quick' if quick else ''}` = `sh bench/setup_venvs.sh &&"
        " bench/.venv-bench/bin/python"
        f" bench/run_all.py{' --quick' if quick else ''}`",
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
                         *(ratio(pa["delivered_per_s"], fan[n]["delivered_per_s"])
                           for n in names)])  # fmt: skip
            rows.append(["**Parley/peer: CPU per 1000**",
                         *(ratio(pa["cpu_s_per_1000"], fan[n]["cpu_s_per_1000"])
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
                         *(ratio(hp["rss_per_conn_kb"], hd[n]["rss_per_conn_kb"])
                           for n in names)])  # fmt: skip
            rows.append(["**Parley/peer: CPU per connect**",
                         *(ratio(hp["cpu_per_connect_ms"], hd[n]["cpu_per_connect_ms"])
                           for n in names)])  # fmt: skip
        out += ["", "## Idle WebSocket connections held by one process", ""]
        out += _table(["", *names], rows)
    du = p.get("durable")
    if du:
        rows = [[k, v["db"], v["workers"], v["senders"], v["rooms"], v["window"],
                 v["committed_per_s"], v["errors"], v["server_cpu_s"],
                 v.get("machine_busy_cores"), v.get("server_cpu_us_per_message"),
                 v.get("postgres_cpu_us_per_message"), v.get("redis_cpu_us_per_message"),
                 v.get("redis_commands_per_message")]
                for k, v in du.items()]  # fmt: skip
        out += ["", "## Durable sends (committed = acked messages per second)", ""]
        out += _table(["run", "db", "workers", "senders", "rooms", "window/sender",
                       "committed msgs/s", "errors", "Parley CPU s",
                       "machine busy cores (of 2)", "Parley CPU us/msg",
                       "PostgreSQL CPU us/msg", "Redis CPU us/msg", "Redis commands/msg"],
                      rows)  # fmt: skip
    ht = p.get("http")
    if ht:
        out += _http_section(ht)
    out += charts_section(charts or {})
    out += issue14_sections(p)
    if results["profiles"]:
        out += ["", "## py-spy profiles of Parley for the missed targets", ""]
        for miss, summary in results["profiles"].items():
            out += [f"### {miss}", "", "```", format_summary(summary, top=12), "```", ""]
    if results["errors"]:
        out += ["", "## Errors", ""]
        out += [f"- {k}: {v}" for k, v in results["errors"].items()]
    return "\n".join(out) + "\n"


def _http_section(ht: dict) -> list[str]:
    names = [n for n in ht.get("servers", ("gunicorn", "parley")) if n in ht]
    medians = ht.get("median_req_per_s", {})
    rows = []
    for label in ("page", "static"):
        for name in names:
            r = ht[name][label]
            rows.append([f"{label}: {name}", get(medians, name, label, default=r["req_per_s"]),
                         r["lat_p50_ms"], r["lat_p99_ms"], r["non_2xx"],
                         r["socket_errors"] or "-"])  # fmt: skip
        for peer in (n for n in names if n != "parley"):
            found = get(ht, "ratios_of_medians", f"parley/{peer}", label)
            if found is None:
                found = ratio(ht["parley"][label]["req_per_s"], ht[peer][label]["req_per_s"])
            per_round = get(ht, "round_ratios", f"parley/{peer}", label, default=[])
            each = "rounds: " + ", ".join(_fmt(x) for x in per_round)
            rows.append([f"**{label}: Parley/{peer}**", found, each, "", "", ""])
    rounds = len(ht.get("rounds", [])) or 1
    out = ["", f"## HTTP under wrk ({ht['threads']} threads each; static file"
           f" `{ht['static_path']}`; median req/s of {rounds} alternation(s))", ""]  # fmt: skip
    return out + _table(["", "req/s", "p50 ms", "p99 ms", "non-2xx", "socket errors"], rows)


def charts_section(charts: dict[str, str]) -> list[str]:
    if not charts:
        return []
    out = ["", "## Charts", ""]
    for name, path in charts.items():
        title = CHART_TITLES.get(name, name)
        out += [f"### {title}", "", f"![{title}]({path})", ""]
    return out


def issue14_sections(p: dict) -> list[str]:
    out: list[str] = []
    sw = p.get("sweep")
    if sw:
        names = list(sw)
        sizes = sorted({int(n) for runs in sw.values() for n in runs})
        rows = []
        for n in sizes:
            rows.append([f"{n}: delivered msgs/s",
                         *(get(sw, s, str(n), "delivered_per_s") for s in names)])  # fmt: skip
            rows.append([f"{n}: CPU s per 1000 deliveries",
                         *(get(sw, s, str(n), "cpu_s_per_1000") for s in names)])  # fmt: skip
            rows.append([f"{n}: latency p99 ms",
                         *(get(sw, s, str(n), "lat_p99_ms") for s in names)])  # fmt: skip
        out += ["", "## Fan-out against the number of receivers (one room, one sender)", ""]
        out += _table(["receivers", *names], rows)
    w = p.get("workers")
    if w:
        rows = []
        for part in ("cpu", "throughput"):
            for label, r in w.get(part, {}).items():
                rows.append([f"{part}: {label}", r.get("workers"), r["receivers"], r["mode"],
                             r["delivered_per_s"], r["cpu_s_per_1000"], r["lat_p99_ms"],
                             r["lost"] + r["duplicated"] + r["out_of_order"]])  # fmt: skip
        out += ["", "## Several workers (CPU at a fixed rate unpinned; throughput with the"
                " servers on core 0, the clients on core 1)", ""]  # fmt: skip
        out += _table(["run", "workers", "receivers", "mode", "delivered msgs/s",
                       "CPU s per 1000", "p99 ms", "lost+dup+ooo"], rows)  # fmt: skip
        out += ["", f"CPU per delivery, 2 workers + Redis / 1 worker:"
                f" {_fmt(w.get('cpu_ratio_w2_over_w1'))}; 1 worker + Redis / 1 worker:"
                f" {_fmt(w.get('cpu_ratio_redis_over_w1'))}; throughput on one core, 2 workers"
                f" / 1: {_fmt(w.get('throughput_ratio_w2_over_w1'))}."]  # fmt: skip
    idle = p.get("idle")
    if idle and idle.get("runs"):
        rows = []
        for name, run in idle["runs"].items():
            for step in run.get("steps", []):
                rows.append([name, step["held"], step["rss_mib"], step["rss_per_conn_kib"],
                             step["connects_per_s"], step["cpu_per_connect_ms"]])  # fmt: skip
        out += ["", "## Idle WebSockets in one process, by step", ""]
        out += _table(["server", "held", "RSS MiB", "RSS per conn KiB", "connects/s",
                       "CPU per connect ms"], rows)  # fmt: skip
        extra = {k: v for k, v in idle.items() if k not in ("runs", "test")}
        idle_cpu = {n: {k: v for k, v in r.items() if "idle" in k or "alive" in k}
                    for n, r in idle["runs"].items()}  # fmt: skip
        out += ["", f"Summary: `{json.dumps(extra)}`; idle: `{json.dumps(idle_cpu)}`"]
    out += _features_section(p.get("features"))
    out += _scenario_section(p.get("scenario"))
    return out


def _scenario_section(sc: dict | None) -> list[str]:
    """The many-room ladder: one row per rate, per server, up to its first failing rate."""
    if not sc or not sc.get("runs"):
        return []
    out = ["", "## Many rooms, many users (bench/scenario.py)", ""]
    for run in sc["runs"]:
        shape = "a socket per room per user, messages only"
        if run.get("inbox_sockets"):
            shape = "an inbox and one open room socket per user, 3 typing events per message"
        if any("reconnects" in st for st in run.get("steps", [])):
            shape += ", 1% of room readers resuming with since each second"
        out.append(f"- {run['server']}: {run['users']} users, {run['rooms']} rooms (largest"
                   f" {run['largest_room']}), {run['per_user']} rooms each; {shape};"
                   f" {run['sockets']} sockets opened in {run['connect_s']} s"
                   f" ({run['connect_cpu_ms_per_socket']} ms CPU each)")  # fmt: skip
    out.append("")
    rows = []
    for run in sc["runs"]:
        for st in run.get("steps", []):
            churn = (f"{st['reconnects']} ({st['reconnects_with_since']} with since),"
                     f" p99 {_fmt(st['reconnect_p99_ms'])} ms"
                     if "reconnects" in st else "")  # fmt: skip
            rows.append([run["server"], st["rate_target"], st["rate_achieved"],
                         st["deliveries_per_message"],
                         f"{st['lost']} / {st['duplicated']} / {st['out_of_order']}",
                         st["p50_ms"], st["p99_ms"], st["ack_p99_ms"], st["server_cpu_share"],
                         st["deliveries_per_s"], st["inbox_events"],
                         st["cpu_us_per_delivered_event"], churn])  # fmt: skip
    out += _table(["server", "msgs/s asked", "msgs/s sent", "deliveries per msg",
                   "lost / dup / disorder", "p50 ms", "p99 ms", "ack p99 ms", "server CPU",
                   "room deliveries/s", "inbox frames", "CPU us per event", "resumes"],
                  rows)  # fmt: skip
    best = sc.get("best_rate", {})
    out += ["", "Best rate with p99 <= 100 ms and nothing lost: "
            + ", ".join(f"{k} {v if v is not None else 'none'}" for k, v in best.items())
            + " msgs/s."]  # fmt: skip
    return out


def _features_section(f: dict | None) -> list[str]:
    if not f:
        return []
    out = ["", "## What the features cost", ""]
    rows = []
    inbox = f.get("inbox")
    if inbox:
        cost = (f"x{_fmt(inbox['ratio_cpu_per_message_with_inbox'])} CPU per message;"
                f" {_fmt(inbox['inbox_cpu_us_per_activity_frame'])} us per frame")  # fmt: skip
        rows.append(["inbox fan-out", f"{inbox['members']} members, each with an inbox", cost])
    for db in ("sqlite", "postgres"):
        a = f.get(f"api_rooms-{db}")
        if a:
            what = f"{a['rooms']} rooms, {a['messages']} messages, {db}"
            rows.append(["GET /api/rooms/ (with unread counts)", what,
                         f"median {_fmt(a['api_rooms_median_ms'])} ms,"
                         f" p90 {_fmt(a['api_rooms_p90_ms'])} ms"])  # fmt: skip
            rows.append(["unread counts alone (chat/counts.py)", what,
                         f"median {_fmt(a['counts_median_ms'])} ms"])  # fmt: skip
    for vendor in ("sqlite", "postgresql"):
        s = f.get(f"search-{vendor}")
        if s:
            rows.append(["search", f"{s.get('messages', '?')} messages, {vendor}"
                         f" (built in {_fmt(s.get('load_and_index_seconds'))} s)",
                         f"worst query p50 {_fmt(s.get('p50_ms_max'))} ms,"
                         f" p99 {_fmt(s.get('p99_ms_max'))} ms"])  # fmt: skip
    up = f.get("uploads")
    if up:
        rows.append(["upload", f"{_fmt(up['file_mib'])} MiB files",
                     f"{_fmt(up['throughput_mib_s']['median'])} MiB/s; RSS +"
                     f"{_fmt(up['peak_minus_idle_mib'])} MiB for {up['parallel_uploads']}"
                     " in parallel"])  # fmt: skip
    out += _table(["feature", "data", "measured"], rows)
    for vendor in ("sqlite", "postgresql"):
        s = f.get(f"search-{vendor}")
        if s and s.get("queries"):
            out += ["", f"Search on {vendor}, per query:", ""]
            out += _table(["query", "results", "p50 ms", "p99 ms"],
                          [[q["query"], q["results"], q["p50_ms"], q["p99_ms"]]
                           for q in s["queries"]])  # fmt: skip
    if f.get("errors"):
        out += ["", *(f"- {k} failed: {v}" for k, v in f["errors"].items())]
    return out


def keep_analysis(text: str, old: str) -> str:
    """``text`` with the hand-written analysis section of ``old`` (RESULTS.md) kept."""
    if ANALYSIS_START in old and ANALYSIS_END in old:
        kept = old[old.index(ANALYSIS_START) : old.index(ANALYSIS_END) + len(ANALYSIS_END)]
    else:
        kept = f"{ANALYSIS_START}\n{ANALYSIS_END}"
    return text + "\n" + kept + "\n"


def replace_marked(path: Path, start: str, end: str, text: str) -> None:
    """Rewrite the part of ``path`` between the markers ``start`` and ``end`` with
    ``text`` (read literally), keeping the rest; SystemExit when a marker is missing."""
    old = path.read_text()
    if start not in old or end not in old:
        raise SystemExit(f"{path} has no {start} ... {end} markers")
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    path.write_text(pattern.sub(lambda _m: f"{start}\n{text}\n{end}", old))
