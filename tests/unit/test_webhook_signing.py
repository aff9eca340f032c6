"""chat/webhooks/signing.py, policy.py and the sender's bounded answer (no sockets)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

from chat.webhooks import policy, sender, signing

EVENT = {"type": "message", "room": "lobby", "seq": 42, "user": "alice", "body": "héllo"}


def test_the_body_is_the_webhook_and_the_event_as_utf8_json():
    payload = signing.body(7, EVENT)
    assert json.loads(payload) == {"webhook": 7, "event": EVENT}
    assert "héllo".encode() in payload  # UTF-8, not \\u escapes


def test_the_signature_is_hmac_sha256_of_the_exact_body():
    payload = signing.body(7, EVENT)
    expected = hmac.new(b"k3y", payload, hashlib.sha256).hexdigest()
    assert signing.signature("k3y", payload) == f"sha256={expected}"
    assert signing.verify("k3y", payload, f"sha256={expected}")


@pytest.mark.parametrize(
    "secret, payload, header",
    [
        ("other", signing.body(7, EVENT), None),  # wrong secret (header set below)
        ("k3y", signing.body(7, {**EVENT, "body": "tampered"}), None),
        ("k3y", signing.body(7, EVENT), ""),
        ("k3y", signing.body(7, EVENT), "sha256="),
        ("k3y", signing.body(7, EVENT), "md5=abc"),
    ],
)
def test_a_wrong_signature_does_not_verify(secret, payload, header):
    good = signing.signature("k3y", signing.body(7, EVENT))
    assert not signing.verify(secret, payload, good if header is None else header)


def test_headers_name_the_event_and_the_delivery():
    payload = signing.body(7, EVENT)
    headers = signing.headers("k3y", EVENT, payload)
    assert headers["X-Parley-Event"] == "message"
    assert headers["X-Parley-Delivery"] == "lobby:42"
    assert headers["X-Parley-Signature"] == signing.signature("k3y", payload)
    assert headers["Content-Type"] == "application/json"


def test_backoff_doubles_from_one_second_to_at_most_ten_minutes():
    delays = [policy.retry_delay(n) for n in range(1, 15)]
    assert delays[:10] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert delays[10:] == [600] * 4
    assert policy.retry_delay(10**6) == 600
    assert policy.retry_delay(0) == 0


def test_disabled_after_exactly_24_hours_of_failing():
    now = datetime(2026, 12, 2, tzinfo=UTC)
    assert not policy.should_disable(None, now)
    assert not policy.should_disable(now - timedelta(hours=23, minutes=59), now)
    assert policy.should_disable(now - timedelta(hours=24), now)
    reason = policy.disabled_reason(now - timedelta(hours=24), "answered 500")
    assert "24 hours" in reason and "answered 500" in reason


def test_kinds_select_events_and_empty_means_all():
    assert policy.wants([], EVENT) and policy.wants(None, EVENT)
    assert policy.wants(["message"], EVENT)
    assert not policy.wants(["deleted", "edited"], EVENT)


def test_an_answer_past_the_bound_is_cut_and_its_connection_dropped():
    reader = sender._BoundedBody(10)
    transport = StringTransport()
    reader.makeConnection(transport)
    reader.dataReceived(b"12345")
    assert not reader.done.called
    reader.dataReceived(b"67890abcdef" * 1000)
    assert transport.producerState == "stopped"  # the rest is never read
    body, complete = reader.done.result
    assert body == b"1234567890" and not complete
    reader.dataReceived(b"more")  # after the cut: ignored
    reader.connectionLost(Failure(ResponseDone()))


@pytest.mark.parametrize(
    "reason, complete", [(ResponseDone(), True), (PotentialDataLoss(), True), (OSError(), False)]
)
def test_an_answer_within_the_bound_is_whole_unless_the_connection_failed(reason, complete):
    reader = sender._BoundedBody(100)
    reader.makeConnection(StringTransport())
    reader.dataReceived(b'{"body": "hi"}')
    reader.connectionLost(Failure(reason))
    assert reader.done.result == (b'{"body": "hi"}', complete)


@pytest.mark.parametrize(
    "outcome, reply",
    [
        (sender.Outcome(200, b'{"body": "hi"}', True), "hi"),
        (sender.Outcome(200, b'{"body": "hi"}', False), None),  # cut: not trusted
        (sender.Outcome(200, b'{"body": ""}', True), None),
        (sender.Outcome(200, b'{"body": 3}', True), None),
        (sender.Outcome(200, b"[1]", True), None),
        (sender.Outcome(200, b"not json", True), None),
        (sender.Outcome(204, b"", True), None),
    ],
)
def test_a_reply_is_a_json_object_with_a_text_body(outcome, reply):
    from chat.webhooks.deliverer import _reply_text

    assert _reply_text(outcome) == reply


def test_a_redirect_is_described_as_not_followed():
    assert "not followed" in sender.Outcome(302).describe()
    assert not sender.Outcome(302).ok and sender.Outcome(204).ok


def test_a_refused_url_is_an_outcome_not_an_exception():
    from twisted.internet.testing import MemoryReactorClock

    d = sender.post(MemoryReactorClock(), "ftp://example.com/", {}, b"{}")
    assert "refused" in d.result.error and not d.result.ok


def _stuck_dns(monkeypatch):
    from twisted.internet import defer

    monkeypatch.setattr(sender.threads, "deferToThread", lambda *a, **k: defer.Deferred())


def test_the_deadline_ends_a_delivery_as_a_failure(monkeypatch):
    from twisted.internet.testing import MemoryReactorClock

    _stuck_dns(monkeypatch)
    clock = MemoryReactorClock()
    d = sender.post(clock, "http://127.0.0.1:9/", {}, b"{}", timeout=3)
    clock.advance(2.9)
    assert not d.called
    clock.advance(0.2)
    assert d.result.error == "no complete answer within 3 s"


def test_the_callers_cancellation_is_not_a_failed_delivery(monkeypatch):
    from twisted.internet import defer
    from twisted.internet.testing import MemoryReactorClock

    _stuck_dns(monkeypatch)
    clock = MemoryReactorClock()
    d = sender.post(clock, "http://127.0.0.1:9/", {}, b"{}", timeout=3)
    d.cancel()
    failures = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(defer.CancelledError)
    assert not clock.getDelayedCalls()  # the deadline's timer is gone too
