"""Judge a policy on a world: true gold reward, KL from the reference, win rate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prefloop.models.policy import Policy
from prefloop.worlds.base import World


@dataclass
class Samples:
    """``num_samples`` responses per prompt, flattened prompt-major."""

    prompts: list[str]
    responses: list[str]

    @classmethod
    def draw(
        cls,
        policy: Policy,
        prompts: Sequence[str],
        num_samples: int,
        seed: int,
        max_new_tokens: int = 64,
    ):
        generated = policy.generate(
            prompts, num_samples=num_samples, seed=seed, max_new_tokens=max_new_tokens
        )
        flat_prompts = [p for p in prompts for _ in range(num_samples)]
        return cls(flat_prompts, [r for group in generated for r in group])


@dataclass
class PolicyEvaluation:
    gold_reward: float
    aspects: dict[str, float]
    kl: float
    kl_per_prompt: list[float]
    win_rate_vs_reference: float
    samples: Samples = field(repr=False)

    def to_dict(self) -> dict:
        return {
            "gold_reward": self.gold_reward,
            "aspects": self.aspects,
            "kl": self.kl,
            "kl_per_prompt": self.kl_per_prompt,
            "win_rate_vs_reference": self.win_rate_vs_reference,
        }


def gold_scores(world: World, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    return np.array([world.gold_reward(p, r) for p, r in zip(prompts, responses)])


def win_rate(scores: np.ndarray, baseline: np.ndarray) -> float:
    """Share of paired comparisons won, ties counting one half."""
    return float(np.mean((scores > baseline) + 0.5 * (scores == baseline)))


def evaluate_policy(
    policy: Policy,
    world: World,
    prompts: Sequence[str],
    reference: Policy,
    reference_samples: Samples | None = None,
    num_samples: int = 4,
    seed: int = 0,
    max_new_tokens: int = 64,
) -> PolicyEvaluation:
    """Sample ``num_samples`` responses per prompt at temperature 1 and measure them.

    KL(π‖π_ref) per prompt is the Monte-Carlo mean of log π(y|x) − log π_ref(y|x) over the
    policy's own samples (an unbiased estimate). Win rate pairs the i-th policy sample of each
    prompt with the i-th reference sample under the gold reward.
    """
    samples = Samples.draw(policy, prompts, num_samples, seed, max_new_tokens)
    if reference_samples is None:
        reference_samples = Samples.draw(reference, prompts, num_samples, seed + 1, max_new_tokens)
    if reference_samples.prompts != samples.prompts:
        raise ValueError("reference samples were drawn for different prompts")
    gold = gold_scores(world, samples.prompts, samples.responses)
    aspects = [world.gold_aspects(p, r) for p, r in zip(samples.prompts, samples.responses)]
    logp_policy, _ = policy.sequence_logps(samples.prompts, samples.responses)
    logp_reference, _ = reference.sequence_logps(samples.prompts, samples.responses)
    kl_per_prompt = (logp_policy - logp_reference).reshape(len(prompts), num_samples).mean(-1)
    baseline = gold_scores(world, reference_samples.prompts, reference_samples.responses)
    return PolicyEvaluation(
        gold_reward=float(gold.mean()),
        aspects={name: float(np.mean([a[name] for a in aspects])) for name in world.aspects},
        kl=float(kl_per_prompt.mean()),
        kl_per_prompt=[round(float(k), 4) for k in kl_per_prompt],
        win_rate_vs_reference=win_rate(gold, baseline),
        samples=samples,
    )
