"""``prefloop.serve.Client`` against a real server process on loopback."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import httpx
import pytest
from serve_helpers import LiveServer, free_port

from prefloop.data import Comparison
from prefloop.serve import Client, ServeConnectionError, ServeHTTPError
from prefloop.serve import client as client_module
from prefloop.serve.cli import init_admin, open_db
from prefloop.serve.schemas import JudgmentOut, ProjectCreated


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("client")
    server = LiveServer(f"sqlite:///{folder / 'feedback.db'}", folder / "server.log").start(True)
    yield server
    server.stop()


@pytest.fixture
def sleeps(monkeypatch) -> list[float]:
    """The client's back-off pauses, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(client_module, "time", SimpleNamespace(sleep=slept.append))
    return slept


def annotate(base: str, token: str, project_id: int) -> None:
    """Judge every item: the response starting with "good" wins."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as http:
        while (r := http.post(f"/api/v1/projects/{project_id}/next")).status_code == 200:
            view = r.json()
            left_good = view["responses"][0]["text"].startswith("good")
            label = {"choice": "left" if left_good else "right"}
            http.post(f"/api/v1/assignments/{view['assignment_id']}/submit", json=label)


ITEMS = [
    {"external_id": "step1-0", "prompt": "q0", "responses": ["good 0", "bad 0"]},
    {"external_id": "step1-1", "prompt": "q1", "responses": ["bad 1", "good 1"]},
    {"external_id": "step1-2", "prompt": [{"role": "user", "content": "q2"}],
     "responses": [{"text": "good 2", "source": "policy"}, "bad 2"]},
]  # fmt: skip


def test_a_training_loop_round(server):
    with Client(server.base, server.token) as admin:
        assert admin.me()["role"] == "server_admin"
        project = admin.create_project("loop", task="pairwise", redundancy=2)
        assert isinstance(project, ProjectCreated) and project.admin_token.startswith("pfa_")
        annotators = [admin.create_annotator(f"client-{n}") for n in range(2)]
        assert {a.id for a in annotators} <= {a.id for a in admin.annotators()}
    with Client(server.base, project.admin_token) as loop:
        for a in annotators:
            loop.add_member(project.id, a.id)
            loop.add_member(project.id, a.id)  # idempotent
        assert [m.id for m in loop.members(project.id)] == [a.id for a in annotators]
        first = loop.add_items(project.id, ITEMS[:2])
        again = loop.add_items(project.id, ITEMS)  # re-posting: only the new one is added
        assert (first.created, again.created) == (2, 1) and again.ids[:2] == first.ids
        assert loop.item(project.id, again.ids[2]).responses[0] == {
            "text": "good 2",
            "source": "policy",
        }
        assert loop.project(project.id).redundancy == 2
        assert (
            loop.new_judgments(project.id) is not None
            and list(loop.new_judgments(project.id)) == []
        )
        for a in annotators:
            annotate(server.base, a.token, project.id)
        seen = list(loop.new_judgments(project.id))
        assert len(seen) == 6 and all(isinstance(j, JudgmentOut) for j in seen)
        assert list(loop.new_judgments(project.id, after=seen[-1].id)) == []
        assert [j.id for j in loop.judgments(project.id, after=seen[1].id, limit=2)] == [
            seen[2].id,
            seen[3].id,
        ]
        records = loop.export_records(project.id)
        assert len(records) == 6 and all(isinstance(r, Comparison) for r in records)
        assert all(r.chosen.startswith("good") and r.strength == 1.0 for r in records)
        assert {r.metadata["external_id"] for r in records} == {i["external_id"] for i in ITEMS}
        kto = loop.export_records(project.id, form="trl-kto")
        assert sorted(r.label for r in kto) == [False] * 6 + [True] * 6
        agreement = loop.agreement(project.id)
        assert agreement.task == "pairwise" and agreement.overall.units == 3
        assert (agreement.overall.krippendorff_alpha, agreement.overall.fleiss_kappa) == (1.0, 1.0)
        ai = loop.add_ai_judgment(
            project.id, again.ids[0], {"name": "j", "model": "m", "prompt_version": "v1"},
            {"choice": "left"},
        )  # fmt: skip
        assert (ai.judge_kind, ai.preference) == ("ai", 1.0)
        assert [j.id for j in loop.new_judgments(project.id, after=seen[-1].id)] == [ai.id]


def test_error_answers_carry_status_and_message(server):
    with Client(server.base, server.token) as admin:
        with pytest.raises(ServeHTTPError) as bad:
            admin.create_project("p", task="essay")
        assert bad.value.status == 422 and bad.value.detail[0]["loc"] == ["body", "task"]
        assert str(bad.value).startswith("POST /projects: 422 body.task: Input should be ")
        with pytest.raises(ServeHTTPError) as missing:
            admin.project(999_999)
        assert (missing.value.status, missing.value.detail) == (404, "project 999999 not found")
        project = admin.create_project("errors")
    with Client(server.base, project.admin_token) as project_admin:
        with pytest.raises(ServeHTTPError) as forbidden:
            project_admin.create_annotator("x")
        assert (forbidden.value.status, forbidden.value.detail) == (
            403,
            "server admin token required",
        )
        twice = [{"external_id": "x", "prompt": "q", "responses": ["a", "b"]}] * 2
        with pytest.raises(ServeHTTPError) as repeated:
            project_admin.add_items(project.id, twice)
        assert (repeated.value.status, repeated.value.detail) == (
            422,
            "external_id repeats within the batch",
        )
    with Client(server.base, "pfs_wrong") as wrong, pytest.raises(ServeHTTPError) as denied:
        wrong.projects()
    assert (denied.value.status, denied.value.detail) == (401, "invalid or revoked token")


def test_connection_errors_are_retried_with_exponential_backoff(sleeps):
    client = Client(f"http://127.0.0.1:{free_port()}", "pfs_x", retries=3, backoff_s=0.5)
    with client, pytest.raises(ServeConnectionError, match="no answer after 4 tries"):
        client.projects()
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_server_that_comes_up_while_retrying_is_reached(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'later.db'}"
    token = init_admin(open_db(url))
    server = LiveServer(url, tmp_path / "server.log")
    slept: list[float] = []

    def start_server(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 1:
            server.start()

    monkeypatch.setattr(client_module, "time", SimpleNamespace(sleep=start_server))
    try:
        with Client(server.base, token, retries=2, backoff_s=0.1) as client:
            assert client.me()["role"] == "server_admin"
    finally:
        server.stop()
    assert slept == [0.1]


class DroppingServer:
    """Accepts connections on loopback and closes each one unanswered; counts them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.recv(65536)
            conn.close()


def test_requests_that_change_state_are_not_resent_once_sent(sleeps):
    dropping = DroppingServer()
    try:
        with Client(dropping.base, "pfs_x", retries=3, backoff_s=0.1) as client:
            with pytest.raises(ServeConnectionError, match="POST /projects"):
                client.create_project("p")
            assert (dropping.connections, sleeps) == (1, [])
            with pytest.raises(ServeConnectionError, match="no answer after 4 tries"):
                client.projects()  # a read may be repeated
            assert dropping.connections == 5
    finally:
        dropping.sock.close()


def test_database_busy_is_retried_then_reported(sleeps):
    requests: list[str] = []

    class Busy(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers["content-length"]))
            requests.append(self.path)
            body = json.dumps({"detail": "database busy, retry"}).encode()
            self.send_response(503)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    busy = HTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=busy.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{busy.server_address[1]}"
        client = Client(base, "pfs_x", retries=2, backoff_s=1.0)
        with client, pytest.raises(ServeHTTPError) as err:
            client.add_items(1, [{"prompt": "q", "responses": ["a", "b"]}])
    finally:
        busy.shutdown()
        busy.server_close()
    assert (err.value.status, err.value.detail) == (503, "database busy, retry")
    assert requests == ["/api/v1/projects/1/items"] * 3 and sleeps == [1.0, 2.0]
