"""Several server processes on one port (``--workers``): refused on SQLite, and on PostgreSQL
exact under load while one worker is killed with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from serve_helpers import bearer, worker_pids
from sqlalchemy import create_engine, text

from prefloop.serve.db import normalize_url
from prefloop.serve.loadtest import LoadResult, create_load_project, run_load, stored_judgments
from prefloop.serve.workers import DB_ENV, PRIVATE_WEBHOOKS_ENV, app_from_env, export_app_options

WORKERS, ANNOTATORS, PER_ANNOTATOR, REDUNDANCY = 4, 16, 200, 3
ITEMS = 1600  # 4800 slots for 3200 judgments: nobody runs dry


def test_sqlite_refuses_more_than_one_worker(sqlite_url):
    run = subprocess.run(
        [sys.executable, "-m", "prefloop.serve", "--db", sqlite_url, "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "--workers > 1 needs PostgreSQL: SQLite lets one process write at a time, "
        "so more workers would only queue on its lock (serve SQLite with one worker)"
    ]


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_worker_builds_its_app_with_the_options_of_serve(
    monkeypatch, sqlite_url, server_token, allow_private
):
    for name in (DB_ENV, PRIVATE_WEBHOOKS_ENV):
        monkeypatch.setenv(name, "")  # so that monkeypatch restores both afterwards
    export_app_options(sqlite_url, allow_private)  # what serve_command does before uvicorn runs
    body = {"name": "p", "task": "pairwise", "webhook_url": "http://127.0.0.1:9/hook"}
    with TestClient(app_from_env()) as client:
        r = client.post("/api/v1/projects", json=body, headers=bearer(server_token))
    assert r.status_code == (201 if allow_private else 422), r.text


def open_sockets(pid: int) -> int:
    """Sockets a process holds: a worker serving clients holds their and its database's."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed while we looked
            count += os.readlink(fd).startswith("socket:")
    return count


def test_four_workers_lose_one_and_lose_no_judgment(live_server, postgres_url):
    server = live_server(postgres_url, workers=WORKERS)
    deadline = time.monotonic() + 60
    while len(workers := worker_pids(server.proc.pid)) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(workers) == WORKERS
    with httpx.Client(base_url=server.base, timeout=60) as http:
        project = create_load_project(http, server.token, ANNOTATORS, ITEMS, REDUNDANCY)
    # Annotators retry a request that lost its connection: both are idempotent (``next``
    # returns the open assignment, a re-sent ``submit`` the stored judgment), so a crash may
    # cost time but no judgment.
    result = LoadResult()
    load = threading.Thread(target=run_load, args=(server.base, project, PER_ANNOTATOR, result))
    load.start()
    deadline = time.monotonic() + 300
    while len(result.acknowledged) < ANNOTATORS * PER_ANNOTATOR // 4 and result.unexpected == []:
        assert time.monotonic() < deadline, "load stalled before the kill"
        time.sleep(0.01)
    victim = max(workers, key=open_sockets)  # the busiest worker: it has clients mid-request
    killed_at = len(result.acknowledged)
    os.kill(victim, signal.SIGKILL)
    load.join(timeout=max(deadline - time.monotonic(), 0))
    assert not load.is_alive(), "load did not finish after the kill"

    assert result.unexpected == [] and result.in_doubt == []
    assert result.transport_errors > 0  # the kill cut connections the load then retried
    assert victim not in worker_pids(server.proc.pid)
    while len(worker_pids(server.proc.pid)) < WORKERS:  # uvicorn starts a replacement
        assert time.monotonic() < deadline, "the killed worker was not replaced"
        time.sleep(0.1)
    per_annotator = Counter(j["judge_id"] for j in result.acknowledged)
    assert sorted(per_annotator.values()) == [PER_ANNOTATOR] * ANNOTATORS
    acknowledged = {j["id"]: j for j in result.acknowledged}
    with httpx.Client(base_url=server.base, timeout=60) as http:
        stored = {j["id"]: j for j in stored_judgments(http, project)}
    assert len(stored) == len(acknowledged) == ANNOTATORS * PER_ANNOTATOR  # 0 lost
    assert stored.keys() == acknowledged.keys()  # every acknowledged one is in the DB
    for ack in acknowledged.values():
        assert stored[ack["id"]]["raw_label"] == ack["raw_label"]
    assert len({(j["item_id"], j["judge_id"]) for j in stored.values()}) == len(stored)  # 0 dup
    assert max(Counter(j["item_id"] for j in stored.values()).values()) <= REDUNDANCY
    assert slot_accounting_errors(postgres_url, project.project_id) == []
    print(
        f"\n{len(stored)} judgments on {WORKERS} workers, worker {victim} killed after "
        f"{killed_at} acknowledged; {result.transport_errors} transport errors retried"
    )


def slot_accounting_errors(db_url: str, project_id: int) -> list[tuple]:
    """Items whose ``claimed`` / ``filled`` disagree with their live and submitted assignments,
    or that hold more than R of them (none may)."""
    engine = create_engine(normalize_url(db_url))
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT i.id, i.claimed, i.filled, COUNT(a.id) FROM items i "
                "LEFT JOIN assignments a ON a.item_id = i.id "
                "AND a.status IN ('assigned', 'submitted') "
                "WHERE i.project_id = :p GROUP BY i.id, i.claimed, i.filled"
            ),
            {"p": project_id},
        ).all()
    engine.dispose()
    assert len(rows) == ITEMS
    return [
        row
        for row in rows
        if row[1] != row[3] or row[3] > REDUNDANCY or row[2] != (row[1] >= REDUNDANCY)
    ]
