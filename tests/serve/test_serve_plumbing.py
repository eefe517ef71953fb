"""Migrations, webhooks and server-side active selection."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from serve_helpers import free_port, make_setup

from prefloop.serve import webhooks
from prefloop.serve.app import create_app
from prefloop.serve.cli import open_db
from prefloop.serve.db import Base, normalize_url


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_build_exactly_the_model_schema(request, sqlite_url, backend):
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("postgres_url")
    engine = open_db(url)
    open_db(url).dispose()  # a second start finds nothing to do
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_database_urls():
    assert normalize_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(ValueError, match="unsupported database URL 'mysql'"):
        normalize_url("mysql://h/db")


def test_webhook_signature_roundtrip():
    secret = webhooks.new_secret()
    body = b'{"x": 1}'
    now = int(time.time())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now)}
    headers["webhook-signature"] = webhooks.sign(secret, "msg_1", now, body)
    assert webhooks.verify(secret, headers, body)
    assert not webhooks.verify(secret, headers, b'{"x": 2}')
    assert not webhooks.verify(webhooks.new_secret(), headers, body)
    stale = {**headers, "webhook-timestamp": str(now - 3600)}
    stale["webhook-signature"] = webhooks.sign(secret, "msg_1", now - 3600, body)
    assert not webhooks.verify(secret, stale, body)


def test_submissions_fire_signed_webhooks(engine, server_token):
    """To a receiver on this machine, so the server is told to allow private targets."""
    with TestClient(create_app(engine, allow_private_webhooks=True)) as client:
        fire_signed_webhooks(client, server_token)


def fire_signed_webhooks(client, server_token):
    received: list[tuple[dict, bytes]] = []
    arrived = threading.Semaphore(0)

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()
            arrived.release()

        def log_message(self, *_args):
            pass

    port = free_port()
    receiver = HTTPServer(("127.0.0.1", port), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        hook = f"http://127.0.0.1:{port}/hook"
        s = make_setup(
            client,
            server_token,
            n_annotators=1,
            items=[{"prompt": "q", "responses": ["a", "b"]}],
            webhook_url=hook,
        )
        view = client.post(s.url("/next"), headers=s.ann()).json()
        client.post(
            f"/api/v1/assignments/{view['assignment_id']}/submit",
            json={"choice": "tie"},
            headers=s.ann(),
        )
        assert arrived.acquire(timeout=10)
        judge = {"name": "j", "model": "m", "prompt_version": "v"}
        ai = {"item_id": view["item_id"], "judge": judge, "label": {"choice": "left"}}
        client.post(s.url("/ai-judgments"), json=ai, headers=s.admin())
        assert arrived.acquire(timeout=10)
    finally:
        receiver.shutdown()
    for headers, body in received:
        assert webhooks.verify(s.project["webhook_secret"], headers, body)
        assert headers["webhook-id"].startswith("msg_")
    events = [json.loads(body) for _, body in received]
    assert [e["type"] for e in events] == ["judgment.created"] * 2
    assert [e["data"]["judge_kind"] for e in events] == ["human", "ai"]
    assert events[0]["data"]["preference"] == 0.5


def test_disagreement_rule_serves_the_most_disputed_item_first(client, server_token):
    items = [
        {"prompt": "calm", "responses": ["a", "b"], "rewards": [[1, 0], [1, 0], [1, 0]]},
        {"prompt": "disputed", "responses": ["a", "b"], "rewards": [[5, 0], [0, 5], [1, 1]]},
        {"prompt": "mild", "responses": ["a", "b"], "rewards": [[1, 0], [0, 1], [0, 0]]},
    ]
    s = make_setup(client, server_token, n_annotators=1, items=items, rule="disagreement", warmup=0)
    order = []
    while (r := client.post(s.url("/next"), headers=s.ann())).status_code == 200:
        order.append(r.json()["prompt"])
        client.post(f"/api/v1/assignments/{r.json()['assignment_id']}/skip", headers=s.ann())
    assert order == ["disputed", "mild", "calm"]


def test_dueling_rule_picks_the_leader_and_an_optimistic_challenger(client, server_token):
    feats = [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]
    items = [
        {
            "prompt": f"q{i}",
            "responses": [{"text": f"r{j}", "features": feats[j]} for j in range(3)],
        }
        for i in range(4)
    ]
    s = make_setup(client, server_token, n_annotators=1, items=items, rule="dueling_ucb", warmup=2)
    shown = []
    while (r := client.post(s.url("/next"), headers=s.ann())).status_code == 200:
        view = r.json()
        texts = [x["text"] for x in view["responses"]]
        shown.append(sorted(texts))
        left_wins = "r0" in texts and texts[0] == "r0" or "r0" not in texts and texts[0] == "r1"
        label = {"choice": "left" if left_wins else "right"}  # r0 > r1 > r2
        client.post(
            f"/api/v1/assignments/{view['assignment_id']}/submit", json=label, headers=s.ann()
        )
    assert len(shown) == 4
    # after the warm-up the fitted utility ranks r0 first, so every later pair includes it
    assert all("r0" in pair for pair in shown[2:])


def test_init_prints_the_admin_token_only_once(live_server, sqlite_url):
    server = live_server(sqlite_url)
    assert server.token.startswith("pfs_")
    server.stop()
    again = subprocess.run(
        [sys.executable, "-m", "prefloop.serve", "--db", sqlite_url, "--init"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "pfs_" not in again.stdout + again.stderr
    assert "already initialised" in again.stderr
