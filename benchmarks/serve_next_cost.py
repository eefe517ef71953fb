"""Cost of one ``next`` on a project that is already far along (in-process, no HTTP).

    source .ci/services.env
    python benchmarks/serve_next_cost.py [--items 40000] [--filled 30000] [--calls 320]

Seeds a pairwise project (R = 3) whose first ``--filled`` items already hold R submitted
assignments, then times ``next_assignment`` for 16 fresh annotators one call at a time, on
SQLite and on PostgreSQL. A cost that grows with ``--filled`` means ``next`` reads the filled
items or the past assignments (what indexes ``ix_items_open`` and ``ix_assignments_leases``
are there to avoid).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from serve_load import fresh_database
from sqlalchemy import insert, select

from prefloop.serve.assign import next_assignment, settle
from prefloop.serve.cli import open_db
from prefloop.serve.db import Assignment, Item, Judge, Member, Project, make_sessionmaker, utcnow

R, ANNOTATORS = 3, 16


def seed(session, items: int, filled: int) -> tuple[int, list[int]]:
    """The project id and its annotators' ids."""
    now = utcnow()
    project = Project(name="cost", task="pairwise", redundancy=R)
    session.add(project)
    session.flush()
    earlier = [Judge(kind="human", name=f"earlier-{k}") for k in range(R)]
    fresh = [Judge(kind="human", name=f"fresh-{k}") for k in range(ANNOTATORS)]
    session.add_all(earlier + fresh)
    session.flush()
    session.add_all([Member(project_id=project.id, judge_id=j.id) for j in fresh])
    responses = [{"text": "a"}, {"text": "b"}]
    rows = [
        {"project_id": project.id, "prompt": f"q{i}", "responses": responses, "item_metadata": {}}
        | {"claimed": R if i < filled else 0, "filled": i < filled, "created_at": now}
        for i in range(items)
    ]
    session.execute(insert(Item), rows)
    done = session.scalars(select(Item.id).order_by(Item.id).limit(filled)).all()
    if done:
        base = {"project_id": project.id, "order": [0, 1], "status": "submitted"}
        times = {"expires_at": now, "created_at": now}
        session.execute(
            insert(Assignment),
            [base | times | {"item_id": i, "judge_id": j.id} for i in done for j in earlier],
        )
    session.commit()
    return project.id, [j.id for j in fresh]


def time_next(db_url: str, items: int, filled: int, calls: int) -> dict:
    engine = open_db(db_url)
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        project_id, judges = seed(session, items, filled)
    rng = np.random.default_rng(0)
    seconds = []
    for call in range(calls):
        with sessions() as session:
            project = session.get(Project, project_id)
            start = time.perf_counter()
            assignment = next_assignment(session, project, judges[call % ANNOTATORS], rng)
            seconds.append(time.perf_counter() - start)
            settle(session, assignment, R)
            session.commit()
    engine.dispose()
    return {
        "mean_ms": round(1000 * float(np.mean(seconds)), 2),
        "p95_ms": round(1000 * float(np.percentile(seconds, 95)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("PREFLOOP_TEST_POSTGRES_URL"))
    parser.add_argument("--items", type=int, default=40_000)
    parser.add_argument("--filled", type=int, default=30_000)
    parser.add_argument("--calls", type=int, default=320)
    args = parser.parse_args()
    kinds = ["sqlite", "postgresql"] if args.postgres else ["sqlite"]
    with tempfile.TemporaryDirectory(prefix="prefloop-bench-") as scratch:
        for kind in kinds:
            with fresh_database(kind, args.postgres, Path(scratch)) as db_url:
                cost = time_next(db_url, args.items, args.filled, args.calls)
            row = {"database": kind, "items": args.items, "filled": args.filled} | cost
            print(json.dumps(row | {"calls": args.calls}), flush=True)


if __name__ == "__main__":
    main()
