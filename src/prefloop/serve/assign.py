"""Hand out items: at most R live or finished assignments per item, never twice to a judge.

The bound is kept by a conditional ``UPDATE items SET claimed = claimed + 1 WHERE claimed < R``,
which is atomic on both SQLite and PostgreSQL, and the (item, judge) unique constraint; no state
lives in the process, so any number of server processes may hand out items at once.
Which item comes next is decided by :mod:`prefloop.query` over candidate (item, pair)s.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import combinations

import numpy as np
from sqlalchemy import false, func, select, update
from sqlalchemy.orm import Session

from prefloop.query import fit_linear_utility, rank_candidates
from prefloop.serve.db import Assignment, Item, Judgment, Project, utcnow

LEASE = timedelta(minutes=30)
POOL = 200
HISTORY = 5_000
Candidate = tuple[int, tuple[int, int] | None]


def _transition(session: Session, assignment_id: int, old: str, new: str) -> bool:
    """Atomically move an assignment from status ``old`` to ``new``; False if it was not ``old``."""
    return bool(
        session.execute(
            update(Assignment)
            .where(Assignment.id == assignment_id, Assignment.status == old)
            .values(status=new, closed_at=utcnow())
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def release(session: Session, assignment_id: int, item_id: int, status: str) -> bool:
    """Close a live assignment as ``status`` and free its slot; False if it was not live."""
    closed = _transition(session, assignment_id, "assigned", status)
    if closed:
        session.execute(
            update(Item)
            .where(Item.id == item_id)
            .values(claimed=Item.claimed - 1, filled=False)
            .execution_options(synchronize_session=False)
        )
    return bool(closed)


def claim(session: Session, item_id: int, redundancy: int, wait: bool = True) -> bool:
    """Take one of the item's R slots, if one is free. ``wait=False`` gives up at once while
    another transaction holds the item's row (PostgreSQL ``SKIP LOCKED``; SQLite has one writer
    at a time, so nothing is ever held there)."""
    if not wait:
        free = select(Item.id).where(Item.id == item_id, Item.claimed < redundancy)
        if session.scalar(free.with_for_update(skip_locked=True)) is None:
            return False
    return bool(
        session.execute(
            update(Item)
            .where(Item.id == item_id, Item.claimed < redundancy)
            .values(claimed=Item.claimed + 1, filled=Item.claimed + 1 >= redundancy)
            .execution_options(synchronize_session=False)
        ).rowcount
    )


def settle(session: Session, assignment: Assignment, redundancy: int) -> bool:
    """Mark the assignment submitted. A live one keeps its slot; an expired one needs a free
    slot again. False (and the caller must roll back) if neither holds."""
    if _transition(session, assignment.id, "assigned", "submitted"):
        return True
    return claim(session, assignment.item_id, redundancy) and _transition(
        session, assignment.id, "expired", "submitted"
    )


def expire_leases(
    session: Session, project_id: int, now: datetime, judge_id: int | None = None
) -> None:
    """Expire up to 100 stale leases of the project (or of one judge), oldest first, freeing
    their slots; leases another request is expiring at this moment are left to it."""
    stale = (
        select(Assignment.id, Assignment.item_id)
        .where(
            Assignment.project_id == project_id,
            Assignment.status == "assigned",
            Assignment.expires_at < now,
        )
        .order_by(Assignment.id)
        .limit(100)
    )
    if judge_id is not None:
        stale = stale.where(Assignment.judge_id == judge_id)
    for assignment_id, item_id in session.execute(stale.with_for_update(skip_locked=True)).all():
        release(session, assignment_id, item_id, "expired")


def _features(responses: list[dict], dim: int) -> np.ndarray:
    rows = [r.get("features") or [0.0] * dim for r in responses]
    return np.asarray(rows, dtype=float).reshape(len(rows), dim)


def _pool(session: Session, project: Project, judge_id: int, *columns) -> list:
    """Up to POOL open items (id first, then ``columns``) this judge has never been shown."""
    seen = select(Assignment.item_id).where(Assignment.judge_id == judge_id)
    return session.execute(
        select(Item.id, *columns)
        .where(
            Item.project_id == project.id,
            Item.filled == false(),
            Item.id.not_in(seen),
        )
        .order_by(Item.id)
        .limit(POOL)
    ).all()


def _pairs(item_id: int, k: int) -> list[Candidate]:
    return [(item_id, pair) for pair in combinations(range(k), 2)]


def _dueling(session: Session, project: Project, judge_id: int) -> tuple[list[Candidate], dict]:
    """Linear Bradley-Terry utility over response features, fitted on the project's judgments.

    For a linear utility the gradient ``g(x)`` is the feature vector; responses without
    features count as the zero vector (so they are ranked by chance).
    """
    pool = _pool(session, project, judge_id, Item.responses)
    past = session.execute(
        select(Judgment.pair, Judgment.preference, Item.responses)
        .join(Item, Item.id == Judgment.item_id)
        .where(Judgment.project_id == project.id, Judgment.preference.is_not(None))
        .order_by(Judgment.id.desc())
        .limit(HISTORY)
    ).all()
    every = [responses for _, responses in pool] + [responses for _, _, responses in past]
    dim = max([1, *(len(r.get("features") or []) for rs in every for r in rs)])
    shown = [_features(responses, dim)[pair] for pair, _, responses in past]  # [past, 2, dim]
    observed = np.asarray(shown).reshape(-1, dim)
    w = fit_linear_utility(
        observed, [(2 * k, 2 * k + 1) for k in range(len(shown))], [p for _, p, _ in past]
    )
    cands: list[Candidate] = []
    arm_pairs: list[tuple[int, int]] = []
    arms: list[np.ndarray] = []
    groups: list[int] = []
    for item_id, responses in pool:
        offset = len(arms)
        arms.extend(_features(responses, dim))
        groups.extend([item_id] * len(responses))
        for cand in _pairs(item_id, len(responses)):
            cands.append(cand)
            arm_pairs.append((offset + cand[1][0], offset + cand[1][1]))
    gradients = np.asarray(arms).reshape(-1, dim)
    return cands, {
        "candidates": arm_pairs,
        "utilities": gradients @ w,
        "gradients": gradients,
        "history": observed[0::2] - observed[1::2],
        "groups": groups,
    }


def _disagreement(session: Session, project: Project, judge_id: int) -> tuple[list, dict]:
    """Each ensemble member's reward margin per candidate pair (NaN where a model is missing;
    an item without rewards is one unscored candidate)."""
    pool = _pool(session, project, judge_id, Item.rewards)
    cands = [
        cand
        for item_id, rewards in pool
        for cand in (_pairs(item_id, len(rewards[0])) if rewards else [(item_id, None)])
    ]
    rewards_of = dict(pool)
    margins = np.full((max([1, *(len(r or []) for _, r in pool)]), len(cands)), np.nan)
    for k, (item_id, pair) in enumerate(cands):
        for m, row in enumerate(rewards_of[item_id] or []):
            margins[m, k] = row[pair[0]] - row[pair[1]]
    return cands, {"candidates": cands, "rewards": margins}


def ranked(session: Session, project: Project, judge_id: int, rng: np.random.Generator) -> list:
    """Candidate ``(item id, pair or None)`` in the order the project's rule prefers, unscored
    ones after them in random order. Until ``warmup`` labels exist the order is uniform."""
    rule = project.rule
    if rule != "random":
        labels = select(Judgment.id).where(Judgment.project_id == project.id)
        counted = labels.limit(project.warmup).subquery()  # no need to count past the warm-up
        labelled = session.scalar(select(func.count()).select_from(counted))
        rule = rule if labelled >= project.warmup else "random"
    if rule == "disagreement":
        cands, context = _disagreement(session, project, judge_id)
    elif rule == "dueling_ucb":
        cands, context = _dueling(session, project, judge_id)
    else:
        cands = [(item_id, None) for (item_id,) in _pool(session, project, judge_id)]
        context = {"candidates": cands}
    order = rank_candidates(context.pop("candidates"), rule, rng=rng, **context)
    scored = set(order)
    rest = [int(k) for k in rng.permutation(len(cands)) if k not in scored]
    return [cands[k] for k in [*order, *rest]]


def _take_first(session: Session, project: Project, candidates: list) -> Candidate | None:
    """Claim a slot of the best candidate item that has one (an item's first pair stands for it).

    Items another request is claiming at this moment are passed over rather than waited for,
    so concurrent requests (in any process) spread over the pool instead of queueing on one
    row; they are waited for only when nothing else is free, so None still means none left.
    """
    first_pair: dict[int, Candidate] = {}
    for item_id, pair in candidates:
        first_pair.setdefault(item_id, (item_id, pair))
    for wait in (False, True):
        for item_id, candidate in first_pair.items():
            if claim(session, item_id, project.redundancy, wait=wait):
                return candidate
    return None


def next_assignment(
    session: Session, project: Project, judge_id: int, rng: np.random.Generator
) -> Assignment | None:
    """The judge's live assignment, else a newly claimed one, else None (nothing left)."""
    now = utcnow()
    live = session.scalar(
        select(Assignment).where(
            Assignment.project_id == project.id,
            Assignment.judge_id == judge_id,
            Assignment.status == "assigned",
            Assignment.expires_at > now,
        )
    )
    if live is not None:
        return live
    expire_leases(session, project.id, now, judge_id)  # its own first: it bars a new lease
    expire_leases(session, project.id, now)
    taken = _take_first(session, project, ranked(session, project, judge_id, rng))
    if taken is None:
        return None
    item_id, pair = taken
    k = len(session.get(Item, item_id).responses)
    if project.task != "pairwise":
        shown = list(range(k))
    else:
        shown = list(pair or rng.choice(k, size=2, replace=False))
    assignment = Assignment(
        project_id=project.id,
        item_id=item_id,
        judge_id=judge_id,
        order=[int(i) for i in rng.permutation(shown)],
        expires_at=now + LEASE,
    )
    session.add(assignment)
    session.flush()
    return assignment
