"""Reward-model ensembles: K reward models scored together and combined (mean, WCO, UWO).

Members are either independent models (K backbones, K times the training and scoring compute)
or K heads on one shared backbone (one model's compute; the heads differ only by their init and
bootstrap weights); ``train/ensemble.py`` trains both. Each head's scores can be
standardised with statistics taken on a reference set of responses, so that heads with
different offsets and scales are comparable before their variance (UWO) or minimum (WCO) is
taken.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from prefloop.data.records import Prompt
from prefloop.models.reward import RewardModel
from prefloop.objectives.reward import combine_rewards


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
