"""Judge a reward model against the gold reward and against held-out labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from prefloop.data.records import Comparison
from prefloop.models.reward import RewardModel
from prefloop.worlds.base import World


def pairwise_agreement(
    scores_a: np.ndarray, scores_b: np.ndarray, truth_a: np.ndarray, truth_b: np.ndarray
) -> float:
    """Share of pairs ordered as the truth orders them; pairs the truth ties are left out."""
    decided = truth_a != truth_b
    if not decided.any():
        return float("nan")
    agree = (scores_a > scores_b) == (truth_a > truth_b)
    return float(agree[decided].mean())


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    rank = lambda v: np.argsort(np.argsort(v, kind="stable"), kind="stable")  # noqa: E731
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def evaluate_reward_model(
    reward_model: RewardModel, world: World, heldout: Sequence[Comparison]
) -> dict[str, float]:
    """Held-out accuracy against the gold order and the labels, and correlation with gold.

    ``heldout_accuracy`` is the share of held-out pairs the model orders as the gold reward does;
    ``label_accuracy`` compares with the (possibly noisy) annotator labels instead.
    """
    prompts = [c.prompt for c in heldout]
    chosen = reward_model.score(prompts, [c.chosen for c in heldout]).numpy()
    rejected = reward_model.score(prompts, [c.rejected for c in heldout]).numpy()
    gold_chosen = np.array([world.gold_reward(c.prompt, c.chosen) for c in heldout])
    gold_rejected = np.array([world.gold_reward(c.prompt, c.rejected) for c in heldout])
    scores = np.concatenate([chosen, rejected])
    gold = np.concatenate([gold_chosen, gold_rejected])
    return {
        "heldout_accuracy": pairwise_agreement(chosen, rejected, gold_chosen, gold_rejected),
        "label_accuracy": float(np.mean(chosen > rejected)),
        "gold_spearman": spearman(scores, gold),
        "gold_pearson": float(np.corrcoef(scores, gold)[0, 1]),
        "pairs": len(heldout),
    }
