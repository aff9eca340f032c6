"""Webhooks against a real serve.py and a real HTTP receiver (PROTOCOL.md "Webhooks"):
every event arrives at least once, in seq order, signed, through a receiver that fails,
times out, answers 100 MB and recovers; the position survives a restart and kill -9; a
reply bot's answer reaches a WebSocket client; redirects and private targets are refused;
24 h of failing disables the webhook and the admin says why."""

from __future__ import annotations

import json
import re
import secrets
import signal
import threading
import time

import httpx
import pytest
from live_clients import WSClient, provision, run, wait_healthy
from parley_testing import ServerProcess
from webhook_receiver import Answer, Receiver

PASSWORD = "pw-hooks-8812"
TAG = secrets.token_hex(3)
SECRET = "s3cret-" + TAG
ENV = {
    "CHAT_WEBHOOK_ALLOW_PRIVATE": "1",
    "CHAT_WEBHOOK_TIMEOUT_SECONDS": "2",
    "CHAT_WEBHOOK_LEASE_SECONDS": "6",
    "CHAT_RATE_LIMIT": "0",
}


def room(kind: str) -> str:
    return f"wh-{kind}-{TAG}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    made = ServerProcess(tmp_path_factory.mktemp("webhooks"), env=ENV).start()
    yield made
    made.kill()


@pytest.fixture(scope="module")
def accounts(server):
    rooms = ["flaky", "reply", "redirect", "dying"]
    return provision(
        server,
        users=[("alice", PASSWORD), ("bot", PASSWORD), ("staff", PASSWORD, True)],
        rooms=[room(kind) for kind in rooms],
    )


def shell(server: ServerProcess, code: str) -> str:
    out = server.shell(code)
    return out.strip().splitlines()[-1] if out.strip() else ""


def make_webhook(server, url: str, slug: str | None, bot: str | None = None, extra="") -> int:
    code = (
        "from chat.models import Webhook, Room; from django.contrib.auth.models import User;"
        f"w = Webhook.objects.create(url={url!r}, secret={SECRET!r},"
        f" room=Room.objects.filter(slug={slug!r}).first(),"
        f" bot_user=User.objects.filter(username={bot!r}).first() {extra});"
        "print(w.id)"
    )
    return int(shell(server, code))


def webhook_row(server, webhook_id: int) -> dict:
    code = (
        "import json; from chat.models import Webhook;"
        f"w = Webhook.objects.get(id={webhook_id});"
        "print(json.dumps(dict(active=w.is_active, failing=str(w.failing_since),"
        " error=w.last_error, reason=w.disabled_reason, owner=w.lease_owner,"
        " positions={p.room.slug: p.seq for p in w.positions.all()})))"
    )
    return json.loads(shell(server, code))


def send(server, account, slug: str, body: str, client_id: str) -> int:
    response = httpx.post(
        f"{server.url}/api/rooms/{slug}/messages/",
        json={"body": body, "client_id": client_id},
        headers={"Cookie": account.cookie_header, "X-CSRFToken": account.csrftoken},
        timeout=10,
        trust_env=False,
    )
    assert response.status_code in (200, 201), response.text
    return response.json()["seq"]


def assert_in_order_and_complete(receiver: Receiver, slug: str, last: int, repeats: int) -> None:
    seqs = receiver.seqs(slug)
    assert seqs == sorted(seqs), f"out of order: {seqs}"
    assert set(seqs) == set(range(1, last + 1)), seqs
    assert len(seqs) - last <= repeats, f"too many repeats: {seqs}"
    for delivery in receiver.deliveries:
        assert delivery.signed, delivery.headers
        event = delivery.event
        assert delivery.headers["x-parley-delivery"] == f"{event['room']}:{event['seq']}"
        assert delivery.headers["x-parley-event"] == event["type"]
        assert delivery.headers["content-type"] == "application/json"
        assert isinstance(delivery.data["webhook"], int)


def test_every_event_arrives_through_failures_timeouts_and_huge_answers(server, accounts):
    slug = room("flaky")
    script = {0: Answer(status=500), 1: Answer(hang=5), 2: Answer(huge=100 * 1024 * 1024)}
    with Receiver(SECRET, lambda n, d: script.get(n, Answer())) as receiver:
        webhook = make_webhook(server, receiver.url, slug)
        for n in range(8):
            send(server, accounts["alice"], slug, f"flaky {n}", f"f-{n}")
        receiver.wait_for(lambda: set(receiver.seqs(slug)) >= set(range(1, 9)), 40, "all 8")
        time.sleep(0.5)
        d = receiver.deliveries
        # 500, then no answer within the 2 s deadline, then a 100 MB 2xx: one event.
        assert [x.seq for x in d[:4]] == [1, 1, 1, 2]
        assert d[1].started - d[0].started >= 0.9  # 1 s after the first failure
        assert d[2].started - d[1].started >= 2 + 1.8  # the deadline, then 2 s
        assert d[2].cut and d[2].streamed < 20 * 1024 * 1024, d[2].streamed
        assert_in_order_and_complete(receiver, slug, 8, repeats=2)
        row = webhook_row(server, webhook)
        assert row["positions"] == {slug: 8}
        assert row["failing"] == "None" and row["active"]
        assert "within 2 s" in row["error"]


def test_reply_bot_posts_into_the_room_and_reaches_websocket_clients(server, accounts):
    slug = room("reply")

    def echo(n, delivery):
        return Answer(body=json.dumps({"body": "echo: " + delivery.event["body"]}).encode())

    with Receiver(SECRET, echo) as receiver:
        webhook = make_webhook(server, receiver.url, slug, bot="bot")
        time.sleep(2.5)  # the next claim picks the webhook up

        async def scenario():
            async with await WSClient.connect(server, slug, accounts["alice"]) as ws:
                send(server, accounts["alice"], slug, "ping", "r-1")
                reply = await ws.wait_for(
                    lambda f: f.get("type") == "message" and f.get("user") == "bot", 15, what="bot"
                )
                return reply

        reply = run(scenario())
        assert reply["body"] == "echo: ping"
        assert reply["client_id"] == f"webhook-{webhook}-1"
        deadline = time.monotonic() + 10
        while webhook_row(server, webhook)["positions"].get(slug) != 2:
            assert time.monotonic() < deadline, "the bot's own message not passed over"
            time.sleep(0.3)
        # The bot's own message is passed over: no reply to a reply.
        assert receiver.seqs(slug) == [1]


def test_a_redirect_is_not_followed(server, accounts):
    slug = room("redirect")
    with Receiver(SECRET) as elsewhere:
        redirect = {0: Answer(status=302, location=elsewhere.url)}
        with Receiver(SECRET, lambda n, d: redirect.get(n, Answer())) as receiver:
            make_webhook(server, receiver.url, slug)
            time.sleep(2.5)
            send(server, accounts["alice"], slug, "bounce", "b-1")
            receiver.wait_for(lambda: len(receiver.seqs(slug)) >= 2, 20, "a retry after the 302")
            assert receiver.seqs(slug) == [1, 1]
            assert elsewhere.deliveries == []


def test_a_url_fixed_in_the_admin_is_used_at_the_next_retry(server, accounts):
    slug = room("moved")
    provision(server, rooms=[slug], sessions=False)
    with Receiver(SECRET) as fixed, Receiver(SECRET, lambda n, d: Answer(status=404)) as broken:
        webhook = make_webhook(server, broken.url, slug)
        time.sleep(2.5)
        send(server, accounts["alice"], slug, "where to?", "m-1")
        broken.wait_for(lambda: len(broken.deliveries) >= 1, 15, "a first, failed try")
        shell(
            server,
            f"from chat.models import Webhook; w = Webhook.objects.get(id={webhook});"
            f"w.url = {fixed.url!r}; w.save()",
        )
        fixed.wait_for(lambda: fixed.seqs(slug) == [1], 20, "the retry at the fixed URL")
        assert set(broken.seqs(slug)) == {1}


def test_failing_for_24_hours_disables_and_the_admin_shows_why(server, accounts):
    slug = room("dying")
    extra = ", failing_since=__import__('django.utils.timezone').utils.timezone.now()"
    extra += " - __import__('datetime').timedelta(hours=24, seconds=-3)"
    with Receiver(SECRET, lambda n, d: Answer(status=503)) as receiver:
        webhook = make_webhook(server, receiver.url, slug, extra=extra)
        send(server, accounts["alice"], slug, "anyone?", "d-1")
        deadline = time.monotonic() + 30
        while webhook_row(server, webhook)["active"]:
            assert time.monotonic() < deadline, "never disabled"
            time.sleep(0.5)
        row = webhook_row(server, webhook)
        assert "24 hours" in row["reason"] and "answered 503" in row["reason"]
        count = len(receiver.deliveries)
        time.sleep(3)
        assert len(receiver.deliveries) == count  # no more attempts once disabled
    client = httpx.Client(base_url=server.url, trust_env=False, timeout=10)
    client.cookies.set("sessionid", accounts["staff"].sessionid)
    client.cookies.set("csrftoken", accounts["staff"].csrftoken)
    page = client.get("/admin/chat/webhook/")
    assert page.status_code == 200
    assert "24 hours" in page.text
    done = client.post(
        "/admin/chat/webhook/",
        data={
            "action": "reenable",
            "_selected_action": str(webhook),
            "csrfmiddlewaretoken": accounts["staff"].csrftoken,
        },
    )
    assert done.status_code == 302, done.text[:500]
    # Active again with its 24 h counted anew (it may already be failing again: its
    # receiver is gone, but it is not disabled again at once).
    time.sleep(1)
    row = webhook_row(server, webhook)
    assert row["active"] and row["reason"] == "", row


def test_private_targets_are_refused_unless_allowed(tmp_path, accounts):
    strict = ServerProcess(
        tmp_path / "strict", env={**ENV, "CHAT_WEBHOOK_ALLOW_PRIVATE": "0"}
    ).start()
    try:
        provision(strict, users=[("alice", PASSWORD)], rooms=["private-target"])
        alice = provision(strict, users=[("alice", PASSWORD)])["alice"]
        with Receiver(SECRET) as receiver:
            webhook = make_webhook(strict, receiver.url, "private-target")
            time.sleep(2.5)
            send(strict, alice, "private-target", "secret stuff", "p-1")
            deadline = time.monotonic() + 15
            while "loopback" not in webhook_row(strict, webhook)["error"]:
                assert time.monotonic() < deadline, webhook_row(strict, webhook)
                time.sleep(0.5)
            assert receiver.deliveries == []
            assert "CHAT_WEBHOOK_ALLOW_PRIVATE" in webhook_row(strict, webhook)["error"]
    finally:
        strict.kill()


def test_the_position_survives_a_restart_and_kill_9(tmp_path):
    server = ServerProcess(tmp_path / "restarts", env=ENV).start()
    try:
        alice = provision(server, users=[("alice", PASSWORD)], rooms=["durable"])["alice"]
        slow = Answer(delay=0.15)
        # Seq 17 is held until the process that sent it is killed, so the kill always
        # lands with events still to deliver (else a fast run had sent all 24 before it).
        killed = threading.Event()

        def behave(n, delivery):
            if delivery.seq == 17 and not killed.is_set():
                killed.wait(30)
            return slow

        with Receiver(SECRET, behave) as receiver:
            webhook = make_webhook(server, receiver.url, "durable")
            time.sleep(2.5)
            for n in range(12):
                send(server, alice, "durable", f"m {n}", f"d-{n}")
            receiver.wait_for(lambda: len(receiver.seqs()) >= 4, 20, "4 delivered")
            assert server.stop(signal.SIGTERM) == 0
            stopped_at = len(receiver.seqs())
            server.restart()
            wait_healthy(server)
            alice = provision(server, users=[("alice", PASSWORD)])["alice"]
            for n in range(12, 24):
                send(server, alice, "durable", f"m {n}", f"d-{n}")
            receiver.wait_for(lambda: 17 in receiver.seqs(), 30, "17 in flight")
            assert receiver.seqs()[stopped_at] in (stopped_at, stopped_at + 1)
            server.kill()  # SIGKILL: the lease is not given back
            killed_at = time.monotonic()
            killed.set()
            server.restart()
            receiver.wait_for(lambda: set(receiver.seqs()) >= set(range(1, 25)), 40, "all 24")
            # The new process waited for the killed one's lease to expire.
            resumed = [d.started for d in receiver.deliveries if d.started > killed_at]
            assert resumed and resumed[0] - killed_at >= 3, resumed[:1]
            assert_in_order_and_complete(receiver, "durable", 24, repeats=2)
            assert webhook_row(server, webhook)["positions"] == {"durable": 24}
    finally:
        server.kill()


def test_lease_owner_names_the_process(server, accounts):
    with Receiver(SECRET) as receiver:
        webhook = make_webhook(server, receiver.url, room("flaky"))
        deadline = time.monotonic() + 10
        while not webhook_row(server, webhook)["owner"]:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        owner = webhook_row(server, webhook)["owner"]
        assert re.fullmatch(rf".+:{server.proc.pid}:[0-9a-f]{{8}}", owner), owner
