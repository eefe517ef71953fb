"""Turn a project's judgments into agreement units for :mod:`prefloop.serve.agreement`.

Pairwise answers and rankings become one nominal unit per compared pair (value: which response
won, "tie" or "both_bad"); ratings give one interval unit per (response, aspect). Free-text
critiques have no agreement statistic.
"""

from __future__ import annotations

from itertools import combinations

from sqlalchemy import select
from sqlalchemy.orm import Session

from prefloop.serve.agreement import Units, group_units, summary
from prefloop.serve.db import Judge, Judgment, Project


def pair_rows(judgment: Judgment) -> list[tuple]:
    """``(unit, judge, value)`` per compared pair: unit ``(item, a, b)``, value "a", "b", "tie"
    or "both_bad"."""
    if judgment.task == "pairwise":
        a, b = judgment.pair
        choice = judgment.label.get("choice")
        if choice is None:
            p = judgment.preference
            choice = "a" if p > 0.5 else "b" if p < 0.5 else "tie"
        return [((judgment.item_id, a, b), judgment.judge_id, choice)]
    rank = {idx: r for r, idx in enumerate(judgment.label["ranking"])}
    return [
        ((judgment.item_id, a, b), judgment.judge_id, "a" if rank[a] < rank[b] else "b")
        for a, b in combinations(sorted(rank), 2)
    ]


def judgments_by(session: Session, project: Project, judges: str = "human") -> list[Judgment]:
    """The project's submitted judgments by ``judges`` (human/ai/all), oldest first."""
    query = select(Judgment).where(Judgment.project_id == project.id).order_by(Judgment.id)
    if judges != "all":
        query = query.join(Judge, Judge.id == Judgment.judge_id).where(Judge.kind == judges)
    return list(session.scalars(query))


def project_units(project: Project, judgments: list[Judgment]) -> dict[str, tuple[Units, str]]:
    """Agreement units and their metric: one set (key ``""``) for pairwise and ranking tasks,
    one per aspect for ratings, none for critiques."""
    if project.task in ("pairwise", "ranking"):
        rows = [row for j in judgments for row in pair_rows(j)]
        return {"": (group_units(rows), "nominal")}
    if project.task == "rating":
        return {
            aspect: (
                group_units(
                    [
                        ((j.item_id, idx), j.judge_id, score)
                        for j in judgments
                        for idx, score in enumerate(j.label["ratings"][aspect])
                        if score is not None
                    ]
                ),
                "interval",
            )
            for aspect in project.aspects
        }
    return {}


def project_agreement(session: Session, project: Project, judges: str = "human") -> dict:
    """Agreement statistics of the project's submitted judgments by ``judges`` (human/ai/all)."""
    units = project_units(project, judgments_by(session, project, judges))
    if project.task in ("pairwise", "ranking"):
        return {"task": project.task, **summary(*units[""])}
    if project.task == "rating":
        return {
            "task": project.task,
            "aspects": {aspect: summary(*pair) for aspect, pair in units.items()},
        }
    return {"task": project.task, "detail": "no agreement statistic for free-text critiques"}
