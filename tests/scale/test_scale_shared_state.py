"""State that must span processes besides the log: presence and the per-user rate limit."""

from __future__ import annotations

import asyncio
import time

import pytest
from live_clients import WSClient, run
from scale_support import SLUG, receiver

pytestmark = pytest.mark.scale


def presence(users_in: set[str] = frozenset(), users_out: set[str] = frozenset()):
    def match(frame) -> bool:
        if not (isinstance(frame, dict) and frame.get("type") == "presence"):
            return False
        users = set(frame.get("users", []))
        return users_in <= users and not (users_out & users)

    return match


def test_presence_changes_reach_the_other_process(cluster):
    """bob on B sees alice join on A (a presence with both within 3 s) and leave (a
    presence without her within 3 s)."""
    a, b = cluster.start(2)
    accounts = cluster.provision(["alice", "bob"], [SLUG])

    async def main():
        bob = await receiver(b, accounts["bob"])
        alice = await receiver(a, accounts["alice"])
        await bob.wait_for(presence({"alice", "bob"}), 3, what="presence with alice (on A)")
        mark = len(bob.frames)
        await alice.close()
        await bob.wait_for(
            presence({"bob"}, {"alice"}), 3, start=mark, what="presence without alice"
        )
        await bob.settle(quiet=0.5)
        last = [f for f in bob.events() if f.get("type") == "presence"][-1]
        assert "alice" not in last["users"], f"alice is back in bob's presence: {last}"
        await bob.close()

    run(main(), timeout=60)


def test_joining_user_is_told_who_is_on_the_other_process(cluster):
    """alice is on A; bob joins on B: the presence bob gets after his hello (within 3 s)
    lists alice as well as himself."""
    a, b = cluster.start(2)
    accounts = cluster.provision(["alice", "bob"], [SLUG])

    async def main():
        alice = await receiver(a, accounts["alice"])
        await asyncio.sleep(0.5)  # alice's presence has reached Redis
        bob = await receiver(b, accounts["bob"])
        await bob.wait_for(
            presence({"alice", "bob"}), 3, what="presence listing alice (on A) after hello"
        )
        await asyncio.gather(alice.close(), bob.close())

    run(main(), timeout=60)


def test_rate_limit_spans_processes(cluster):
    """CHAT_RATE_LIMIT=5/60s: one user sending 3 on A then 3 on B (each after the previous
    reply) gets 5 acks and one `rate_limited`, and 5 messages are stored."""
    a, b = cluster.start(2, env={"CHAT_RATE_LIMIT": "5/60s"})
    accounts = cluster.provision(["carol"], [SLUG])
    into_window = time.time() % 60
    if into_window > 52:  # a limit counted in fixed minutes must not restart mid-test
        time.sleep(60.5 - into_window)

    async def main():
        replies = []
        for server, numbers in ((a, range(3)), (b, range(3, 6))):
            async with await WSClient.connect(server, SLUG, accounts["carol"]) as ws:
                for i in numbers:
                    await ws.send(f"carol says {i}", f"carol-{i}")
                    replies.append(await ws.wait_reply(f"carol-{i}", timeout=10))
        kinds = [r["type"] if r["type"] == "ack" else r.get("code") for r in replies]
        assert kinds == ["ack"] * 5 + ["rate_limited"], f"3 sends on A then 3 on B: {replies}"
        assert [row[0] for row in cluster.log(SLUG)] == [1, 2, 3, 4, 5]

    run(main(), timeout=60)
