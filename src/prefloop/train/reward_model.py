"""Reward-model training with the Bradley–Terry loss on pairwise comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from prefloop.data.records import Comparison
from prefloop.models.packing import pack_pairs
from prefloop.models.reward import RewardModel
from prefloop.objectives.reward import bradley_terry_loss
from prefloop.train.caches import data_fingerprint
from prefloop.train.config import ConfigError, setting, validate
from prefloop.train.engine import Task, Trainable, TrainConfig, TrainResult, fit
from prefloop.train.sources import IndexSource


@dataclass
class RewardModelConfig:
    """Bradley–Terry reward model: fit σ(r(chosen) − r(rejected)) to the labels."""

    name: ClassVar[str] = "rm"
    kind: ClassVar[str] = "reward"
    use_margin: bool = setting(False, "Put each pair's margin inside the sigmoid.")
    label_smoothing: float = setting(0.0, "Assumed label flip rate ε.", low=0, high=0.5)
    use_strength: bool = setting(
        False, "Each pair's strength (missing = 1, tie = 0.5) is the soft target."
    )

    def __post_init__(self) -> None:
        validate(self, f"method {self.name!r}")


def reward_model_task(
    reward_model: RewardModel,
    comparisons: Sequence[Comparison],
    config: TrainConfig,
    method: RewardModelConfig,
    head_weights: torch.Tensor | None = None,
) -> Task:
    """Chosen and rejected go through the model in one forward pass, sharing their prompt.

    A model with K heads trains every head on the same batch; ``head_weights`` [N, K] weighs
    pair i in head k's loss (bootstrap counts give each head its own resample of the data).
    """
    if method.use_margin and any(c.margin is None for c in comparisons):
        raise ConfigError("method 'rm': use_margin needs a margin on every comparison")
    expected = (len(comparisons), reward_model.heads)
    if head_weights is not None and tuple(head_weights.shape) != expected:
        raise ValueError(
            f"head_weights must be [pairs, heads] = [{expected[0]}, {expected[1]}], "
            f"got {list(head_weights.shape)}"
        )

    rows = reward_model.tokenize([c.prompt for c in comparisons],
                                 [c.chosen for c in comparisons],
                                 [c.rejected for c in comparisons])  # fmt: skip

    def loss(indices: list[int]):
        pairs = [comparisons[i] for i in indices]
        batch = pack_pairs([rows[i] for i in indices], reward_model.tokenizer.pad_token_id)
        chosen, rejected = reward_model.pair_rewards(batch)  # the prompt computed once per pair
        per_pair = (len(pairs),) + (1,) * (chosen.dim() - 1)  # broadcast over heads
        margin = (
            torch.tensor([c.margin for c in pairs], device=chosen.device).view(per_pair)
            if method.use_margin
            else None
        )
        targets = [1.0 if c.strength is None else c.strength for c in pairs]
        strength = (
            torch.tensor(targets, device=chosen.device).view(per_pair)
            if method.use_strength
            else None
        )
        losses = bradley_terry_loss(chosen, rejected, margin=margin,
                                    label_smoothing=method.label_smoothing,
                                    strength=strength)  # fmt: skip
        if head_weights is None:
            total = losses.mean()
        else:
            weights = head_weights[indices].to(losses.device).reshape(losses.shape)
            total = (losses * weights).sum() / weights.sum().clamp_min(1.0)
        accuracy = (chosen > rejected).float().mean().item()
        return total, {"accuracy": accuracy, "reward_gap": (chosen - rejected).mean().item()}

    settings: dict[str, Any] = {"method": vars(method), "data": data_fingerprint(comparisons)}
    if head_weights is not None:
        settings["head_weights"] = data_fingerprint(head_weights.tolist())
    return Task(
        "reward model",
        IndexSource(len(comparisons), config.batch_size, config.seed),
        loss,
        [Trainable(reward_model)],
        reward_model.save_pretrained,
        settings,
    )


def train_reward_model(
    reward_model: RewardModel,
    comparisons: Sequence[Comparison],
    config: TrainConfig,
    out_dir: str | Path,
    method: RewardModelConfig | None = None,
    head_weights: torch.Tensor | None = None,
    **run: Any,
) -> TrainResult:
    """Train ``reward_model`` on ``comparisons``; ``run`` goes to :func:`fit`."""
    task = reward_model_task(reward_model, comparisons, config, method or RewardModelConfig(),
                             head_weights)  # fmt: skip
    return fit(task, config, out_dir, **run)
