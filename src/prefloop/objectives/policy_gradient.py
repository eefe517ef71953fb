"""Policy-gradient pieces as pure tensor functions: advantages, KL estimators, surrogates.

Token tensors are ``[samples, tokens]``, completion-aligned (column 0 is each completion's
first token) with a 0/1 ``mask`` that is 1 on a prefix of each row (its completion tokens);
rewards of a group of K samples of one prompt are ``[groups, K]``. Formulas and sources are
in ``docs/online.md``; every function here is checked against a hand computation in
``tests/test_objectives_policy_gradient.py``.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor
KL_ESTIMATORS = ("k1", "k2", "k3")
AGGREGATIONS = ("sequence_mean", "token_mean", "constant", "sum")


def kl_estimate(logps: Tensor, reference_logps: Tensor, kind: str = "k3") -> Tensor:
    """Per-token estimate of KL(π‖π_ref) from samples of π (Schulman's k1, k2, k3).

    With δ = log π_ref − log π: k1 = −δ (unbiased, can be negative), k2 = δ²/2 (biased, low
    variance), k3 = exp(δ) − δ − 1 (unbiased and non-negative).
    """
    delta = reference_logps - logps
    if kind == "k1":
        return -delta
    if kind == "k2":
        return 0.5 * delta**2
    if kind == "k3":
        return torch.expm1(delta) - delta
    raise ValueError(f"KL estimator must be one of {', '.join(KL_ESTIMATORS)}, got {kind!r}")


def leave_one_out_advantages(rewards: Tensor) -> Tensor:
    """RLOO: each sample's reward minus the mean of the other K − 1 in its group."""
    k = rewards.shape[-1]
    if k < 2:
        raise ValueError("a leave-one-out baseline needs at least 2 samples per prompt")
    others = (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
    return rewards - others


def group_advantages(rewards: Tensor, scale: bool = True, eps: float = 1e-4) -> Tensor:
    """GRPO: reward minus its group's mean, divided by the group's std (Dr. GRPO: no std).

    The std is the sample standard deviation (K − 1 in the denominator), as in GRPO's code.
    """
    centred = rewards - rewards.mean(-1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(-1, keepdim=True) + eps)


def whiten(values: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Values standardised over the masked entries of the whole batch (REINFORCE++, PPO)."""
    count = mask.sum()
    mean = (values * mask).sum() / count
    variance = (((values - mean) * mask) ** 2).sum() / count
    return (values - mean) * torch.rsqrt(variance + eps) * mask


def token_rewards(sequence_rewards: Tensor, kl: Tensor | None, mask: Tensor, beta: float) -> Tensor:
    """Per-token rewards: −β·KL estimate at every token, plus the sequence reward at the last.

    ``kl`` is a per-token estimate (usually k1); a sample with no tokens gets nothing.
    """
    rewards = torch.zeros_like(mask, dtype=torch.float32)
    if kl is not None and beta:
        rewards = rewards - beta * kl * mask
    lengths = mask.sum(-1).long()
    has_tokens = lengths > 0
    rows = torch.arange(mask.shape[0], device=mask.device)[has_tokens]
    last = _last_positions(mask)[has_tokens]
    rewards[rows, last] += sequence_rewards[has_tokens].float()
    return rewards


def _last_positions(mask: Tensor) -> Tensor:
    return (mask.sum(-1).long() - 1).clamp(min=0)


def returns_to_go(rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """Σ_{s ≥ t} γ^{s−t} r_s over the masked tokens of each sample."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], device=rewards.device, dtype=rewards.dtype)
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        returns[:, t] = running
    return returns


def generalized_advantages(
    rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[Tensor, Tensor]:
    """GAE(γ, λ) advantages and the value targets (advantage + value), zero outside ``mask``.

    The value after a sample's last token is 0 (the episode ends there).
    """
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], device=rewards.device, dtype=rewards.dtype)
    next_value = torch.zeros_like(running)
    for t in reversed(range(rewards.shape[1])):
        live = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * live
        advantages[:, t] = running
        next_value = torch.where(live.bool(), values[:, t], next_value)
    return advantages, (advantages + values) * mask


def clipped_surrogate(
    logps: Tensor,
    behaviour_logps: Tensor,
    advantages: Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
) -> Tensor:
    """Per-token PPO surrogate −min(ρ A, clip(ρ, 1 − ε_low, 1 + ε_high) A), ρ = π/π_old.

    ``advantages`` is per token, or per sample (broadcast over its tokens). ε_high > ε_low is
    DAPO's clip-higher.
    """
    if advantages.dim() == 1:
        advantages = advantages[:, None]
    ratio = torch.exp(logps - behaviour_logps)
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high)
    return -torch.minimum(ratio * advantages, clipped * advantages)


def clipped_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip: float = 0.2
) -> Tensor:
    """PPO's clipped value loss ½·max((v − R)², (clip(v, v_old ± c) − R)²), masked mean."""
    clipped = old_values + (values - old_values).clamp(-clip, clip)
    worst = torch.maximum((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * (worst * mask).sum() / mask.sum().clamp(min=1)


def aggregation_weights(mask: Tensor, kind: str, max_tokens: int | None = None) -> Tensor:
    """Per-token weights w such that the batch loss is mean over samples of Σ_t w_t·loss_t.

    ``sequence_mean`` (GRPO): 1/|y_i| on each of y_i's tokens; ``token_mean`` (DAPO): every
    token of the batch counts equally, N/Σ|y|; ``constant`` (Dr. GRPO): 1/max_tokens, so no
    sample's length changes its tokens' weight; ``sum`` (REINFORCE, RLOO): 1.
    Computed over the whole step's batch, so micro-batching leaves the loss unchanged.
    """
    mask = mask.float()
    if kind == "sequence_mean":
        return mask / mask.sum(-1, keepdim=True).clamp(min=1)
    if kind == "token_mean":
        return mask * mask.shape[0] / mask.sum().clamp(min=1)
    if kind == "constant":
        if not max_tokens:
            raise ValueError("the constant aggregation needs max_tokens")
        return mask / max_tokens
    if kind == "sum":
        return mask
    raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {kind!r}")


def overlong_penalty(lengths: Tensor, max_tokens: int, buffer: int) -> Tensor:
    """DAPO's soft overlong punishment: 0 up to max − buffer tokens, then linear down to −1."""
    if not 0 < buffer <= max_tokens:
        raise ValueError(f"overlong buffer must be in (0, {max_tokens}], got {buffer}")
    start = max_tokens - buffer
    return ((start - lengths.float()) / buffer).clamp(min=-1.0, max=0.0)


def segment_rewards(
    mask: Tensor, segments: list[list[tuple[int, float]]], weight: float = 1.0
) -> Tensor:
    """Dense rewards (Fine-Grained RLHF): ``weight·r`` at each segment's last token.

    ``segments[i]`` lists ``(end_token, reward)`` for sample i (``end_token`` indexes its
    completion); the results of several reward functions add up.
    """
    rewards = torch.zeros_like(mask, dtype=torch.float32)
    lengths = mask.sum(-1).long().tolist()
    for i, row in enumerate(segments):
        for end, value in row:
            if not 0 <= end < lengths[i]:
                raise ValueError(f"sample {i}: segment end {end} outside its {lengths[i]} tokens")
            rewards[i, end] += weight * value
    return rewards
