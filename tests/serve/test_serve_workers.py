"""Several server processes on one port (``--workers``): refused on SQLite, and on PostgreSQL
exact under load while one worker is killed with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from serve_helpers import bearer, worker_pids
from sqlalchemy import create_engine, text
from test_serve_load import all_judgments

from prefloop.serve.db import normalize_url
from prefloop.serve.loadtest import create_load_project

WORKERS, ANNOTATORS, PER_ANNOTATOR, REDUNDANCY = 4, 16, 200, 3
ITEMS = 1600  # 4800 slots for 3200 judgments: nobody runs dry
RETRIED = {503}  # database busy (lock timeout, deadlock victim): nothing was stored


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


def open_sockets(pid: int) -> int:
    """Sockets a process holds: a worker serving clients holds their and its database's."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed while we looked
            count += os.readlink(fd).startswith("socket:")
    return count


@dataclass
class SteadyLoad:
    """Annotators that retry the same request after a transport error or a 503: both
    requests are idempotent (``next`` returns the open assignment, a re-sent ``submit`` the
    stored judgment), so a crash may cost time but no judgment."""

    base: str
    project_id: int
    deadline: float
    acknowledged: dict[int, dict] = field(default_factory=dict)
    done: Counter = field(default_factory=Counter)
    transport_errors: int = 0
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _send(self, http: httpx.Client, path: str, **kwargs) -> httpx.Response | None:
        while time.monotonic() < self.deadline:
            try:
                r = http.post(path, **kwargs)
            except httpx.TransportError:
                with self.lock:
                    self.transport_errors += 1
                time.sleep(0.05)
                continue
            if r.status_code not in RETRIED:
                return r
            time.sleep(0.05)
        with self.lock:
            self.unexpected.append(f"deadline passed on {path}")
        return None

    def annotate(self, token: str, count: int) -> None:
        rng = random.Random(token)
        with httpx.Client(base_url=self.base, headers=bearer(token), timeout=30) as http:
            while self.done[token] < count:
                r = self._send(http, f"/api/v1/projects/{self.project_id}/next")
                if r is None or r.status_code != 200:
                    self._unexpected(r)
                    return
                label = {"choice": rng.choice(["left", "right", "tie", "both_bad"])}
                path = f"/api/v1/assignments/{r.json()['assignment_id']}/submit"
                s = self._send(http, path, json=label)
                if s is None or s.status_code != 200:
                    self._unexpected(s)
                    return
                with self.lock:
                    self.acknowledged[s.json()["id"]] = s.json()
                    self.done[token] += 1

    def _unexpected(self, r: httpx.Response | None) -> None:
        if r is not None:
            with self.lock:
                self.unexpected.append(f"{r.status_code} {r.text}")


def test_four_workers_lose_one_and_lose_no_judgment(live_server, postgres_url):
    server = live_server(postgres_url, workers=WORKERS)
    deadline = time.monotonic() + 60
    while len(workers := worker_pids(server.proc.pid)) < WORKERS and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(workers) == WORKERS
    with httpx.Client(base_url=server.base, timeout=60) as http:
        project = create_load_project(http, server.token, ANNOTATORS, ITEMS, REDUNDANCY)
    load = SteadyLoad(server.base, project.project_id, time.monotonic() + 300)
    threads = [
        threading.Thread(target=load.annotate, args=(token, PER_ANNOTATOR))
        for token in project.annotator_tokens
    ]
    for thread in threads:
        thread.start()
    while len(load.acknowledged) < ANNOTATORS * PER_ANNOTATOR // 4 and load.unexpected == []:
        assert time.monotonic() < load.deadline, "load stalled before the kill"
        time.sleep(0.01)
    victim = max(workers, key=open_sockets)  # the busiest worker: it has clients mid-request
    killed_at = len(load.acknowledged)
    os.kill(victim, signal.SIGKILL)
    for thread in threads:
        thread.join()

    assert load.unexpected == []
    assert load.transport_errors > 0  # the kill cut connections the load then retried
    assert victim not in worker_pids(server.proc.pid)
    while len(worker_pids(server.proc.pid)) < WORKERS:  # uvicorn starts a replacement
        assert time.monotonic() < load.deadline, "the killed worker was not replaced"
        time.sleep(0.1)
    assert all(load.done[t] == PER_ANNOTATOR for t in project.annotator_tokens)
    stored = {j["id"]: j for j in all_judgments(server.base, project)}
    assert len(stored) == len(load.acknowledged) == ANNOTATORS * PER_ANNOTATOR  # 0 lost
    assert stored.keys() == load.acknowledged.keys()  # every acknowledged one is in the DB
    for ack in load.acknowledged.values():
        assert stored[ack["id"]]["raw_label"] == ack["raw_label"]
    assert len({(j["item_id"], j["judge_id"]) for j in stored.values()}) == len(stored)  # 0 dup
    assert max(Counter(j["item_id"] for j in stored.values()).values()) <= REDUNDANCY
    assert slot_accounting_errors(postgres_url, project.project_id) == []
    print(
        f"\n{len(stored)} judgments on {WORKERS} workers, worker {victim} killed after "
        f"{killed_at} acknowledged; {load.transport_errors} transport errors retried"
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
