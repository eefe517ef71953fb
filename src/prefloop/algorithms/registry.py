"""Every objective ``prefloop train --objective NAME`` reaches, and the records each one takes.

Pairwise objectives (``pairwise_loss`` names) train on comparisons; ``kto`` on unpaired labels
(comparisons are split into chosen = desirable, rejected = undesirable); ``curry-dpo`` on
ratings (or comparisons ordered by margin / strength); ``c3po`` on in-scope comparisons plus
the baseline's own answers outside the scope (``keep_data``: a file of unpaired records whose
``metadata.scope`` is ``near`` or ``out``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefloop.algorithms.c3po import C3POData, train_c3po
from prefloop.algorithms.curry_dpo import stages_by_difficulty, stages_from_ratings, train_curry_dpo
from prefloop.data.io import load_records
from prefloop.data.pairs import comparisons_to_unpaired
from prefloop.data.records import Comparison, FeedbackRecord, Rating, Unpaired
from prefloop.models.policy import Policy
from prefloop.objectives import objective_names
from prefloop.train.engine import TrainConfig, TrainResult
from prefloop.train.preference import train_preference
from prefloop.train.unpaired import train_kto

RECIPES = ("kto", "curry-dpo", "c3po")


class RecordKindError(ValueError):
    """The records given are not the kind the objective trains on."""


def trainable_objectives() -> list[str]:
    """Pairwise objective names followed by the recipes."""
    return objective_names() + list(RECIPES)


def _only(records: Sequence[FeedbackRecord], kinds: tuple[type, ...], objective: str) -> list:
    if not records or not all(isinstance(r, kinds) for r in records):
        names = " or ".join(k.__name__ for k in kinds)
        raise RecordKindError(f"objective {objective!r} needs {names} records")
    return list(records)


def train_objective(
    policy: Policy,
    records: Sequence[FeedbackRecord],
    config: TrainConfig,
    out_dir: str | Path,
    objective: str = "dpo",
    beta: float | None = None,
    options: dict[str, Any] | None = None,
    use_margin: bool = False,
    resume: bool = False,
    show_progress: bool = True,
) -> TrainResult:
    """Train ``policy`` with ``objective`` on ``records``; returns the (last) training result.

    Recipe options: kto ``desirable_weight``, ``undesirable_weight``; curry-dpo ``stages``
    (default 3, for comparisons), ``refresh_reference`` (default true), ``objective`` (default
    dpo); c3po ``keep_data`` (path), ``sigma_soft`` (0.2), ``sigma_hard`` (0.1).
    """
    options = dict(options or {})
    if objective == "kto":
        data = _only(records, (Comparison, Unpaired), objective)
        examples = [r for r in data if isinstance(r, Unpaired)]
        examples += comparisons_to_unpaired(r for r in data if isinstance(r, Comparison))
        return train_kto(policy, examples, config, out_dir, beta, resume=resume,
                         show_progress=show_progress, **options)  # fmt: skip
    if objective == "curry-dpo":
        data = _only(records, (Rating, Comparison), objective)
        if isinstance(data[0], Rating):
            stages = stages_from_ratings(data)
        else:
            key = "margin" if use_margin else "strength"
            stages = stages_by_difficulty(data, int(options.pop("stages", 3)),
                                          lambda c: getattr(c, key) or 0.0)  # fmt: skip
        return train_curry_dpo(
            policy, stages, config, out_dir, options.pop("objective", "dpo"), beta,
            bool(options.pop("refresh_reference", True)), show_progress, resume,
        )[-1]  # fmt: skip
    if objective == "c3po":
        pairs = _only(records, (Comparison,), objective)
        keep = _only(load_records(options.pop("keep_data")), (Unpaired,), "c3po keep_data")
        data = C3POData(
            pairs,
            [(r.prompt, r.completion) for r in keep if r.metadata.get("scope") == "near"],
            [(r.prompt, r.completion) for r in keep if r.metadata.get("scope", "out") == "out"],
        )
        return train_c3po(policy, data, config, out_dir, 0.1 if beta is None else beta,
                          show_progress=show_progress, resume=resume, **options)  # fmt: skip
    pairs = _only(records, (Comparison,), objective)
    return train_preference(policy, pairs, config, out_dir, objective, beta, None, use_margin,
                            options, resume, show_progress)  # fmt: skip
