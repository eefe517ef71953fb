"""Outgoing webhooks, signed the Standard Webhooks way (id, timestamp, HMAC-SHA256).

Headers: ``webhook-id`` (unique message id), ``webhook-timestamp`` (Unix seconds) and
``webhook-signature: v1,<base64 HMAC-SHA256(secret, "{id}.{timestamp}.{body}")>``. A receiver
recomputes the signature and rejects stale timestamps to stop replays. Delivery runs on a
background thread after the judgment is committed and never delays or fails the request.

Targets must be public addresses: a URL whose host resolves to any loopback, private,
link-local or otherwise non-global address (IPv4, IPv6, or IPv4 inside IPv6) is refused when
it is configured and again at every delivery, unless the server allows private targets.
Delivery connects to the address it checked (so a DNS answer that changes in between cannot
redirect it) and does not follow redirects. Every delivery ends in a :class:`Delivery`, handed
to ``send``'s ``on_done`` (a refused target is a failed delivery whose error says why).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
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
    """How one message fared: its id, tries made, the last HTTP status or the error (a
    transport error, or why the target was refused)."""

    message_id: str
    ok: bool
    attempts: int
    status: int | None = None
    error: str | None = None


class WebhookTargetError(ValueError):
    """A webhook URL the server refuses to post to."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _embedded_ipv4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64) and so reaches."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    found = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return [v4 for v4 in found if v4 is not None]


def is_public(ip: IPAddress) -> bool:
    """Globally routable unicast, and so is every IPv4 address inside it."""
    return all(a.is_global and not a.is_multicast for a in (ip, *_embedded_ipv4(ip)))


def resolve_target(url: str, allow_private: bool = False) -> IPAddress:
    """The address to post ``url``'s requests to; every address its host resolves to must be
    public unless ``allow_private``. Raises :class:`WebhookTargetError` saying why not."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise WebhookTargetError(f"webhook URL must be http(s) with a host, got {url!r}")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(parsed.host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        raise WebhookTargetError(f"webhook host {parsed.host!r} does not resolve: {err}") from None
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    refused = [str(a) for a in addresses if not is_public(a)]
    if refused and not allow_private:
        raise WebhookTargetError(
            f"webhook host {parsed.host!r} resolves to non-public address {refused[0]} "
            "(loopback, private and link-local targets need the server's "
            "allow-private-webhooks option)"
        )
    return addresses[0]


def _post_pinned(url: str, address: IPAddress, body: bytes, headers: dict) -> httpx.Response:
    """POST to ``address`` itself, with the URL's host in ``Host`` and in TLS (SNI and the
    certificate check); redirects are answers, never followed."""
    parsed = httpx.URL(url)
    with httpx.Client(follow_redirects=False, timeout=10) as http:
        return http.post(
            parsed.copy_with(host=str(address)),
            content=body,
            headers={**headers, "host": parsed.netloc.decode("ascii")},
            extensions={"sni_hostname": parsed.host} if parsed.scheme == "https" else {},
        )


def _deliver(
    url: str, secret: str, event: str, data: dict[str, Any], attempts: int, allow_private: bool
) -> Delivery:
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
            response = _post_pinned(url, resolve_target(url, allow_private), body, headers)
            status, error = response.status_code, None
            if response.is_success:
                return Delivery(message_id, True, attempt + 1, status)
            log.warning("webhook %s to %s answered %d", message_id, url, status)
            if status < 500 and status not in (408, 429):
                # a redirect or a refusal: trying again would get the same answer
                return Delivery(message_id, False, attempt + 1, status)
        except WebhookTargetError as err:
            log.error("webhook %s not sent: %s", message_id, err)
            return Delivery(message_id, False, attempt + 1, None, str(err))
        except httpx.HTTPError as err:
            status, error = None, str(err) or type(err).__name__
            log.warning("webhook %s to %s failed: %s", message_id, url, err)
        if attempt + 1 < attempts:
            time.sleep(min(2**attempt, 30))
    log.error("webhook %s to %s gave up after %d attempts", message_id, url, attempts)
    return Delivery(message_id, False, attempts, status, error)


def _deliver_and_report(on_done: Callable[[Delivery], None] | None, *args: Any) -> None:
    delivery = _deliver(*args)
    if on_done is not None:
        try:
            on_done(delivery)
        except Exception:  # noqa: BLE001 - on the delivery thread: nobody else would see it
            log.exception("webhook %s: reporting its outcome failed", delivery.message_id)


def send(
    url: str,
    secret: str,
    event: str,
    data: dict[str, Any],
    attempts: int = 3,
    allow_private: bool = False,
    on_done: Callable[[Delivery], None] | None = None,
) -> None:
    """Queue one signed delivery (retried with back-off, same message id every try); the
    target is checked again before every try (see :func:`resolve_target`). ``on_done`` is
    called with its outcome, a refused target included, on the delivery thread."""
    _pool.submit(_deliver_and_report, on_done, url, secret, event, data, attempts, allow_private)
