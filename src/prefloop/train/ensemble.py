"""Training reward-model ensembles: K independent members, or K heads on one backbone.

Members differ by seed (value-head init and data order) and optionally by a bootstrap resample
of the training pairs; with a shared backbone the bootstrap becomes per-head pair counts.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import torch

from prefloop.data.records import Comparison
from prefloop.models.ensemble import RewardEnsemble
from prefloop.models.reward import RewardModel
from prefloop.train.config import setting
from prefloop.train.engine import TrainConfig, TrainResult
from prefloop.train.reward_model import RewardModelConfig, train_reward_model

T = TypeVar("T")


@dataclass
class EnsembleConfig(RewardModelConfig):
    """K Bradley–Terry reward models, combined at scoring time (mean, WCO, UWO)."""

    name = "rm-ensemble"
    size: int = setting(3, "Members (or heads with a shared backbone).", low=1)
    bootstrap: bool = setting(False, "Give each member its own resample of the pairs.")
    shared_backbone: bool = setting(False, "K heads on one backbone instead of K models.")

    def member(self) -> RewardModelConfig:
        """The settings each member trains with."""
        return RewardModelConfig(**{f.name: getattr(self, f.name)
                                    for f in fields(RewardModelConfig)})  # fmt: skip


def bootstrap_sample(items: Sequence[T], seed: int) -> list[T]:
    """A resample with replacement of the same size (bagging)."""
    rng = random.Random(seed)
    return [items[rng.randrange(len(items))] for _ in items]


def train_ensemble(
    backbone: str | Path,
    comparisons: Sequence[Comparison],
    config: TrainConfig,
    out_dir: str | Path,
    method: EnsembleConfig | None = None,
    **run: Any,
) -> tuple[RewardEnsemble, list[TrainResult]]:
    """Train ``method.size`` reward models from ``backbone`` with seeds seed..seed+K-1.

    Members are saved in ``out_dir/member-k``; with ``shared_backbone`` one K-head model is
    trained instead and saved in ``out_dir/shared``. ``run`` goes to :func:`fit`. Returns the
    ensemble and each training run's result.
    """
    method = method or EnsembleConfig()
    if method.shared_backbone:
        model = RewardModel.from_pretrained(backbone, seed=config.seed, heads=method.size)
        weights = torch.ones(len(comparisons), method.size)
        if method.bootstrap:
            indices = list(range(len(comparisons)))
            for k in range(method.size):
                counts = torch.bincount(torch.tensor(bootstrap_sample(indices, config.seed + k)),
                                        minlength=len(comparisons))  # fmt: skip
                weights[:, k] = counts.float()
        result = train_reward_model(model, list(comparisons), config, Path(out_dir) / "shared",
                                    method.member(), weights, **run)  # fmt: skip
        return RewardEnsemble([model]), [result]
    members, results = [], []
    for k in range(method.size):
        seed = config.seed + k
        data = bootstrap_sample(comparisons, seed) if method.bootstrap else list(comparisons)
        member = RewardModel.from_pretrained(backbone, seed=seed)
        results.append(train_reward_model(member, data, replace(config, seed=seed),
                                          Path(out_dir) / f"member-{k}", method.member(),
                                          **run))  # fmt: skip
        members.append(member)
    return RewardEnsemble(members), results
