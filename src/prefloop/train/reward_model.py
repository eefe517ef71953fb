"""Reward-model training with the Bradley–Terry loss on pairwise comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from prefloop.data.records import Comparison
from prefloop.models.reward import RewardModel
from prefloop.objectives.reward import bradley_terry_loss
from prefloop.train.engine import TrainConfig, TrainResult, run_training


def train_reward_model(
    reward_model: RewardModel,
    comparisons: Sequence[Comparison],
    config: TrainConfig,
    out_dir: str | Path,
    use_margin: bool = False,
    label_smoothing: float = 0.0,
    resume: bool = False,
    show_progress: bool = True,
    use_strength: bool = False,
    head_weights: torch.Tensor | None = None,
) -> TrainResult:
    """Fit r so that sigmoid(r(chosen) − r(rejected)) matches the labels.

    Chosen and rejected go through the model in one forward pass. ``use_margin`` puts each
    record's ``margin`` inside the sigmoid; ``label_smoothing`` is the flip rate ε;
    ``use_strength`` makes each record's ``strength`` (1 when missing, 0.5 for a tie) the soft
    target, as the robust treatment and tie-labelling teachers need.

    A model with K heads trains every head on the same batch; ``head_weights`` [N, K] weighs
    pair i in head k's loss (bootstrap counts give each head its own resample of the data).
    """
    if use_margin and any(c.margin is None for c in comparisons):
        raise ValueError("use_margin needs a margin on every comparison")
    if head_weights is not None and tuple(head_weights.shape) != (
        len(comparisons),
        reward_model.heads,
    ):
        raise ValueError(
            f"head_weights must be [pairs, heads] = [{len(comparisons)}, {reward_model.heads}], "
            f"got {list(head_weights.shape)}"
        )

    def loss_fn(indices: Sequence[int]):
        pairs = [comparisons[i] for i in indices]
        prompts = [c.prompt for c in pairs]
        rewards = reward_model.forward(
            reward_model.encode(
                prompts + prompts, [c.chosen for c in pairs] + [c.rejected for c in pairs]
            )
        )
        chosen, rejected = rewards.chunk(2)
        per_pair = (len(pairs),) + (1,) * (chosen.dim() - 1)  # broadcast over heads
        margin = (
            torch.tensor([c.margin for c in pairs], device=chosen.device).view(per_pair)
            if use_margin
            else None
        )
        targets = [1.0 if c.strength is None else c.strength for c in pairs]
        strength = (
            torch.tensor(targets, device=chosen.device).view(per_pair) if use_strength else None
        )
        loss = bradley_terry_loss(
            chosen, rejected, margin=margin, label_smoothing=label_smoothing, strength=strength
        )
        if head_weights is None:
            loss = loss.mean()
        else:
            weights = head_weights[list(indices)].to(loss.device).reshape(loss.shape)
            loss = (loss * weights).sum() / weights.sum().clamp_min(1.0)
        accuracy = (chosen > rejected).float().mean().item()
        return loss, {"accuracy": accuracy, "reward_gap": (chosen - rejected).mean().item()}

    return run_training(
        reward_model.model,
        len(comparisons),
        loss_fn,
        config,
        out_dir,
        reward_model.save_pretrained,
        resume=resume,
        description="reward model",
        show_progress=show_progress,
    )
