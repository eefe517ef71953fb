"""Pluggable selection rules and the :func:`select_next` entry point.

A rule maps ``(candidates, rng, **context)`` to one score per candidate (higher = ask first,
``-inf`` = never). Selection starts with a uniform warm-up batch, then follows the rule; ties
are broken uniformly at random so that concurrent callers spread over equal candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from prefloop.query.disagreement import ensemble_disagreement
from prefloop.query.dueling import dueling_ucb_scores

T = TypeVar("T")
Rule = Callable[..., np.ndarray]
RULES: dict[str, Rule] = {}


def register_rule(name: str) -> Callable[[Rule], Rule]:
    """Register ``fn(candidates, rng, **context) -> scores`` under ``name``."""

    def add(fn: Rule) -> Rule:
        RULES[name] = fn
        return fn

    return add


@register_rule("random")
def _random(candidates: Sequence[Any], rng: np.random.Generator, **_: Any) -> np.ndarray:
    return np.zeros(len(candidates))


@register_rule("disagreement")
def _disagreement(
    candidates: Sequence[Any], rng: np.random.Generator, *, rewards: Any, **_: Any
) -> np.ndarray:
    return ensemble_disagreement(rewards)


@register_rule("dueling_ucb")
def _dueling(
    candidates: Sequence[tuple[int, int]], rng: np.random.Generator, **context: Any
) -> np.ndarray:
    return dueling_ucb_scores(candidates, **context)


def rule_scores(
    candidates: Sequence[Any], rule: str, rng: np.random.Generator | None = None, **context: Any
) -> np.ndarray:
    """Scores of ``candidates`` under a registered rule (see the rule for its ``context``)."""
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; known: {sorted(RULES)}")
    scores = np.asarray(RULES[rule](candidates, rng or np.random.default_rng(), **context))
    if scores.shape != (len(candidates),):
        raise ValueError(f"rule {rule!r} returned {scores.shape} scores for {len(candidates)}")
    return scores


def rank_candidates(
    candidates: Sequence[Any],
    rule: str = "random",
    *,
    labelled: int = 0,
    warmup: int = 0,
    rng: np.random.Generator | None = None,
    **context: Any,
) -> list[int]:
    """Indices of eligible candidates, best first (uniform order while ``labelled < warmup``)."""
    rng = rng or np.random.default_rng()
    scores = (
        np.zeros(len(candidates))
        if labelled < warmup
        else rule_scores(candidates, rule, rng, **context)
    )
    order = np.lexsort((rng.random(len(candidates)), -scores))
    return [int(i) for i in order if scores[i] > -np.inf]


def select_next(
    candidates: Sequence[T],
    rule: str = "random",
    *,
    labelled: int = 0,
    warmup: int = 0,
    rng: np.random.Generator | None = None,
    **context: Any,
) -> T | None:
    """The candidate to ask about next, or ``None`` if no candidate is eligible.

    ``labelled`` is how many labels exist so far; until it reaches ``warmup`` the choice is
    uniform. Rules: ``random``; ``disagreement`` (``rewards=[models, candidates]``);
    ``dueling_ucb`` (candidates are arm pairs; ``utilities``, ``gradients``, optional
    ``history``, ``groups``, ``nu``, ``lam``); or any rule added with :func:`register_rule`.
    """
    order = rank_candidates(candidates, rule, labelled=labelled, warmup=warmup, rng=rng, **context)
    return candidates[order[0]] if order else None
