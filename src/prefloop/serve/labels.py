"""Turn an answer given in displayed positions into the canonical stored judgment.

The display order maps a position to a stored response index, so the stored label never
depends on the random left/right order an annotator happened to see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefloop.serve.db import Project
from prefloop.serve.schemas import Label

CHOICE_PREFERENCE = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}


class LabelError(ValueError):
    """The answer does not fit the project's task (reported as a 422)."""


@dataclass(frozen=True)
class Canonical:
    label: dict[str, Any]
    pair: list[int] | None = None
    preference: float | None = None


def _only(label: Label, allowed: set[str], task: str) -> None:
    given = {k for k, v in label.model_dump(exclude={"comment"}).items() if v is not None}
    if extra := given - allowed:
        raise LabelError(f"{task} label does not take {sorted(extra)}")


def _pairwise(label: Label, order: list[int]) -> Canonical:
    _only(label, {"choice", "preference"}, "pairwise")
    if (label.choice is None) == (label.preference is None):
        raise LabelError("pairwise label needs exactly one of 'choice' or 'preference'")
    if len(order) != 2:
        raise LabelError("pairwise judgments compare exactly two responses")
    left_wins = CHOICE_PREFERENCE[label.choice] if label.choice else float(label.preference)
    a, b = sorted(order)
    pref = left_wins if order[0] == a else 1.0 - left_wins
    canonical: dict[str, Any] = {"preference": pref}
    if label.choice:
        winner = {"left": order[0], "right": order[1]}.get(label.choice)
        canonical["choice"] = label.choice if winner is None else ("a" if winner == a else "b")
    return Canonical(canonical, [a, b], pref)


def _ranking(label: Label, order: list[int]) -> Canonical:
    _only(label, {"ranking"}, "ranking")
    if label.ranking is None or sorted(label.ranking) != list(range(len(order))):
        raise LabelError(f"ranking must list every position 0..{len(order) - 1} exactly once")
    return Canonical({"ranking": [order[p] for p in label.ranking]})


def _rating(label: Label, order: list[int], project: Project, k: int) -> Canonical:
    _only(label, {"ratings"}, "rating")
    ratings = label.ratings or {}
    if set(ratings) != set(project.aspects):
        raise LabelError(f"ratings must cover exactly the aspects {project.aspects}")
    stored: dict[str, list[int | None]] = {}
    for aspect, scores in ratings.items():
        if len(scores) != len(order):
            raise LabelError(f"aspect {aspect!r} needs one score per shown response")
        if not all(project.scale_min <= s <= project.scale_max for s in scores):
            raise LabelError(f"scores must lie in [{project.scale_min}, {project.scale_max}]")
        row: list[int | None] = [None] * k
        for position, score in enumerate(scores):
            row[order[position]] = score
        stored[aspect] = row
    return Canonical({"ratings": stored})


def _critique(label: Label, order: list[int]) -> Canonical:
    _only(label, {"target", "critique", "revision"}, "critique")
    if label.target is None or label.target >= len(order):
        raise LabelError("critique needs a 'target' position among the shown responses")
    if not label.critique:  # exported records require the text (prefloop.data.Critique)
        raise LabelError("critique needs 'critique' text; a 'revision' alone is not enough")
    return Canonical(
        {"target": order[label.target], "critique": label.critique, "revision": label.revision}
    )


def canonicalize(project: Project, label: Label, order: list[int], k: int) -> Canonical:
    """Validate ``label`` for the project's task and express it in stored response indices."""
    if len(set(order)) != len(order) or not all(0 <= i < k for i in order):
        raise LabelError(f"order must list distinct response indices in 0..{k - 1}")
    if project.task == "pairwise":
        result = _pairwise(label, order)
    elif project.task == "ranking":
        result = _ranking(label, order)
    elif project.task == "rating":
        result = _rating(label, order, project, k)
    else:
        result = _critique(label, order)
    if label.comment:
        result.label["comment"] = label.comment
    return result
