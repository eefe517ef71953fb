"""Concurrency and crash safety against a real server process on loopback (SQLite, PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

from prefloop.serve.loadtest import LoadResult, create_load_project, run_load

N_ANNOTATORS, PER_ANNOTATOR, REDUNDANCY = 8, 20, 2


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, sqlite_url):
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def all_judgments(base: str, project) -> list[dict]:
    headers = {"Authorization": f"Bearer {project.admin_token}"}
    url = f"{base}/api/v1/projects/{project.project_id}/judgments"
    found, after = [], 0
    while page := httpx.get(url, params={"after": after, "limit": 1000}, headers=headers).json():
        found += page
        after = page[-1]["id"]
    return found


def test_concurrent_annotators(live_server, db_url):
    server = live_server(db_url)
    with httpx.Client(base_url=server.base, timeout=60) as http:
        items = N_ANNOTATORS * PER_ANNOTATOR  # twice the slots needed, so nobody runs dry
        project = create_load_project(http, server.token, N_ANNOTATORS, items, REDUNDANCY)
    result = run_load(server.base, project, PER_ANNOTATOR)
    assert result.unexpected == [] and result.transport_errors == 0
    stored = all_judgments(server.base, project)
    assert len(result.acknowledged) == len(stored) == N_ANNOTATORS * PER_ANNOTATOR
    assert sorted(j["id"] for j in stored) == sorted(j["id"] for j in result.acknowledged)
    assert len({(j["item_id"], j["judge_id"]) for j in stored}) == len(stored)
    assert max(Counter(j["item_id"] for j in stored).values()) <= REDUNDANCY
    print(
        f"\n{db_url.split(':')[0]}: {len(stored) / result.elapsed:.1f} judgments/s, "
        f"next-item p95 {result.p95_next_ms():.1f} ms"
    )


def test_acknowledged_judgments_survive_a_crash(live_server, db_url):
    server = live_server(db_url)
    with httpx.Client(base_url=server.base, timeout=60) as http:
        project = create_load_project(http, server.token, N_ANNOTATORS, 400, REDUNDANCY)
    result = LoadResult()
    load = threading.Thread(target=run_load, args=(server.base, project, 50, result))
    load.start()
    deadline = time.monotonic() + 120
    while len(result.acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # SIGKILL mid-load
    load.join()
    assert result.transport_errors > 0 and result.unexpected == []
    server.start()
    stored = {j["id"]: j for j in all_judgments(server.base, project)}
    for ack in result.acknowledged:
        assert stored[ack["id"]]["raw_label"] == ack["raw_label"]
    # at most one unacknowledged judgment per annotator was in flight when the server died
    assert len(result.acknowledged) <= len(stored) <= len(result.acknowledged) + N_ANNOTATORS
