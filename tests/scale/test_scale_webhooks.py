"""Webhooks across processes (PROTOCOL.md "Webhooks": exactly one process delivers a
given webhook at a time): ``serve.py --workers 2`` on PostgreSQL and Redis, two
webhooks, a real receiver that takes its time. No event of a webhook is ever in flight
twice at once, every event arrives in seq order, and none twice while no process dies;
after kill -9 of the holder, another process takes over once its lease expired, with at
most the one event in flight repeated."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import httpx
import pytest
from parley_testing import ServerProcess
from scale_support import wait_workers
from webhook_receiver import Answer, Receiver

pytestmark = pytest.mark.scale

SECRET = "scale-secret"
ENV = {
    "CHAT_WEBHOOK_ALLOW_PRIVATE": "1",
    "CHAT_WEBHOOK_TIMEOUT_SECONDS": "2",
    "CHAT_WEBHOOK_LEASE_SECONDS": "6",
}


class PerWebhook(Receiver):
    """Counts in-flight deliveries per webhook (two webhooks may overlap each other)."""

    def __init__(self, secret: str, delay: float) -> None:
        self.flight: dict[int, int] = {}
        self.max_flight: dict[int, int] = {}
        self.guard = threading.Lock()
        super().__init__(secret, self._behave)
        self.delay = delay

    def _behave(self, n, delivery) -> Answer:
        hook = delivery.data.get("webhook")
        with self.guard:
            self.flight[hook] = self.flight.get(hook, 0) + 1
            self.max_flight[hook] = max(self.max_flight.get(hook, 0), self.flight[hook])
        time.sleep(self.delay)
        with self.guard:
            self.flight[hook] -= 1
        return Answer()

    def seqs_of(self, hook: int) -> list[int]:
        with self.lock:
            return [d.seq for d in self.deliveries if d.data.get("webhook") == hook]


def shell(cluster, code: str) -> str:
    manager = ServerProcess(cluster.root / "manage", env=cluster.env(), database_url=None)
    return manager.manage("shell", "-c", code).strip().splitlines()[-1]


def owners(cluster) -> dict[int, str]:
    code = (
        "import json; from chat.models import Webhook;"
        "print(json.dumps({w.id: w.lease_owner for w in Webhook.objects.all()}))"
    )
    import json

    return {int(k): v for k, v in json.loads(shell(cluster, code)).items()}


def send_all(server, account, slug: str, first: int, count: int) -> None:
    with httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client:
        for n in range(first, first + count):
            for _attempt in range(5):
                # A worker killed mid-request: sent again, idempotent by its client_id.
                try:
                    response = client.post(
                        f"/api/rooms/{slug}/messages/",
                        json={"body": f"m {n}", "client_id": f"s-{n}"},
                        headers={
                            "Cookie": account.cookie_header,
                            "X-CSRFToken": account.csrftoken,
                        },
                    )
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            assert response.status_code in (200, 201), response.text


def wait_complete(receiver: PerWebhook, hook: int, last: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while set(receiver.seqs_of(hook)) < set(range(1, last + 1)):
        assert time.monotonic() < deadline, (hook, receiver.seqs_of(hook))
        time.sleep(0.1)


def test_exactly_one_deliverer_per_webhook_across_workers(cluster):
    accounts = cluster.provision(["alice"], rooms=["hooked"])
    (server,) = cluster.start(1, args=["--workers", "2"], env=ENV)
    workers = wait_workers(server, 2)
    with PerWebhook(SECRET, delay=0.05) as receiver:
        code = (
            "from chat.models import Webhook, Room; r = Room.objects.get(slug='hooked');"
            f"a = Webhook.objects.create(room=r, url={receiver.url!r}, secret={SECRET!r});"
            f"b = Webhook.objects.create(url={receiver.url!r}, secret={SECRET!r});"
            "print(a.id, b.id)"
        )
        hooks = [int(x) for x in shell(cluster, code).split()]
        time.sleep(2.5)  # claimed at the workers' next lease round
        send_all(server, accounts["alice"], "hooked", 0, 40)
        for hook in hooks:
            wait_complete(receiver, hook, 40, 60)
            seqs = receiver.seqs_of(hook)
            assert seqs == list(range(1, 41)), seqs  # in order, none twice
            assert receiver.max_flight[hook] == 1, receiver.max_flight
        held = owners(cluster)
        pids = {hook: int(re.match(r".+:(\d+):", owner).group(1)) for hook, owner in held.items()}
        assert set(pids.values()) <= set(workers), (pids, workers)

        # kill -9 the holder of the first webhook, mid-stream.
        victim = pids[hooks[0]]
        sender = threading.Thread(
            target=send_all, args=(server, accounts["alice"], "hooked", 40, 30)
        )
        sender.start()
        while len(receiver.seqs_of(hooks[0])) < 45:
            time.sleep(0.02)
        os.kill(victim, signal.SIGKILL)
        sender.join(60)
        for hook in hooks:
            wait_complete(receiver, hook, 70, 60)
            seqs = receiver.seqs_of(hook)
            assert seqs == sorted(seqs), seqs
            assert len(seqs) - 70 <= 1, seqs  # only the event in flight may repeat
            assert receiver.max_flight[hook] == 1, receiver.max_flight
        assert all(d.signed for d in receiver.deliveries)
        after = owners(cluster)
        new_pid = int(re.match(r".+:(\d+):", after[hooks[0]]).group(1))
        assert new_pid != victim
