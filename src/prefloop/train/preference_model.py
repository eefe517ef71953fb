"""Training the general pairwise preference model: maximise log P(chosen ≻ rejected | x)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from prefloop.data.records import Comparison
from prefloop.models.preference_model import PairwisePreferenceModel
from prefloop.objectives import bradley_terry_loss
from prefloop.train.caches import data_fingerprint
from prefloop.train.engine import Task, Trainable, TrainConfig, TrainResult, fit
from prefloop.train.sources import IndexSource


@dataclass
class PreferenceModelConfig:
    """P(a ≻ b | x) = σ(f(x, a, b) − f(x, b, a)); a record's strength is the soft target."""

    name: ClassVar[str] = "preference-model"
    kind: ClassVar[str] = "reward"


def preference_model_task(
    model: PairwisePreferenceModel, comparisons: Sequence[Comparison], config: TrainConfig
) -> Task:
    def loss(indices: list[int]):
        pairs = [comparisons[i] for i in indices]
        forward, backward = model.logits([c.prompt for c in pairs], [c.chosen for c in pairs],
                                         [c.rejected for c in pairs])  # fmt: skip
        strength = torch.tensor([1.0 if c.strength is None else c.strength for c in pairs],
                                device=forward.device)  # fmt: skip
        value = bradley_terry_loss(forward, backward, strength=strength).mean()
        return value, {"accuracy": (forward > backward).float().mean().item()}

    return Task(
        "preference model",
        IndexSource(len(comparisons), config.batch_size, config.seed),
        loss,
        [Trainable(model.scorer)],
        model.save_pretrained,
        {"data": data_fingerprint(comparisons)},
    )


def train_preference_model(
    model: PairwisePreferenceModel,
    comparisons: Sequence[Comparison],
    config: TrainConfig,
    out_dir: str | Path,
    **run: Any,
) -> TrainResult:
    """Fit ``model`` on ``comparisons``; ``run`` goes to :func:`fit`."""
    return fit(preference_model_task(model, comparisons, config), config, out_dir, **run)
