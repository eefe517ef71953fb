"""Helpers for the feedback-service tests (a uniquely named module: ``tests/conftest.py``
exists too, so ``from conftest import ...`` would be ambiguous)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

#: Headless Chromium for the browser tests: no sandbox, GPU or background traffic.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def missing(reason: str) -> None:
    """Fail in CI, skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required test service missing in CI: {reason}")
    pytest.skip(reason)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Setup:
    """A server with one project (its admin token) and annotators (their tokens)."""

    client: TestClient | httpx.Client
    server_token: str
    project: dict = field(default_factory=dict)
    annotators: list[dict] = field(default_factory=list)

    def admin(self) -> dict[str, str]:
        return bearer(self.project["admin_token"])

    def ann(self, k: int = 0) -> dict[str, str]:
        return bearer(self.annotators[k]["token"])

    def url(self, path: str) -> str:
        return f"/api/v1/projects/{self.project['id']}{path}"


def make_setup(
    client: TestClient | httpx.Client,
    server_token: str,
    n_annotators: int = 2,
    items: list[dict] | None = None,
    **project: object,
) -> Setup:
    """Create a project (default pairwise), annotators assigned to it, and its items."""
    s = Setup(client, server_token)
    body = {"name": "p", "task": "pairwise", **project}
    r = client.post("/api/v1/projects", json=body, headers=bearer(server_token))
    assert r.status_code == 201, r.text
    s.project = r.json()
    for k in range(n_annotators):
        name = f"ann-{uuid.uuid4().hex[:8]}-{k}"
        a = client.post("/api/v1/annotators", json={"name": name}, headers=bearer(server_token))
        assert a.status_code == 201, a.text
        s.annotators.append(a.json())
        m = client.post(s.url("/members"), json={"annotator_id": a.json()["id"]}, headers=s.admin())
        assert m.status_code == 204, m.text
    if items:
        r = client.post(s.url("/items"), json={"items": items}, headers=s.admin())
        assert r.status_code == 201, r.text
    return s


def pair_items(n: int, k: int = 2) -> list[dict]:
    return [
        {"prompt": f"prompt {i}", "responses": [f"answer {i}.{j}" for j in range(k)]}
        for i in range(n)
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_pids(master: int) -> list[int]:
    """The uvicorn worker processes of ``master`` (its spawned children, not its helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue  # not a process, or it ended while we looked
        if ppid == master and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


class LiveServer:
    """``python -m prefloop.serve`` in a subprocess, as a user would run it."""

    def __init__(
        self, db_url: str, log: Path, *, workers: int = 1, allow_private_webhooks: bool = False
    ) -> None:
        self.db_url, self.log = db_url, log
        self.workers, self.allow_private_webhooks = workers, allow_private_webhooks
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.token: str | None = None

    def start(self, init: bool = False) -> LiveServer:
        args = [sys.executable, "-m", "prefloop.serve", "--db", self.db_url]
        args += ["--port", str(self.port), "--workers", str(self.workers)]
        args += ["--init"] if init else []
        args += ["--allow-private-webhooks"] if self.allow_private_webhooks else []
        out = self.log.open("a")
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=out, text=True, start_new_session=True
        )
        if init:
            line = self.proc.stdout.readline()
            match = re.search(r"(pfs_\S+)", line)
            assert match, f"no admin token printed: {line!r}"
            self.token = match.group(1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited: {self.log.read_text()}"
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("server did not come up")

    def kill(self) -> None:
        """SIGKILL to the server and its workers: no shutdown handlers run, as in a crash."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
