"""Reward-model ensembles: K reward models scored together and combined (mean, WCO, UWO).

Members differ by seed (value-head init and data order) and optionally by a bootstrap resample
of the training pairs. Each member's scores can be standardised with statistics taken on a
reference set of responses, so that members with different offsets and scales are comparable
before their variance (UWO) or minimum (WCO) is taken.
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


class RewardEnsemble:
    """K reward models; ``member_scores`` is [K, B], ``score`` combines them into [B]."""

    def __init__(self, members: Sequence[RewardModel]):
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = list(members)
        self.offsets = torch.zeros(len(self.members))
        self.scales = torch.ones(len(self.members))

    def __len__(self) -> int:
        return len(self.members)

    def raw_scores(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> torch.Tensor:
        """Unnormalised rewards of every member, [K, B]."""
        return torch.stack([m.score(prompts, responses) for m in self.members])

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
    **train_options,
) -> RewardEnsemble:
    """Train ``size`` reward models from ``backbone`` on ``comparisons`` with seeds seed..seed+K-1.

    ``bootstrap`` gives each member its own resample of the pairs; extra keyword arguments go to
    ``train_reward_model`` (margin, label smoothing). Members are saved in ``out_dir/member-k``.
    """
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
