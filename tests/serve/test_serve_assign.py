"""How ``next`` picks: open items and stale leases found by index (migration 0002), so its cost
does not grow with filled items and past assignments; items being claimed are passed over; one
live lease per annotator, however its requests race."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pytest
from serve_helpers import make_setup, pair_items
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError

from prefloop.serve.assign import next_assignment
from prefloop.serve.cli import open_db
from prefloop.serve.db import (
    Assignment,
    Item,
    Judge,
    Project,
    make_engine,
    make_sessionmaker,
)
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
JUDGE = (
    "INSERT INTO judges (id, kind, name, model, prompt_version, created_at) "
    "VALUES (:id, 'human', :name, '', '', '2026-01-01')"
)
ASSIGNMENT = (
    "INSERT INTO assignments (id, project_id, item_id, judge_id, display_order, status, "
    "created_at, expires_at) VALUES (:id, 1, :item, :judge, '[0, 1]', :status, "
    "'2026-01-01', '2999-01-01')"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, sqlite_url):
    return sqlite_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_migration_0002_frees_raced_leases_and_marks_filled_items(db_url):
    engine = make_engine(db_url)
    upgrade(engine, "0001")
    with engine.begin() as conn:  # R = 2; annotator 1 holds two live leases (an old race)
        conn.execute(text(PROJECT))
        conn.execute(text(ITEM), [{"id": i, "claimed": c} for i, c in enumerate([0, 1, 2], 1)])
        conn.execute(text(JUDGE), [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
        leases = [(1, 2, 1, "assigned"), (2, 3, 1, "assigned"), (3, 3, 2, "submitted")]
        conn.execute(
            text(ASSIGNMENT),
            [dict(zip(("id", "item", "judge", "status"), lease)) for lease in leases],
        )
    upgrade(engine)
    with engine.connect() as conn:
        items = conn.execute(text("SELECT id, claimed, filled FROM items ORDER BY id")).all()
        statuses = conn.execute(text("SELECT status FROM assignments ORDER BY id")).scalars()
        assert list(statuses) == ["expired", "assigned", "submitted"]  # the newest lease stays
    engine.dispose()
    assert [(i, c, bool(f)) for i, c, f in items] == [(1, 0, False), (2, 0, False), (3, 2, True)]


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


def test_next_passes_over_an_item_being_claimed_and_waits_only_when_none_is_free(postgres_url):
    engine = open_db(postgres_url)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        project = Project(name="p", task="pairwise", redundancy=1, rule="disagreement", warmup=0)
        s.add(project)
        s.flush()
        disputed, calm = (
            Item(project_id=project.id, prompt="q", responses=["a", "b"], rewards=rewards)
            for rewards in ([[5, 0], [0, 5]], [[1, 0], [1, 0]])
        )
        a, b, c = (Judge(kind="human", name=name) for name in "abc")
        s.add_all([disputed, calm, a, b, c])
        s.commit()
    rng = np.random.default_rng(0)
    holder, other = sessions(), sessions()
    other.execute(text("SET lock_timeout = '10s'"))  # a wrong wait fails instead of hanging
    assert next_assignment(holder, project, a.id, rng).item_id == disputed.id  # row held
    assert next_assignment(other, project, b.id, rng).item_id == calm.id  # passed over it
    other.commit()
    taken: list = []
    waiter = threading.Thread(
        target=lambda: taken.append(next_assignment(other, project, c.id, rng))
    )
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive()  # nothing else is free: it waits rather than answer "none left"
    holder.rollback()  # the request holding the item failed: its slot is free again
    waiter.join(30)
    assert [t.item_id for t in taken] == [disputed.id]
    other.commit()
    holder.close()
    other.close()
    engine.dispose()


def test_one_annotator_racing_itself_gets_one_lease(postgres_url):
    """Two concurrent ``next`` of one annotator (a client retrying after a timeout, say): the
    database refuses the second lease, and asking again returns the first."""
    engine = open_db(postgres_url)
    sessions = make_sessionmaker(engine)
    with sessions() as s:
        project = Project(name="p", task="pairwise", redundancy=2)
        s.add(project)
        s.flush()
        s.add_all(Item(project_id=project.id, prompt="q", responses=["a", "b"]) for _ in range(2))
        judge = Judge(kind="human", name="a")
        s.add(judge)
        s.commit()
    rng = np.random.default_rng(0)
    first, second = sessions(), sessions()
    lease = next_assignment(first, project, judge.id, rng)  # not committed yet
    raced: list[Exception] = []

    def ask_again() -> None:
        try:
            next_assignment(second, project, judge.id, rng)  # another item: first's is locked
        except IntegrityError as err:
            raced.append(err)

    racer = threading.Thread(target=ask_again)
    racer.start()
    racer.join(0.5)
    assert racer.is_alive()  # its lease waits on the unique index for the first to finish
    first.commit()
    racer.join(30)
    assert [type(e) for e in raced] == [IntegrityError]
    second.rollback()  # what the endpoint does before trying again
    assert next_assignment(second, project, judge.id, rng).id == lease.id
    for session in (first, second):
        session.close()
    engine.dispose()


def test_an_annotators_own_stale_lease_never_bars_its_next_one(engine):
    """Expiry frees 100 stale leases per call, oldest first; the caller's own goes first, or a
    backlog of older ones would keep it live (and the one-lease index would refuse a new one)."""
    sessions = make_sessionmaker(engine)
    past = datetime(2000, 1, 1, tzinfo=timezone.utc)
    with sessions() as s:
        project = Project(name="p", task="pairwise", redundancy=1)
        s.add(project)
        s.flush()
        items = [Item(project_id=project.id, prompt="q", responses=["a", "b"]) for _ in range(103)]
        judges = [Judge(kind="human", name=f"j{k}") for k in range(102)]
        s.add_all(items + judges)
        s.flush()
        for item, judge in zip(items, judges):  # 102 stale leases; the caller's is the newest
            lease = {"item_id": item.id, "judge_id": judge.id, "order": [0, 1]}
            s.add(Assignment(project_id=project.id, expires_at=past, **lease))
            item.claimed, item.filled = 1, True
        s.commit()
    caller = judges[-1]
    with sessions() as s:
        fresh = next_assignment(s, project, caller.id, np.random.default_rng(0))
        s.commit()
        statuses = Counter(s.scalars(select(Assignment.status)))
        leases = s.scalars(select(Assignment.status).where(Assignment.judge_id == caller.id))
        own = sorted(leases)
    assert fresh is not None and fresh.judge_id == caller.id
    assert own == ["assigned", "expired"]  # the new lease, and the stale one it replaces
    # the caller's lease and the 100 oldest expired; the 101st oldest waits; the new one is live
    assert statuses == {"expired": 101, "assigned": 2}
