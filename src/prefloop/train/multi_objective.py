"""Training the multi-objective reward model: regress each aspect output on its rating."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from prefloop.data.records import Prompt, Rating
from prefloop.models.multi_objective import MultiObjectiveRewardModel
from prefloop.objectives import regression_loss
from prefloop.train.caches import data_fingerprint
from prefloop.train.config import ConfigError
from prefloop.train.engine import Task, Trainable, TrainConfig, TrainResult, fit
from prefloop.train.sources import IndexSource


@dataclass
class MultiObjectiveConfig:
    """Mean squared error over aspects (DPA's regression reward model); no options."""

    name: ClassVar[str] = "multi-objective-rm"
    kind: ClassVar[str] = "reward"


def aspect_examples(
    ratings: Sequence[Rating], aspects: Sequence[str]
) -> list[tuple[Prompt, str, list[float]]]:
    """(prompt, response, [k] targets) per rated response, from ``Rating.aspect_scores``."""
    rows = []
    for rating in ratings:
        if rating.aspect_scores is None:
            raise ConfigError("multi-objective training needs aspect_scores on every rating")
        for i, response in enumerate(rating.responses):
            rows.append((rating.prompt, response, [rating.aspect_scores[a][i] for a in aspects]))
    return rows


def multi_objective_task(
    model: MultiObjectiveRewardModel, ratings: Sequence[Rating], config: TrainConfig
) -> Task:
    rows = aspect_examples(ratings, model.aspects)

    def loss(indices: list[int]):
        batch = [rows[i] for i in indices]
        predicted = model.forward(model.encode([r[0] for r in batch], [r[1] for r in batch]))
        target = torch.tensor([r[2] for r in batch], device=predicted.device)
        value = regression_loss(predicted, target)
        return value, {"mse": value.item()}

    return Task(
        "multi-objective RM",
        IndexSource(len(rows), config.batch_size, config.seed),
        loss,
        [Trainable(model)],
        model.save_pretrained,
        {"aspects": list(model.aspects), "data": data_fingerprint(rows)},
    )


def train_multi_objective(
    model: MultiObjectiveRewardModel,
    ratings: Sequence[Rating],
    config: TrainConfig,
    out_dir: str | Path,
    **run: Any,
) -> TrainResult:
    """Fit every aspect output of ``model``; ``run`` goes to :func:`fit`."""
    return fit(multi_objective_task(model, ratings, config), config, out_dir, **run)
