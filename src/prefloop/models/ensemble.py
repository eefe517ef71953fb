"""Reward-model ensembles: K reward models scored together and combined (mean, WCO, UWO).

Members differ by seed (value-head init and data order) and optionally by a bootstrap resample
of the training pairs. They are either independent models (K backbones, K times the training
and scoring compute) or K heads on one shared backbone (``shared_backbone=True``: one model's
compute; the heads differ only by their init and bootstrap weights). Each head's scores can be
standardised with statistics taken on a reference set of responses, so that heads with
different offsets and scales are comparable before their variance (UWO) or minimum (WCO) is
taken.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from prefloop.data.records import Comparison, Prompt
from prefloop.models.reward import RewardModel
from prefloop.objectives.reward import combine_rewards
from prefloop.train.engine import TrainConfig
from prefloop.train.reward_model import train_reward_model


def _head_rows(scores: torch.Tensor) -> torch.Tensor:
    """A model's scores as one row per head: [B] → [1, B], [B, K] → [K, B]."""
    return scores[None] if scores.dim() == 1 else scores.T


class RewardEnsemble:
    """K reward heads; ``member_scores`` is [K, B], ``score`` combines them into [B].

    The heads are the outputs of ``models``: one each for single-head reward models, K for a
    K-head model on a shared backbone.
    """

    def __init__(self, models: Sequence[RewardModel]):
        if not models:
            raise ValueError("an ensemble needs at least one member")
        self.models = list(models)
        size = sum(getattr(m, "heads", 1) for m in self.models)
        self.offsets = torch.zeros(size)
        self.scales = torch.ones(size)

    def __len__(self) -> int:
        return len(self.offsets)

    def raw_scores(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        """Unnormalised rewards of every head, [K, B]."""
        return torch.cat([_head_rows(m.score(prompts, responses)) for m in self.models])

    def normalize_on(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        """Standardise each member to mean 0, std 1 on these (reference) responses.

        Returns the standardised [K, B] scores of the reference set (scored once).
        """
        raw = self.raw_scores(prompts, responses)
        self.offsets = raw.mean(dim=1)
        self.scales = raw.std(dim=1).clamp_min(1e-6)
        return self.standardize(raw)

    def standardize(self, raw: torch.Tensor) -> torch.Tensor:
        """Apply the stored per-member normalisation to raw [K, B] scores."""
        return (raw - self.offsets[:, None]) / self.scales[:, None]

    def member_scores(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        return self.standardize(self.raw_scores(prompts, responses))

    def score(
        self,
        prompts: Sequence[Prompt],
        responses: Sequence[str],
        method: str = "mean",
        uwo_lambda: float = 0.5,
    ) -> torch.Tensor:
        return combine_rewards(self.member_scores(prompts, responses), method, uwo_lambda)


def bootstrap_sample(comparisons: Sequence[Comparison], seed: int) -> list[Comparison]:
    """A resample with replacement of the same size (bagging)."""
    rng = random.Random(seed)
    return [comparisons[rng.randrange(len(comparisons))] for _ in comparisons]


def train_ensemble(
    backbone: str | Path,
    comparisons: Sequence[Comparison],
    config: TrainConfig,
    out_dir: str | Path,
    size: int,
    bootstrap: bool = False,
    show_progress: bool = False,
    shared_backbone: bool = False,
    **train_options,
) -> RewardEnsemble:
    """Train ``size`` reward models from ``backbone`` on ``comparisons`` with seeds seed..seed+K-1.

    ``bootstrap`` gives each member its own resample of the pairs; extra keyword arguments go to
    ``train_reward_model`` (margin, label smoothing). Members are saved in ``out_dir/member-k``;
    with ``shared_backbone`` one K-head model is trained instead (bootstrap as per-head pair
    counts) and saved in ``out_dir/shared``.
    """
    if shared_backbone:
        model = RewardModel.from_pretrained(backbone, seed=config.seed, heads=size)
        weights = torch.ones(len(comparisons), size)
        if bootstrap:
            indices = list(range(len(comparisons)))
            for k in range(size):
                counts = torch.bincount(
                    torch.tensor(bootstrap_sample(indices, config.seed + k)),
                    minlength=len(comparisons),
                )
                weights[:, k] = counts.float()
        shared_dir = Path(out_dir) / "shared"
        train_reward_model(model, list(comparisons), config, shared_dir,
                           show_progress=show_progress, head_weights=weights,
                           **train_options)  # fmt: skip
        model.save_pretrained(shared_dir)
        return RewardEnsemble([model])
    members = []
    for k in range(size):
        seed = config.seed + k
        data = bootstrap_sample(comparisons, seed) if bootstrap else list(comparisons)
        member = RewardModel.from_pretrained(backbone, seed=seed)
        member_dir = Path(out_dir) / f"member-{k}"
        train_reward_model(
            member,
            data,
            replace(config, seed=seed),
            member_dir,
            show_progress=show_progress,
            **train_options,
        )
        member.save_pretrained(member_dir)
        members.append(member)
    return RewardEnsemble(members)
