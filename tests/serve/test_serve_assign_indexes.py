"""``next`` finds open items and stale leases by index (migration 0002), so its cost does not
grow with the number of filled items and past assignments."""

from __future__ import annotations

import pytest
from serve_helpers import make_setup, pair_items
from sqlalchemy import event, text

from prefloop.serve.db import make_engine
from prefloop.serve.migrate import upgrade

PROJECT = (
    "INSERT INTO projects (id, name, task, guideline, guideline_version, redundancy, rule, "
    "warmup, aspects, scale_min, scale_max, created_at) "
    "VALUES (1, 'p', 'pairwise', '', '1', 2, 'random', 0, '[]', 1, 5, '2026-01-01')"
)
ITEM = (
    "INSERT INTO items (id, project_id, prompt, responses, metadata, claimed, created_at) "
    "VALUES (:id, 1, '\"q\"', '[\"a\", \"b\"]', '{}', :claimed, '2026-01-01')"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, sqlite_url):
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_migration_0002_marks_the_items_already_filled(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.execute(text(PROJECT))
        conn.execute(text(ITEM), [{"id": i, "claimed": c} for i, c in enumerate([0, 1, 2], 1)])
    upgrade(engine)
    with engine.connect() as conn:
        filled = conn.execute(text("SELECT id, filled FROM items ORDER BY id")).all()
    engine.dispose()
    assert [(i, bool(f)) for i, f in filled] == [(1, False), (2, False), (3, True)]


def test_next_reads_open_items_and_leases_through_their_indexes(client, server_token, engine):
    s = make_setup(client, server_token, n_annotators=1, items=pair_items(3), redundancy=2)
    statements: list[tuple[str, object]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(_conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append((statement, parameters))

    assert client.post(s.url("/next"), headers=s.ann()).status_code == 200
    event.remove(engine, "before_cursor_execute", _record)
    with engine.connect() as conn:
        plans = [
            " | ".join(row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", args))
            for sql, args in statements
        ]
    assert any("ix_items_open (project_id=? AND filled=?)" in p for p in plans)
    stale = "ix_assignments_leases (project_id=? AND status=? AND expires_at<?)"
    assert any(stale in p for p in plans)
    assert not [p for p in plans if "SCAN items" in p or "SCAN assignments" in p]
