"""What a delivery carries: the JSON body, its headers, its signature.

The signature is HMAC-SHA256 of the exact body bytes with the webhook's secret, as
``sha256=<hex>`` (PROTOCOL.md "Webhooks"). A receiver checks it with ``verify`` (or the
same three lines in any language) before trusting the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json

SIGNATURE_PREFIX = "sha256="


def body(webhook_id: int, event: dict) -> bytes:
    """``{"webhook": id, "event": {...}}`` as compact UTF-8 JSON: the bytes that are signed."""
    return json.dumps(
        {"webhook": webhook_id, "event": event}, separators=(",", ":"), ensure_ascii=False
    ).encode()


def signature(secret: str, payload: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of payload with secret>``."""
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify(secret: str, payload: bytes, header: str | None) -> bool:
    """Whether ``header`` (X-Parley-Signature) signs ``payload``: compared in constant time."""
    if not header:
        return False
    return hmac.compare_digest(signature(secret, payload), header.strip())


def delivery_id(event: dict) -> str:
    """``<room>:<seq>``: the same for every attempt of one event, so a receiver can drop
    the repeats that at-least-once delivery allows."""
    return f"{event['room']}:{event['seq']}"


def headers(secret: str, event: dict, payload: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "Parley-Webhook/2",
        "X-Parley-Event": str(event["type"]),
        "X-Parley-Delivery": delivery_id(event),
        "X-Parley-Signature": signature(secret, payload),
    }
