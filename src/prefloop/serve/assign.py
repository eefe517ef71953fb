"""Hand out items: at most R live or finished assignments per item, never twice to a judge.

The bound is kept by a conditional ``UPDATE items SET claimed = claimed + 1 WHERE claimed < R``,
which is atomic on both SQLite and PostgreSQL, and the (item, judge) unique constraint.
Which item comes next is decided by :mod:`prefloop.query` over candidate (item, pair)s.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import combinations

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from prefloop.query import fit_linear_utility, rank_candidates
from prefloop.serve.db import Assignment, Item, Judgment, Project, utcnow

LEASE = timedelta(minutes=30)
POOL = 200
HISTORY = 5_000
Candidate = tuple[Item, tuple[int, int]]


def release(session: Session, assignment_id: int, item_id: int, status: str) -> bool:
    """Close a live assignment as ``status`` and free its slot; False if it was not live."""
    closed = session.execute(
        update(Assignment)
        .where(Assignment.id == assignment_id, Assignment.status == "assigned")
        .values(status=status, closed_at=utcnow())
    ).rowcount
    if closed:
        session.execute(update(Item).where(Item.id == item_id).values(claimed=Item.claimed - 1))
    return bool(closed)


def claim(session: Session, item_id: int, redundancy: int) -> bool:
    """Take one of the item's R slots, if one is free."""
    return bool(
        session.execute(
            update(Item)
            .where(Item.id == item_id, Item.claimed < redundancy)
            .values(claimed=Item.claimed + 1)
        ).rowcount
    )


def expire_leases(session: Session, project_id: int, now: datetime) -> None:
    stale = session.execute(
        select(Assignment.id, Assignment.item_id)
        .where(
            Assignment.project_id == project_id,
            Assignment.status == "assigned",
            Assignment.expires_at < now,
        )
        .limit(100)
    ).all()
    for assignment_id, item_id in stale:
        release(session, assignment_id, item_id, "expired")


def _features(item: Item, dim: int) -> np.ndarray:
    rows = [r.get("features") or [0.0] * dim for r in item.responses]
    return np.asarray(rows, dtype=float).reshape(len(rows), dim)


def _dueling_context(session: Session, project: Project, cands: list[Candidate]) -> dict:
    """Linear Bradley-Terry utility over response features, fitted on the project's judgments.

    For a linear utility the gradient ``g(x)`` is the feature vector; responses without
    features count as the zero vector (so they are ranked by chance).
    """
    past = session.execute(
        select(Judgment.pair, Judgment.preference, Item)
        .join(Item, Item.id == Judgment.item_id)
        .where(Judgment.project_id == project.id, Judgment.preference.is_not(None))
        .order_by(Judgment.id.desc())
        .limit(HISTORY)
    ).all()
    seen = [i for i, _ in cands] + [i for _, _, i in past]
    dim = max([1, *(len(r.get("features") or []) for i in seen for r in i.responses)])
    shown = [_features(i, dim)[pair] for pair, _, i in past]  # [past, 2, dim]
    observed = np.asarray(shown).reshape(-1, dim)
    w = fit_linear_utility(
        observed, [(2 * k, 2 * k + 1) for k in range(len(shown))], [p for _, p, _ in past]
    )
    offsets: dict[int, int] = {}
    arms: list[np.ndarray] = []
    groups: list[int] = []
    for item, _ in cands:
        if item.id not in offsets:
            offsets[item.id] = len(arms)
            arms.extend(_features(item, dim))
            groups.extend([item.id] * len(item.responses))
    gradients = np.asarray(arms)
    return {
        "candidates": [(offsets[i.id] + a, offsets[i.id] + b) for i, (a, b) in cands],
        "utilities": gradients @ w,
        "gradients": gradients,
        "history": observed[0::2] - observed[1::2],
        "groups": groups,
    }


def _disagreement_context(cands: list[Candidate]) -> dict:
    """Each ensemble member's reward margin per candidate pair (NaN where a model is missing)."""
    models = max((len(i.rewards or []) for i, _ in cands), default=0)
    margins = np.full((max(models, 1), len(cands)), np.nan)
    for k, (item, (a, b)) in enumerate(cands):
        for m, row in enumerate(item.rewards or []):
            margins[m, k] = row[a] - row[b]
    return {"candidates": cands, "rewards": margins}


def _candidates(session: Session, project: Project, judge_id: int) -> list[Candidate]:
    """Open items this judge has never been shown, each with every response pair."""
    seen = select(Assignment.item_id).where(Assignment.judge_id == judge_id)
    items = session.scalars(
        select(Item)
        .where(
            Item.project_id == project.id,
            Item.claimed < project.redundancy,
            Item.id.not_in(seen),
        )
        .order_by(Item.id)
        .limit(POOL)
    ).all()
    return [(i, pair) for i in items for pair in combinations(range(len(i.responses)), 2)]


def ranked(session: Session, project: Project, judge_id: int, rng: np.random.Generator):
    """Candidate (item, pair)s in the order the project's rule prefers; unscored ones last."""
    cands = _candidates(session, project, judge_id)
    if not cands:
        return []
    labelled = session.scalar(
        select(func.count()).select_from(Judgment).where(Judgment.project_id == project.id)
    )
    context = {"candidates": cands}
    if project.rule == "disagreement":
        context = _disagreement_context(cands)
    elif project.rule == "dueling_ucb":
        context = _dueling_context(session, project, cands)
    order = rank_candidates(
        context.pop("candidates"),
        project.rule,
        labelled=labelled or 0,
        warmup=project.warmup,
        rng=rng,
        **context,
    )
    scored = set(order)
    rest = [int(k) for k in rng.permutation(len(cands)) if k not in scored]
    return [cands[k] for k in [*order, *rest]]


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
    expire_leases(session, project.id, now)
    tried: set[int] = set()
    for item, pair in ranked(session, project, judge_id, rng):
        if item.id in tried:
            continue
        tried.add(item.id)
        if not claim(session, item.id, project.redundancy):
            continue
        shown = list(pair) if project.task == "pairwise" else list(range(len(item.responses)))
        assignment = Assignment(
            project_id=project.id,
            item_id=item.id,
            judge_id=judge_id,
            order=[int(i) for i in rng.permutation(shown)],
            expires_at=now + LEASE,
        )
        session.add(assignment)
        session.flush()
        return assignment
    return None
