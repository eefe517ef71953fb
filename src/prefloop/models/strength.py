"""Preference strength from an ensemble, and the Secrets-of-RLHF-II data treatment.

For pair i and ensemble member m, d_im = r_m(x_i, y_c) − r_m(x_i, y_r); the strength is
μ_i = mean_m d_im with spread σ_i = population std_m d_im (Wang et al. 2024, M = 10 there).
The treatment then

* **flips** pairs whose strength is confidently negative (μ_i + ``flip_z``·σ_i < 0),
* **smooths** ambiguous pairs (|μ_i| ≤ ``ambiguous_z``·σ_i): soft target 1 − ``smoothing``,
* gives the remaining **strong** pairs an adaptive margin ``margin_scale``·μ_i inside the
  sigmoid of the Bradley–Terry loss.

The result is a list of comparisons with ``strength`` and ``margin`` set on every record, to be
trained with ``train_reward_model(..., use_margin=True, use_strength=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from prefloop.data.records import Comparison


def preference_strength(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """μ and σ of the reward differences over members; inputs are [M, N] rewards."""
    differences = chosen_rewards - rejected_rewards
    return differences.mean(0), differences.std(0, unbiased=False)


def ensemble_strength(ensemble, comparisons: Sequence[Comparison]):
    """μ, σ of each comparison under an ensemble (anything with ``raw_scores`` → [M, B])."""
    prompts = [c.prompt for c in comparisons]
    chosen = ensemble.raw_scores(prompts, [c.chosen for c in comparisons])
    rejected = ensemble.raw_scores(prompts, [c.rejected for c in comparisons])
    return preference_strength(chosen, rejected)


@dataclass(frozen=True)
class RobustOptions:
    """Thresholds of the treatment, in units of each pair's ensemble spread σ_i."""

    flip_z: float = 1.0
    ambiguous_z: float = 1.0
    smoothing: float = 0.2
    margin_scale: float = 1.0


def robust_relabel(
    comparisons: Sequence[Comparison],
    mu: torch.Tensor,
    sigma: torch.Tensor,
    options: RobustOptions = RobustOptions(),
) -> list[Comparison]:
    """Flip, smooth or margin each pair by its strength; ``metadata["treatment"]`` says which."""
    out = []
    for c, m, s in zip(comparisons, mu.tolist(), sigma.tolist()):
        if m + options.flip_z * s < 0:
            record = replace(c, chosen=c.rejected, rejected=c.chosen, strength=1.0,
                             margin=options.margin_scale * -m)  # fmt: skip
            treatment = "flipped"
        elif abs(m) <= options.ambiguous_z * s:
            record, treatment = (
                replace(c, strength=1.0 - options.smoothing, margin=0.0),
                "ambiguous",
            )
        else:
            record = replace(c, strength=1.0, margin=options.margin_scale * max(m, 0.0))
            treatment = "strong"
        out.append(replace(record, metadata={**c.metadata, "treatment": treatment}))
    return out
