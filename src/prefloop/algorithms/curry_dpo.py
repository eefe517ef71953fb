"""Curry-DPO (Pattnaik et al. 2024): pairs ordered easy → hard, trained in stages.

From several rated responses per prompt, the best is paired with every lower-rated one; a
large score gap is an easy pair. Stage ``k`` holds each prompt's ``k``-th easiest pair, and the
policy after stage ``k`` becomes the reference of stage ``k + 1``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from prefloop.data.pairs import ratings_to_pairs
from prefloop.data.records import Comparison, Rating
from prefloop.models.policy import Policy
from prefloop.train.engine import TrainConfig, TrainResult
from prefloop.train.preference import train_preference


def stages_from_ratings(ratings: Sequence[Rating]) -> list[list[Comparison]]:
    """Stage ``k``: (best, response with the ``k``-th largest score gap) of every prompt."""
    stages: list[list[Comparison]] = []
    for rating in ratings:
        best = max(range(len(rating.scores)), key=rating.scores.__getitem__)
        pairs = [p for p in ratings_to_pairs([rating], "all_pairs")
                 if p.metadata["chosen_index"] == best]  # fmt: skip
        for k, pair in enumerate(sorted(pairs, key=lambda p: -p.margin)):
            if k == len(stages):
                stages.append([])
            stages[k].append(pair)
    return stages


def stages_by_difficulty(
    comparisons: Sequence[Comparison], num_stages: int, easiness: Callable[[Comparison], float]
) -> list[list[Comparison]]:
    """Split pairs into ``num_stages`` equal stages, easiest (largest ``easiness``) first."""
    if num_stages < 1:
        raise ValueError(f"num_stages must be >= 1, got {num_stages}")
    ordered = sorted(comparisons, key=easiness, reverse=True)
    size = -(-len(ordered) // num_stages)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def train_curry_dpo(
    policy: Policy,
    stages: Sequence[Sequence[Comparison]],
    config: TrainConfig,
    out_dir: str | Path,
    objective: str = "dpo",
    beta: float | None = 0.1,
    refresh_reference: bool = True,
    show_progress: bool = True,
    resume: bool = False,
) -> list[TrainResult]:
    """Train ``objective`` on each stage in turn, in ``out_dir/stage-K``.

    With ``refresh_reference`` each stage's reference is the policy at the stage's start (the
    paper's iterative variant); otherwise it stays the initial policy. ``resume`` continues
    every stage from its last checkpoint (finished stages restore their final weights).
    """
    frozen = None if refresh_reference else copy.deepcopy(policy)
    results = []
    for k, stage in enumerate(stages, start=1):
        if not stage:
            continue
        results.append(
            train_preference(
                policy,
                stage,
                replace(config, seed=config.seed + k),
                Path(out_dir, f"stage-{k}"),
                objective,
                beta,
                reference=frozen,
                resume=resume,
                show_progress=show_progress,
            )
        )
    return results
