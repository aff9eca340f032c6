"""The goals of issues 5 and 14, each evaluated from a run's results: measured, limit, met.

``evaluate(results)`` reads only ``results["phases"]`` (what run_all.py saves as JSON), so a
saved run can be re-evaluated. A phase from another tool may carry its own goals as
``{"targets": [{"target", "value", "limit", "met"}, ...]}``: they are taken as they are.
"""

from __future__ import annotations


def get(results: dict, *keys, default=None):
    current = results
    for key in keys:
        if not isinstance(current, dict) or key not in current:
            return default
        current = current[key]
    return current


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def evaluate(results: dict) -> list[dict]:
    """Each goal: the measured value, the limit, met or not (issue 5, then issue 14)."""
    p = results["phases"]
    rows = []

    def add(key, what, value, limit, met, note=""):
        rows.append({"key": key, "target": what, "value": value, "limit": limit,
                     "met": met, "note": note})  # fmt: skip

    fan = p.get("fanout_ws", {})
    pa, dm, dr, bare = (fan.get(k) for k in ("parley", "daphne-memory", "daphne-redis", "bare"))
    n = pa["receivers"] if pa else 0
    if pa and dm:
        r = ratio(pa["delivered_per_s"], dm["delivered_per_s"])
        add("fanout", f"WS fan-out x{n}: delivered msgs/s >= 20x Daphne (memory layer)",
            r, 20, r is not None and r >= 20)  # fmt: skip
        c = ratio(pa["cpu_s_per_1000"], dm["cpu_s_per_1000"])
        add("fanout", "CPU per 1000 deliveries <= 1/20 of Daphne (memory layer)",
            c, 0.05, c is not None and c <= 0.05)  # fmt: skip
    if pa and dr:
        r = ratio(pa["delivered_per_s"], dr["delivered_per_s"])
        add("fanout", f"WS fan-out x{n}: delivered msgs/s >= 20x Daphne (Redis layer)",
            r, 20, r is not None and r >= 20)  # fmt: skip
        c = ratio(pa["cpu_s_per_1000"], dr["cpu_s_per_1000"])
        add("fanout", "CPU per 1000 deliveries <= 1/20 of Daphne (Redis layer)",
            c, 0.05, c is not None and c <= 0.05)  # fmt: skip
    if pa and bare:
        c = ratio(pa["cpu_s_per_1000"], bare["cpu_s_per_1000"])
        add("fanout", "CPU per 1000 deliveries within 2x of the bare floor",
            c, 2, c is not None and c <= 2)  # fmt: skip
    if pa:
        bad = pa["lost"] + pa["duplicated"] + pa["out_of_order"]
        add("fanout", f"zero lost / duplicated / out of order (Parley, x{n})",
            bad, 0, bad == 0)  # fmt: skip
    lat = get(p, "latency", "parley")
    if lat:
        add("latency", f"{lat['receivers']} receivers at {lat['mode']}: p99 <= 50 ms",
            lat["lat_p99_ms"], 50,
            lat["lat_p99_ms"] is not None and lat["lat_p99_ms"] <= 50)  # fmt: skip
    hp, hd = get(p, "hold", "parley"), get(p, "hold", "daphne-memory")
    if hp:
        ok = hp["connected"] >= hp["requested"] and hp["alive_after_hold"] >= hp["requested"]
        add("hold", f"{hp['requested']} idle WS held by one process", hp["alive_after_hold"],
            hp["requested"], ok)  # fmt: skip
    for layer in ("memory", "redis"):
        hd = get(p, "hold", f"daphne-{layer}")
        if hp and hd:
            m = ratio(hp["rss_per_conn_kb"], hd["rss_per_conn_kb"])
            add("hold", f"memory per connection <= 1/2 of Daphne's ({layer} layer)", m, 0.5,
                m is not None and m <= 0.5)  # fmt: skip
            c = ratio(hp["cpu_per_connect_ms"], hd["cpu_per_connect_ms"])
            add("hold", f"CPU per connect <= 1/5 of Daphne's ({layer} layer)", c, 0.2,
                c is not None and c <= 0.2)  # fmt: skip
    d = p.get("durable", {})
    if d.get("sqlite-w1"):
        v = d["sqlite-w1"]["committed_per_s"]
        add("durable", "durable sends, SQLite, one process >= 5000 committed msgs/s", v, 5000,
            v >= 5000)  # fmt: skip
    if d.get("postgres-w1") and d.get("postgres-w2"):
        r = ratio(d["postgres-w2"]["committed_per_s"], d["postgres-w1"]["committed_per_s"])
        add("durable-pg", "PostgreSQL --workers 2 >= 1.6x one worker", r, 1.6,
            r is not None and r >= 1.6)  # fmt: skip
    h = p.get("http", {})
    if h.get("parley") and h.get("gunicorn"):
        page, static = _http_ratios(h, "gunicorn")
        n = len(h.get("rounds", [])) or 1
        add("http-page", "Django page req/s: WSGIResource >= gunicorn gthread (same threads;"
            f" median of {n})", page, 1.0, page is not None and page >= 1.0)  # fmt: skip
        add("http-static", f"static file req/s >= 3x gunicorn + whitenoise (median of {n})",
            static, 3.0, static is not None and static >= 3.0)  # fmt: skip
    rows += issue14(p)
    for name, phase in p.items():
        if name == "scenario":  # scenario_goals reads it (a run before it carried its own)
            continue
        if isinstance(phase, dict) and isinstance(phase.get("targets"), list):
            for t in phase["targets"]:
                add(
                    name, t.get("target", name), t.get("value"), t.get("limit"), bool(t.get("met"))
                )
    return rows


def _http_ratios(h: dict, peer: str) -> tuple[float | None, float | None]:
    """Parley over ``peer``: the ratio of the medians over the rounds when there are rounds
    (bench/httpbench.py ``run_http``), else of the one run."""
    medians = get(h, "ratios_of_medians", f"parley/{peer}")
    if medians:
        return medians.get("page"), medians.get("static")
    return tuple(
        ratio(h["parley"][label]["req_per_s"], h[peer][label]["req_per_s"])
        for label in ("page", "static")
    )


def _row(key, what, value, limit, met) -> dict:
    return {"key": key, "target": what, "value": value, "limit": limit, "met": met, "note": ""}


def _events_per_s(step: dict) -> float:
    """A scenario step's delivered events per second: room deliveries and inbox frames."""
    seconds = step["sent"] / max(step["rate_achieved"], 1e-9)
    return step["deliveries_per_s"] + step.get("inbox_events", 0) / max(seconds, 1e-9)


def scenario_goals(p: dict) -> list[dict]:
    """Issue 14 parts 0 and 1 from the scenario phase: the best rate kept at p99 <= 100 ms
    (no loss) as delivered events per second, against Daphne (20x), per server core
    (12,500) and against Parley's own single-room fan-out in the same run (half)."""
    sc = p.get("scenario")
    if not sc or not sc.get("runs"):
        return []
    rows = []
    runs = {run["server"]: run for run in sc["runs"]}
    parley, peer = runs.get("parley", {}), runs.get("daphne-memory", {})
    best, peer_best = parley.get("best"), peer.get("best")
    ours = _events_per_s(best) if best else 0.0
    bad = sum(s["lost"] + s["duplicated"] + s["out_of_order"] for s in parley.get("steps", []))
    rows.append(_row("scenario", "many rooms: zero lost / duplicated / out of order (Parley,"
                     " every step, resumes included)", bad, 0, bad == 0))  # fmt: skip
    if peer_best:
        r = ours / max(peer_best["deliveries_per_s"], 1e-9)
        rows.append(_row("scenario", "many rooms: best delivered events/s at p99 <= 100 ms"
                         " >= 20x Daphne's", round(r, 2), 20.0, r >= 20.0))  # fmt: skip
    elif peer:
        lowest = min((s["rate_target"] for s in peer.get("steps", [])), default=None)
        rows.append(_row("scenario", f"many rooms: Daphne kept p99 <= 100 ms at no rate tried"
                         f" ({lowest} msgs/s and up), Parley at some", ours, 0.0,
                         ours > 0))  # fmt: skip
    core = ours / max(best["server_cpu_share"], 1e-9) if best else 0.0
    rows.append(_row("scenario", "many rooms: delivered events/s per server core at the best"
                     " rate >= 12,500", round(core), 12500.0, core >= 12500.0))  # fmt: skip
    single = get(p, "fanout_ws", "parley", "delivered_per_s")
    if single:
        r = ours / single
        rows.append(_row("scenario", "many rooms: best delivered events/s at p99 <= 100 ms >="
                         " 1/2 of the single-room fan-out rate", round(r, 3), 0.5,
                         r >= 0.5))  # fmt: skip
    return rows


def issue14(p: dict) -> list[dict]:
    """Goals of issue 14: parts 0 and 1 (scenario_goals), 2 and 4."""
    rows = scenario_goals(p)
    w = p.get("workers", {})
    one, two = get(w, "cpu", "w1"), get(w, "cpu", "w2-redis")
    if one and two:
        r = ratio(two["cpu_s_per_1000"], one["cpu_s_per_1000"])
        rows.append(_row("workers", "CPU per delivery, --workers 2 + Redis <= 1.3x one worker"
                         f" ({one['receivers']} receivers at {one['mode']})", r, 1.3,
                         r is not None and r <= 1.3))  # fmt: skip
        bad = sum(x["lost"] + x["duplicated"] + x["out_of_order"] for x in (one, two))
        rows.append(_row("workers", "zero lost / duplicated / out of order (workers runs)",
                         bad, 0, bad == 0))  # fmt: skip
    idle = p.get("idle", {})
    if idle.get("parley_over_bare_rss") is not None:
        top = get(idle, "runs", "parley", "connected")
        r = idle["parley_over_bare_rss"]
        rows.append(_row("idle", f"memory per idle WebSocket <= 1.1x the bare floor ({top} held)",
                         r, 1.1, r <= 1.1))  # fmt: skip
    return rows
