"""Curry-DPO (Pattnaik et al. 2024): pairs ordered easy → hard, trained in stages.

From several rated responses per prompt, the best is paired with every lower-rated one; a
large score gap is an easy pair. Stage ``k`` holds each prompt's ``k``-th easiest pair, and the
policy after stage ``k`` becomes the reference of stage ``k + 1``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from prefloop.data.pairs import ratings_to_pairs
from prefloop.data.records import Comparison, Rating
from prefloop.models.policy import Policy
from prefloop.objectives import objective_names
from prefloop.train.config import setting, validate
from prefloop.train.engine import TrainConfig, TrainResult
from prefloop.train.preference import method_config, train_preference


@dataclass
class CurryDPOConfig:
    """Curry-DPO: stages of pairs from easy to hard, each a run of a pairwise objective."""

    name: ClassVar[str] = "curry-dpo"
    kind: ClassVar[str] = "policy"
    objective: str = setting("dpo", "Pairwise objective of every stage.",
                             choices=tuple(objective_names()))  # fmt: skip
    beta: float | None = setting(None, "β of the objective (unset: its default).", low=0,
                                 low_open=True)  # fmt: skip
    stages: int = setting(3, "Stages, when training on comparisons (ratings set their own).",
                          low=1)  # fmt: skip
    refresh_reference: bool = setting(True, "Each stage's reference is the policy at its start.")
    use_margin: bool = setting(
        False, "Order comparisons by margin (default: by strength) when forming stages."
    )

    def __post_init__(self) -> None:
        validate(self, f"method {self.name!r}")

    def stage_method(self):
        """The pairwise method every stage trains with."""
        options = {} if self.beta is None else {"beta": self.beta}
        return method_config(self.objective, **options)


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
    method: CurryDPOConfig | None = None,
    **run: Any,
) -> list[TrainResult]:
    """Train the stage objective on each stage in turn, in ``out_dir/stage-K``.

    With ``refresh_reference`` each stage's reference is the policy at the stage's start (the
    paper's iterative variant); otherwise it stays the initial policy. ``run`` goes to every
    stage's :func:`fit`: with ``resume`` each stage continues from its last checkpoint
    (finished stages restore their final weights).
    """
    method = method or CurryDPOConfig()
    frozen = None if method.refresh_reference else copy.deepcopy(policy)
    results = []
    for k, stage in enumerate(stages, start=1):
        if stage:
            results.append(train_preference(policy, stage, replace(config, seed=config.seed + k),
                                            Path(out_dir, f"stage-{k}"), method.stage_method(),
                                            reference=frozen, **run))  # fmt: skip
    return results
