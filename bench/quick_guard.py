#!/usr/bin/env python
"""Regression guard for CI: Parley's fan-out CPU per delivery against the bare floor.

    .venv/bin/python bench/quick_guard.py [--receivers 200] [--messages 200] [--max-ratio 3]

Starts the bare floor (bench/peers/bare_twisted.py) and a fresh Parley (SQLite, one user
signed in), fans ``messages`` messages out to ``receivers`` WebSocket receivers on each
(bare first, then Parley), and returns Parley's server CPU seconds per delivery divided by
the bare floor's. Runs in Parley's own venv (uvloop is used only if present) in about half
a minute. Exit status 1 when the ratio is above ``--max-ratio``, or when a message was
lost, duplicated or reordered.

From Python (e.g. a pytest test)::

    sys.path.insert(0, "bench"); from quick_guard import quick_guard
    result = quick_guard()
    assert result["ratio"] <= 3.0, result
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import log, pin_client, prepare_parley, raise_fd_limit, start_bare, start_parley
from loadclient import ReceiverPool
from wsload import fanout


def quick_guard(receivers: int = 200, messages: int = 200, procs: int = 1) -> dict:
    """Fan out on the bare floor, then on Parley; returns both and the CPU ratio."""
    raise_fd_limit()
    pin_client()
    with tempfile.TemporaryDirectory(prefix="parley-guard-") as tmp:
        workdir = Path(tmp)
        data = prepare_parley(workdir)
        runs = {}
        with ReceiverPool(procs, capacity=messages + 1024) as pool:
            for name in ("bare", "parley"):
                if name == "bare":
                    server = start_bare(workdir)
                    cookie = None
                else:
                    server = start_parley(workdir, data.fresh_db_url(), data.static_root)
                    cookie = data.cookie("bench-sender")
                with server:
                    runs[name] = fanout(
                        server,
                        pool,
                        receivers,
                        cookie=cookie,
                        window=20,
                        duration=60,
                        max_messages=messages,
                    )
        data.drop()
    bare, parley = runs["bare"], runs["parley"]
    per_delivery = {
        name: run["server_cpu_s"] / max(run["delivered"], 1) for name, run in runs.items()
    }
    ratio = per_delivery["parley"] / max(per_delivery["bare"], 1e-12)
    clean = all(
        run["lost"] == 0 and run["duplicated"] == 0 and run["out_of_order"] == 0
        for run in runs.values()
    )
    return {
        "receivers": receivers,
        "messages": messages,
        "parley_cpu_us_per_delivery": round(per_delivery["parley"] * 1e6, 3),
        "bare_cpu_us_per_delivery": round(per_delivery["bare"] * 1e6, 3),
        "ratio": round(ratio, 3),
        "clean": clean,
        "parley": {k: parley[k] for k in ("delivered", "lost", "duplicated", "out_of_order",
                                          "server_cpu_s", "delivered_per_s")},
        "bare": {k: bare[k] for k in ("delivered", "lost", "duplicated", "out_of_order",
                                      "server_cpu_s", "delivered_per_s")},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receivers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--procs", type=int, default=1, help="client worker processes [1]")
    parser.add_argument("--max-ratio", type=float, default=3.0)
    args = parser.parse_args(argv)
    result = quick_guard(args.receivers, args.messages, args.procs)
    log(
        f"CPU per delivery: Parley {result['parley_cpu_us_per_delivery']} us, bare floor"
        f" {result['bare_cpu_us_per_delivery']} us, ratio {result['ratio']}"
        f" (limit {args.max_ratio}); lost/dup/out-of-order clean: {result['clean']}"
    )
    print(json.dumps(result, indent=2))
    return 0 if result["ratio"] <= args.max_ratio and result["clean"] else 1


if __name__ == "__main__":
    sys.exit(main())
