"""Webhook targets: non-public addresses refused unless allowed, checked again at delivery,
redirects not followed. Only loopback receivers are ever sent anything."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from fastapi.testclient import TestClient
from serve_helpers import bearer, free_port, make_setup

from prefloop.serve import webhooks
from prefloop.serve.app import create_app

API = "/api/v1"
REFUSED = [
    "http://127.0.0.1:9/hook",
    "http://localhost/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped IPv6
    "http://[::ffff:10.0.0.1]/hook",
    "http://[2002:7f00:1::1]/hook",  # 6to4 of 127.0.0.1
    "http://[64:ff9b::a9fe:a9fe]/hook",  # NAT64 of 169.254.169.254
    "http://10.1.2.3/hook",
    "http://172.16.5.4/hook",
    "http://192.168.1.1/hook",
    "http://100.64.0.1/hook",  # carrier-grade NAT
    "http://169.254.169.254/latest/meta-data",  # link-local (cloud metadata)
    "http://[fe80::1]/hook",
    "http://[fd00::1]/hook",  # unique local
    "http://0.0.0.0/hook",
    "http://224.0.0.1/hook",  # multicast
]


class Receiver:
    """A loopback HTTP server that records POSTs and answers with ``status`` (and Location)."""

    def __init__(self, status: int = 204, location: str | None = None) -> None:
        self.received: list[dict[str, str]] = []
        received, port = self.received, free_port()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers["content-length"]))
                received.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                if location:
                    self.send_header("location", location)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = HTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


@pytest.fixture
def resolver(monkeypatch) -> dict[str, list[str]]:
    """Host names answered with fixed addresses; every other name resolves as usual."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, port),
                )
                for a in answers[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
def inline_delivery(monkeypatch) -> None:
    """Deliver webhooks inside the request, so a test sees the outcome when it returns."""

    class Inline:
        def submit(self, fn, *args):
            fn(*args)

    monkeypatch.setattr(webhooks, "_pool", Inline())
    monkeypatch.setattr(webhooks.time, "sleep", lambda _s: None)  # no back-off pauses


def judge_one(client, s) -> None:
    view = client.post(s.url("/next"), headers=s.ann()).json()
    url = f"{API}/assignments/{view['assignment_id']}/submit"
    assert client.post(url, json={"choice": "left"}, headers=s.ann()).status_code == 200


ITEMS = [{"prompt": "q", "responses": ["a", "b"]}]


@pytest.mark.parametrize("url", REFUSED)
def test_non_public_targets_are_refused_at_configuration(client, server_token, url):
    body = {"name": "p", "task": "pairwise", "webhook_url": url}
    r = client.post(f"{API}/projects", json=body, headers=bearer(server_token))
    assert r.status_code == 422
    assert r.json()["detail"].startswith("webhook_url: webhook host ")
    assert "resolves to non-public address" in r.json()["detail"]
    s = make_setup(client, server_token, n_annotators=0)
    r = client.patch(s.url(""), json={"webhook_url": url}, headers=s.admin())
    assert r.status_code == 422 and "non-public address" in r.json()["detail"]


def test_every_resolved_address_is_checked(client, server_token, resolver):
    resolver["mixed.example"] = ["93.184.216.34", "2606:2800:220:1::1", "10.0.0.7"]
    resolver["public.example"] = ["93.184.216.34", "2606:2800:220:1::1"]
    s = make_setup(client, server_token, n_annotators=0)
    r = client.patch(s.url(""), json={"webhook_url": "https://mixed.example/h"}, headers=s.admin())
    assert (r.status_code, r.json()["detail"]) == (
        422,
        "webhook_url: webhook host 'mixed.example' resolves to non-public address 10.0.0.7 "
        "(loopback, private and link-local targets need the server's allow-private-webhooks "
        "option)",
    )
    # configuring sends nothing; no judgment is ever made in this project
    ok = client.patch(
        s.url(""), json={"webhook_url": "https://public.example/h"}, headers=s.admin()
    )
    assert ok.status_code == 200
    assert webhooks.is_public(webhooks.resolve_target("https://93.184.216.34/"))


def test_allowed_private_targets_get_the_webhook(engine, server_token, receivers, inline_delivery):
    receivers.append(receiver := Receiver())
    with TestClient(create_app(engine, allow_private_webhooks=True)) as client:
        s = make_setup(client, server_token, n_annotators=1, items=ITEMS, webhook_url=receiver.url)
        judge_one(client, s)
        (delivery,) = webhook_outcomes(client, s, delivered=1)
    assert len(receiver.received) == 1
    assert receiver.received[0]["host"] == receiver.url.split("/")[2]
    assert (delivery["ok"], delivery["attempts"], delivery["status"]) == (True, 1, 204)


def test_delivery_checks_the_target_again(
    engine, server_token, receivers, resolver, inline_delivery, caplog
):
    """A name that resolved to a public address when configured but to loopback at delivery
    (DNS rebinding) gets nothing; nor does a project configured while private was allowed."""
    receivers.append(receiver := Receiver())
    port = receiver.url.split(":")[2].split("/")[0]
    resolver["rebind.example"] = ["93.184.216.34"]
    with TestClient(create_app(engine)) as client:
        rebinding = make_setup(client, server_token, n_annotators=1, items=ITEMS,
                               webhook_url=f"http://rebind.example:{port}/hook")  # fmt: skip
        resolver["rebind.example"] = ["127.0.0.1"]
        with caplog.at_level(logging.ERROR, logger=webhooks.__name__):
            judge_one(client, rebinding)
    assert receiver.received == []
    assert "resolves to non-public address 127.0.0.1" in caplog.text
    with TestClient(create_app(engine, allow_private_webhooks=True)) as permissive:
        earlier = make_setup(permissive, server_token, n_annotators=1, items=ITEMS,
                             webhook_url=receiver.url)  # fmt: skip
    with TestClient(create_app(engine)) as strict:
        judge_one(strict, earlier)
    assert receiver.received == []


def test_redirects_are_not_followed(engine, server_token, receivers, inline_delivery):
    receivers.append(target := Receiver())
    receivers.append(redirecting := Receiver(status=307, location=target.url))
    with TestClient(create_app(engine, allow_private_webhooks=True)) as client:
        s = make_setup(client, server_token, n_annotators=1, items=ITEMS,
                       webhook_url=redirecting.url)  # fmt: skip
        judge_one(client, s)
        (delivery,) = webhook_outcomes(client, s, failed=1)
    assert len(redirecting.received) == 1  # answered with a redirect: not retried either
    assert target.received == []
    assert (delivery["ok"], delivery["attempts"], delivery["status"]) == (False, 1, 307)


def webhook_outcomes(client, s, delivered: int = 0, failed: int = 0) -> list[dict]:
    """The project's recorded deliveries, after checking how many succeeded and failed."""
    hook = client.get(s.url("/dashboard"), headers=s.admin()).json()["webhook"]
    assert (hook["delivered"], hook["failed"]) == (delivered, failed)
    return hook["recent"]


def test_a_refused_target_is_a_failed_delivery(engine, server_token, receivers, inline_delivery):
    receivers.append(receiver := Receiver())
    with TestClient(create_app(engine, allow_private_webhooks=True)) as permissive:
        s = make_setup(permissive, server_token, n_annotators=1, items=ITEMS,
                       webhook_url=receiver.url)  # fmt: skip
    with TestClient(create_app(engine)) as strict:
        judge_one(strict, s)
        (delivery,) = webhook_outcomes(strict, s, failed=1)
    assert receiver.received == []
    assert (delivery["ok"], delivery["attempts"], delivery["status"]) == (False, 1, None)
    assert "resolves to non-public address 127.0.0.1" in delivery["error"]
