"""pass@k on a verifiable-reward world: the chance that at least one of k samples is correct."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prefloop.models.policy import Policy
from prefloop.worlds.base import World


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``c`` correct among ``n`` samples (Chen et al. 2021).

    1 − C(n−c, k)/C(n, k), computed as 1 − Π_{i=n−c+1..n} (1 − k/i) so that no binomial
    coefficient is formed (they overflow for large n).
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


@dataclass
class PassAtK:
    """pass@k per k (sampled), greedy accuracy, and the samples' mean length in tokens."""

    pass_at: dict[int, float]
    greedy_accuracy: float | None
    mean_length: float  # completion tokens of the policy's tokenizer, EOS excluded
    num_samples: int
    correct_per_prompt: list[int] = field(repr=False)

    def to_dict(self) -> dict[str, float | None]:
        """``{"pass@1": …, "pass@8": …, "greedy_accuracy": …, "mean_length": …}``."""
        return {
            **{f"pass@{k}": value for k, value in self.pass_at.items()},
            "greedy_accuracy": self.greedy_accuracy,
            "mean_length": self.mean_length,
        }


def correct_flags(world: World, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
    """Whether each response is correct, from a gold reward that must be exactly 0 or 1."""
    rewards = np.array([world.gold_reward(p, r) for p, r in zip(prompts, responses)])
    if not np.isin(rewards, (0.0, 1.0)).all():
        raise ValueError(f"pass@k needs a 0/1 gold reward; world {world.name!r} gave other values")
    return rewards == 1.0


def evaluate_pass_at_k(
    policy: Policy,
    world: World,
    prompts: Sequence[str],
    num_samples: int,
    k_values: Sequence[int],
    seed: int,
    temperature: float = 1.0,
    max_new_tokens: int = 64,
    greedy: bool = True,
) -> PassAtK:
    """Sample ``num_samples`` completions per prompt and estimate pass@k for each k.

    Each prompt's pass@k is the unbiased estimate from its n samples, averaged over prompts
    (pass@1 is then the mean accuracy of a sample). ``greedy`` adds the accuracy of one greedy
    completion per prompt. ``mean_length`` counts the sampled completions' tokens.
    """
    if not prompts:
        raise ValueError("evaluate_pass_at_k needs at least one prompt")
    if not k_values or max(k_values) > num_samples or min(k_values) < 1:
        raise ValueError(f"each k must be in [1, num_samples={num_samples}], got {list(k_values)}")
    samples = policy.generate(
        prompts, num_samples, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed
    )
    flat = [response for group in samples for response in group]
    correct = correct_flags(world, [p for p in prompts for _ in range(num_samples)], flat)
    counts = correct.reshape(len(prompts), num_samples).sum(axis=1)
    lengths = [len(ids) for ids in policy.tokenizer(flat, add_special_tokens=False)["input_ids"]]
    greedy_accuracy = None
    if greedy:
        best = policy.generate(prompts, 1, temperature=0.0, max_new_tokens=max_new_tokens)
        greedy_accuracy = float(correct_flags(world, prompts, [g[0] for g in best]).mean())
    return PassAtK(
        pass_at={
            k: float(np.mean([pass_at_k(num_samples, int(c), k) for c in counts])) for k in k_values
        },
        greedy_accuracy=greedy_accuracy,
        mean_length=float(np.mean(lengths)),
        num_samples=num_samples,
        correct_per_prompt=[int(c) for c in counts],
    )
