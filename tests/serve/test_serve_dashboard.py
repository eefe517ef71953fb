"""The dashboard endpoint's numbers against a hand computation on a fixed set of judgments."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from dashboard_data import ALPHA, DISPUTED, KAPPA, judge_fixed_set
from serve_helpers import bearer, free_port, make_setup

from prefloop.serve.deliveries import recorder
from prefloop.serve.webhooks import Delivery


class Accept(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture
def webhook_receiver():
    """A local endpoint that accepts every delivery."""
    port = free_port()
    receiver = HTTPServer(("127.0.0.1", port), Accept)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}/hook"
    receiver.shutdown()


def wait_for_deliveries(client, s, n: int) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        board = client.get(s.url("/dashboard"), headers=s.admin()).json()
        if board["webhook"]["delivered"] + board["webhook"]["failed"] >= n:
            return board
        time.sleep(0.05)
    raise TimeoutError(f"fewer than {n} webhook deliveries recorded")


def test_dashboard_numbers_match_a_hand_computation(client, server_token, webhook_receiver):
    s, sides = judge_fixed_set(client, server_token, webhook_url=webhook_receiver)
    board = wait_for_deliveries(client, s, 14)  # 13 human judgments and one AI judgment

    assert board["project"] == {
        "id": s.project["id"],
        "name": "p",
        "task": "pairwise",
        "redundancy": 3,
    }
    assert board["progress"] == {
        "items": 5,
        "items_complete": 4,
        "judgments": 13,
        "target": 15,
        "to_go": 2,
        "ai_judgments": 1,
    }
    counts = {
        a["annotator_id"]: (a["judgments"], a["skipped"], a["open"]) for a in board["annotators"]
    }
    ids = [a["id"] for a in s.annotators]
    assert counts == {ids[0]: (5, 0, 0), ids[1]: (4, 1, 0), ids[2]: (4, 1, 0)}
    assert board["annotators"][0]["annotator_id"] == ids[0]  # most judgments first

    agreement = board["agreement"]
    assert agreement == client.get(s.url("/agreement"), headers=s.admin()).json()
    assert agreement["krippendorff_alpha"] == pytest.approx(ALPHA)
    assert agreement["fleiss_kappa"] == pytest.approx(KAPPA)
    assert agreement["units"] == 4

    labels = {b["label"]: b["value"] for b in board["labels"]}
    assert labels == {"first response": 7, "second response": 5, "tie": 1, "both bad": 0}
    bias = board["position_bias"]
    assert bias["measure"] == "picked" and bias["expected_share"] == 0.5
    assert {b["label"]: b["value"] for b in bias["bars"]} == {
        "left": sides["left"],
        "right": sides["right"],
    }
    assert sides["left"] + sides["right"] == 12  # every decided human answer, the tie left out

    disputed = [(d["item_id"], d["disagreement"]) for d in board["most_disputed"]]
    assert disputed == [(s.item_ids[p], pytest.approx(v)) for p, v in DISPUTED]
    p3 = board["most_disputed"][0]
    assert (p3["external_id"], p3["prompt"], p3["judgments"]) == ("ext-p3", "p3", 3)
    assert {b["label"]: b["value"] for b in p3["answers"]} == {
        "first response": 1,
        "second response": 1,
        "tie": 1,
    }

    human = [
        j
        for j in client.get(s.url("/judgments"), headers=s.admin()).json()
        if j["judge_kind"] == "human"
    ]
    hours = Counter(
        datetime.fromisoformat(j["created_at"]).replace(minute=0, second=0, microsecond=0)
        for j in human
    )
    shown = {datetime.fromisoformat(h["hour"]): h["judgments"] for h in board["per_hour"]}
    assert {h: n for h, n in shown.items() if n} == hours
    assert sum(shown.values()) == 13

    hook = board["webhook"]
    assert (hook["url"], hook["delivered"], hook["failed"]) == (webhook_receiver, 14, 0)
    assert len(hook["recent"]) == 10 and all(d["ok"] and d["status"] == 204 for d in hook["recent"])


def test_dashboard_reports_failed_webhook_deliveries(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=0)
    recorder(engine, s.project["id"], 7)(Delivery("msg_x", False, 3, None, "connection refused"))
    recorder(engine, s.project["id"], 8)(Delivery("msg_y", True, 2, 200))
    hook = client.get(s.url("/dashboard"), headers=s.admin()).json()["webhook"]
    assert (hook["delivered"], hook["failed"]) == (1, 1)
    latest, first = hook["recent"]
    assert (latest["target"], latest["ok"], latest["attempts"], latest["status"]) == (
        "judgment:8",
        True,
        2,
        200,
    )
    assert (first["message_id"], first["ok"], first["error"]) == (
        "msg_x",
        False,
        "connection refused",
    )


def test_dashboard_is_for_the_project_admin_only(client, server_token):
    s = make_setup(client, server_token, n_annotators=1)
    other = make_setup(client, server_token, n_annotators=0)
    assert client.get(s.url("/dashboard"), headers=bearer(server_token)).status_code == 200
    assert client.get(s.url("/dashboard"), headers=other.admin()).status_code == 403
    assert client.get(s.url("/dashboard"), headers=s.ann()).status_code == 403
    assert client.get(s.url("/dashboard")).status_code == 401
    assert (
        client.get("/api/v1/projects/999/dashboard", headers=bearer(server_token)).status_code
        == 404
    )
    empty = client.get(s.url("/dashboard"), headers=s.admin()).json()
    assert empty["progress"]["judgments"] == 0 and empty["per_hour"] == []
    assert empty["agreement"]["krippendorff_alpha"] is None and empty["most_disputed"] == []
