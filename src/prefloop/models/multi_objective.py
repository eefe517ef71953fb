"""Multi-objective reward model and Directional Preference Alignment (DPA) directions.

One output per named aspect (UltraFeedback-style aspect ratings, or a lab world's gold aspects),
trained by regression, min E ‖r̂(x, y) − r(x, y)‖² (Wang et al., DPA; see
``train/multi_objective.py``). A user states a
direction v (‖v‖ = 1) and the scalar reward is vᵀ r̂(x, y); with two aspects DPA writes
v = (cos θ, sin θ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from prefloop.data.records import Prompt
from prefloop.models.policy import default_device
from prefloop.models.pretrained import check_model_dir
from prefloop.models.reward import RewardModel


class MultiObjectiveRewardModel(RewardModel):
    """r̂(x, y) ∈ R^k, one output per aspect; ``forward``/``score`` return [B, k]."""

    def __init__(self, model, tokenizer, aspects: Sequence[str]):
        super().__init__(model, tokenizer)
        self.aspects = tuple(aspects)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, aspects: Sequence[str] | None = None, seed: int = 0, **_
    ) -> MultiObjectiveRewardModel:
        """Load a saved model (aspects from its config) or start one from a causal LM."""
        path = check_model_dir(path)
        torch.manual_seed(seed)
        saved = AutoModelForSequenceClassification.from_pretrained(path).config.id2label
        aspects = list(aspects or [saved[i] for i in range(len(saved))])
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(aspects), id2label=dict(enumerate(aspects)),
            label2id={a: i for i, a in enumerate(aspects)},
        )  # fmt: skip
        model.to(default_device())
        return cls(model, AutoTokenizer.from_pretrained(path), aspects)

    def forward(self, batch) -> torch.Tensor:
        batch = batch.to(self.device)
        return self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits

    def directional_score(
        self, prompts: Sequence[Prompt], responses: Sequence[str], direction: Sequence[float]
    ) -> torch.Tensor:
        return directional_reward(self.score(prompts, responses), direction)


def unit_direction(weights: Sequence[float]) -> torch.Tensor:
    v = torch.as_tensor(weights, dtype=torch.float32)
    norm = v.norm()
    if norm == 0:
        raise ValueError("a direction needs at least one non-zero weight")
    return v / norm


def dpa_direction(angle_degrees: float) -> torch.Tensor:
    """DPA's two-aspect direction (cos θ, sin θ)."""
    theta = math.radians(angle_degrees)
    return torch.tensor([math.cos(theta), math.sin(theta)])


def directional_reward(aspect_rewards: torch.Tensor, direction: Sequence[float]) -> torch.Tensor:
    """vᵀ r̂ with v normalised to unit length; ``aspect_rewards`` is [B, k]."""
    return aspect_rewards @ unit_direction(direction).to(aspect_rewards)
