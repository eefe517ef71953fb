"""General pairwise preference model P(y ≻ y' | x), not forced to be transitive.

A one-output sequence classifier f reads the prompt and both responses, ``a <sep> b``; the
preference is made antisymmetric by construction,

    P(a ≻ b | x) = σ(f(x, a, b) − f(x, b, a)),

so P(a ≻ b) + P(b ≻ a) = 1 exactly, while cycles (a ≻ b ≻ c ≻ a) remain representable — what
Nash-style methods need and a scalar reward model cannot give. Training
(``train/preference_model.py``) reuses the Bradley–Terry loss with f(x, chosen,
rejected) and f(x, rejected, chosen) in place of rewards.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from prefloop.data.records import Prompt
from prefloop.models.reward import RewardModel


class PairwisePreferenceModel:
    """P(a ≻ b | x) from a one-output classifier over ``a <sep> b`` (see module docstring)."""

    def __init__(self, scorer: RewardModel):
        self.scorer = scorer
        self.separator = scorer.tokenizer.eos_token

    @classmethod
    def from_pretrained(cls, path: str | Path, seed: int = 0) -> PairwisePreferenceModel:
        return cls(RewardModel.from_pretrained(path, seed=seed))

    def save_pretrained(self, path: str | Path) -> None:
        self.scorer.save_pretrained(path)

    def logits(
        self, prompts: Sequence[Prompt], first: Sequence[str], second: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """f(x, a, b) and f(x, b, a), with gradients, in one forward pass."""
        ab = [f"{a} {self.separator} {b}" for a, b in zip(first, second)]
        ba = [f"{b} {self.separator} {a}" for a, b in zip(first, second)]
        scores = self.scorer.forward(self.scorer.encode(list(prompts) * 2, ab + ba))
        return scores.chunk(2)

    @torch.no_grad()
    def probability(
        self, prompts: Sequence[Prompt], first: Sequence[str], second: Sequence[str]
    ) -> torch.Tensor:
        was_training = self.scorer.model.training
        self.scorer.model.eval()
        forward, backward = self.logits(prompts, first, second)
        self.scorer.model.train(was_training)
        return torch.sigmoid(forward - backward).cpu()
