"""Outgoing webhooks, signed the Standard Webhooks way (id, timestamp, HMAC-SHA256).

Headers: ``webhook-id`` (unique message id), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``. A receiver
recomputes the signature and rejects stale timestamps to stop replays. Delivery runs on a
background thread after the judgment is committed and never delays or fails the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger(__name__)
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="prefloop-webhook")


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = secret.removeprefix("whsec_").encode()
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300) -> bool:
    """Check a delivery's signature and freshness (for receivers and tests)."""
    timestamp = int(headers["webhook-timestamp"])
    if abs(time.time() - timestamp) > tolerance_s:
        return False
    expected = sign(secret, headers["webhook-id"], timestamp, body)
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())


@dataclass(frozen=True)
class Delivery:
    """How one message fared: its id, tries made, the last HTTP status or transport error."""

    message_id: str
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None


def _deliver(url: str, secret: str, event: str, data: dict[str, Any], attempts: int) -> Delivery:
    message_id = f"msg_{uuid.uuid4().hex}"
    status, error = None, None
    body = json.dumps({"type": event, "data": data}, default=str).encode()
    for attempt in range(attempts):
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body),
        }
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=10)
            status, error = response.status_code, None
            if response.is_success:
                return Delivery(message_id, True, attempt + 1, status)
        except httpx.HTTPError as err:
            status, error = None, str(err) or type(err).__name__
            log.warning("webhook %s to %s failed: %s", message_id, url, err)
        if attempt + 1 < attempts:
            time.sleep(min(2**attempt, 30))
    log.error("webhook %s to %s gave up after %d attempts", message_id, url, attempts)
    return Delivery(message_id, False, attempts, status, error)


def send(
    url: str,
    secret: str,
    event: str,
    data: dict[str, Any],
    attempts: int = 3,
    on_done: Callable[[Delivery], None] | None = None,
) -> None:
    """Queue one signed delivery (retried with back-off, same message id every try);
    ``on_done`` is called with its outcome on the delivery thread."""
    future = _pool.submit(_deliver, url, secret, event, data, attempts)
    if on_done is not None:
        future.add_done_callback(lambda done: on_done(done.result()))
