"""Feedback-service throughput: judgments/s and p95 next-item latency by database and workers.

    source .ci/services.env   # PREFLOOP_TEST_POSTGRES_URL (or pass --postgres URL)
    python benchmarks/serve_load.py [--judgments 100] [--annotators 1 4 16] [--redundancy 3]

Runs SQLite with one worker and PostgreSQL with one and four, each on a fresh database and a
fresh ``python -m prefloop.serve`` process, under ``prefloop.serve.loadtest`` (every annotator
asks for the next item and judges it at once, as fast as the server allows) after a short
untimed warm-up on another project. Prints one JSON
line per run, then a Markdown table for docs/serve.md. The load runs in this process, on the
same machine: give it a quiet one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from prefloop.serve.db import normalize_url
from prefloop.serve.loadtest import create_load_project, run_load

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "serve"))
from serve_helpers import LiveServer, worker_pids  # noqa: E402 (the tests' launcher, reused)

SETUPS = [("sqlite", 1), ("postgresql", 1), ("postgresql", 4)]


@contextmanager
def fresh_database(kind: str, postgres: str | None, scratch: Path) -> Iterator[str]:
    """A new, empty database for one run (a PostgreSQL one is dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{scratch / f'{uuid.uuid4().hex}.db'}"
        return
    name = f"prefloop_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalize_url(postgres), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def wait_for_idle_workers(server: LiveServer, workers: int, timeout: float = 120) -> None:
    """Wait until all spawned workers are up and idle: the first one answers while the others
    are still importing the app, and their start-up must not be timed as load."""
    if workers == 1:
        return  # uvicorn serves in the launched process itself
    deadline, last = time.monotonic() + timeout, -1
    while time.monotonic() < deadline:
        pids = worker_pids(server.proc.pid)
        ticks = sum(cpu_ticks(pid) for pid in pids)
        if len(pids) == workers and ticks - last <= 2:
            return
        last = ticks
        time.sleep(0.5)
    raise SystemExit(f"{workers} workers did not start within {timeout:.0f}s")


def measure(db_url: str, workers: int, annotators: int, per: int, r: int, log: Path) -> dict:
    """One server process (tree), an untimed warm-up load, then one timed load."""
    server = LiveServer(db_url, log, workers=workers).start(init=True)
    try:
        wait_for_idle_workers(server, workers)
        with httpx.Client(base_url=server.base, timeout=120) as http:
            warm_up = create_load_project(http, server.token, 4 * workers, 12 * workers, r)
            project = create_load_project(http, server.token, annotators, annotators * per, r)
        run_load(server.base, warm_up, 3)  # first requests of each worker: connections, caches
        result = run_load(server.base, project, per)
    finally:
        server.stop()
    done = len(result.acknowledged)
    return {
        "judgments": done,
        "complete": done == annotators * per,
        "errors": result.transport_errors + len(result.unexpected) + len(result.in_doubt),
        "judgments_per_s": round(done / result.elapsed, 1),
        "next_p95_ms": round(result.p95_next_ms(), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("PREFLOOP_TEST_POSTGRES_URL"))
    parser.add_argument("--judgments", type=int, default=100, help="per annotator")
    parser.add_argument("--annotators", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--redundancy", type=int, default=3)
    args = parser.parse_args()
    if not args.postgres:
        raise SystemExit("no PostgreSQL: pass --postgres URL or source .ci/services.env")
    rows = []
    with tempfile.TemporaryDirectory(prefix="prefloop-bench-") as scratch:
        for kind, workers in SETUPS:
            for annotators in args.annotators:
                row = {"database": kind, "workers": workers, "annotators": annotators}
                with fresh_database(kind, args.postgres, Path(scratch)) as db_url:
                    load = (annotators, args.judgments, args.redundancy)
                    row |= measure(db_url, workers, *load, Path(scratch) / "server.log")
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(
        "\n| database | workers | annotators | judgments | errors | judgments/s | next p95 (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        judged = f"{row['judgments']}" + ("" if row["complete"] else " (incomplete)")
        print(
            f"| {row['database']} | {row['workers']} | {row['annotators']} | {judged} "
            f"| {row['errors']} | {row['judgments_per_s']} | {row['next_p95_ms']} |"
        )


if __name__ == "__main__":
    main()
