"""The delay from ``chat.parley.send`` in another process (tests/parley_sender.py) to live
WebSocket clients: shared by tests/integration/test_parley_api_live.py,
tests/scale/test_scale_parley_api.py and bench/parley_delay.py.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from live_clients import DURABLE_TYPES, WSClient

SENDER = Path(__file__).resolve().parent / "parley_sender.py"
REPO = SENDER.parent.parent


class TimedWSClient(WSClient):
    """A room WebSocket that notes when each durable event first arrived (time.time())."""

    def __init__(self, conn) -> None:
        self.arrived: dict[int, float] = {}
        super().__init__(conn)

    def _record(self, frame: Any) -> None:
        if isinstance(frame, dict) and frame.get("type") in DURABLE_TYPES:
            self.arrived.setdefault(frame.get("seq"), time.time())
        super()._record(frame)


async def send_from_another_process(
    env: dict[str, str], room: str, user: str, count: int, gap: float, timeout: float = 120
) -> list[dict]:
    """Run the sender with ``env``; its sends ``[{"seq", "called", "returned"}]``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SENDER),
        room,
        user,
        str(count),
        str(gap),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, f"sender exited {proc.returncode}: {err.decode()[-3000:]}"
    lines = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    return [line for line in lines if "seq" in line]


async def delays_to(clients: list[TimedWSClient], sends: list[dict], within: float = 5.0):
    """Seconds from each send's call to its arrival at each client."""
    delays = []
    for client in clients:
        for send in sends:
            await client.wait_seq(send["seq"], timeout=within)
            arrived = client.arrived[send["seq"]]
            send.setdefault("after_return", []).append(arrived - send["returned"])
            delays.append(arrived - send["called"])
    return delays


def summary(delays: list[float], sends: list[dict]) -> dict:
    calls = [s["returned"] - s["called"] for s in sends]
    after = [d for s in sends for d in s.get("after_return", ())]
    ordered = sorted(delays)
    return {
        "deliveries": len(delays),
        "median_ms": round(statistics.median(delays) * 1000, 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 1),
        "max_ms": round(max(delays) * 1000, 1),
        "call_median_ms": round(statistics.median(calls) * 1000, 1),
        # From the call's return (the commit, and the publish when there is Redis).
        "after_return_median_ms": round(statistics.median(after) * 1000, 1) if after else None,
    }
