"""Per-sample losses of the game-theoretic methods that are not pairwise (Nash-MD, SPO).

These take the log-prob of each sampled response ``y ~ π_θ`` and its feedback, and return a
per-sample loss ``[B]``: a REINFORCE surrogate whose expected gradient over ``y ~ π_θ`` is the
gradient of the method's per-iteration objective. They are plain functions, not entries of the
pairwise registry, because their inputs are one response and its reward, not a chosen and a
rejected response. The pairwise methods of the same family are registered there: ``inpo``,
``dno`` and ``soft-preference`` (OSP) in ``objectives/direct.py``.

On a finite response set the expectation can be taken exactly: every response is a "sample"
weighted by its probability under ``π_θ`` with the weight detached (the score-function
identity ``∇ E_π f = E_π f ∇log π`` then holds exactly), which is how the tabular recipes use
them. Shapes: the log-prob arguments and the feedback are ``[B]``.
"""

from __future__ import annotations

import torch

from prefloop.objectives._common import Tensor


def geometric_mixture(policy_logps: Tensor, reference_logps: Tensor, coef: float) -> Tensor:
    """``log π^μ ∝ (1 − coef) log π + coef log μ``, normalised over the last dimension.

    Over a finite response set this is Nash-MD's sequence-level mixture ``π_t^{1−ητ} μ^{ητ}``
    (``coef = ητ``); applied to next-token log-probs it is the token-level mixture TRL's
    ``NashMDTrainer`` samples from (its ``mixture_coef``).
    """
    return torch.log_softmax((1 - coef) * policy_logps + coef * reference_logps, dim=-1)


def _reinforce(policy_logps: Tensor, advantage: Tensor, penalty: Tensor) -> Tensor:
    """``(sg(penalty) − advantage) · log π(y)``: REINFORCE with a KL penalty as a reward term."""
    return (penalty.detach() - advantage) * policy_logps


def nash_md_loss(
    policy_logps: Tensor, anchor_logps: Tensor, preference: Tensor | float, *, kl_coef: float
) -> Tensor:
    """Nash-MD policy-gradient loss for ``y ~ π_θ`` against ``y' ~ π_t^μ``:

    ``−(p − ½) log π_θ(y) + kl_coef · sg(log π_θ(y) − log anchor(y)) · log π_θ(y)``, with
    ``p = P(y ≻ y')`` (a label or a probability). Its expected gradient is that of
    ``−P(π_θ ≻ π_t^μ) + kl_coef · KL(π_θ ‖ anchor)``. The paper's step (Munos et al.) uses
    ``anchor = π_t^μ`` and ``kl_coef = 1/η``, whose minimiser is
    ``π_{t+1} ∝ π_t^μ exp(η P(y ≻ π_t^μ))``; TRL uses ``anchor = μ`` and ``kl_coef = β``.
    """
    advantage = torch.as_tensor(preference, dtype=policy_logps.dtype) - 0.5
    return _reinforce(policy_logps, advantage, kl_coef * (policy_logps - anchor_logps))


def self_play_win_rates(preferences: Tensor) -> Tensor:
    """SPO's reward: each of K samples' mean preference over the other K − 1 samples.

    ``preferences[..., i, j] = P(y_i ≻ y_j)`` (labels or probabilities) ``[..., K, K]``;
    returns ``[..., K]``. The diagonal is ignored.
    """
    k = preferences.shape[-1]
    if k < 2:
        raise ValueError("self_play_win_rates needs at least 2 samples per prompt")
    off_diagonal = 1 - torch.eye(k, dtype=preferences.dtype, device=preferences.device)
    return (preferences * off_diagonal).sum(-1) / (k - 1)


def spo_loss(
    policy_logps: Tensor,
    previous_logps: Tensor,
    reference_logps: Tensor,
    reward: Tensor,
    *,
    eta: float,
    tau: float = 0.0,
    baseline: float = 0.5,
) -> Tensor:
    """SPO (Swamy et al. 2024) policy step on the win-rate reward, KL-regularised:

    ``(sg(τ lr_μ(y) + lr_t(y)/η) − (r(y) − b)) · log π_θ(y)`` with ``lr_μ = log π_θ/μ``,
    ``lr_t = log π_θ/π_t``. Its expected gradient is that of
    ``−E_π r + τ KL(π‖μ) + KL(π‖π_t)/η``: the reward is the win rate against the policy's own
    samples (:func:`self_play_win_rates`), the KL to ``π_t`` is the RL step's trust region and
    ``τ`` the KL to the reference (0: the paper's unregularised self-play). The minimiser is
    ``π_{t+1} ∝ (π_t μ^{ητ} exp(η r))^{1/(1+ητ)}``. The baseline ``b`` (½, the mean win rate of
    self-play) only lowers variance.
    """
    penalty = tau * (policy_logps - reference_logps) + (policy_logps - previous_logps) / eta
    return _reinforce(policy_logps, reward - baseline, penalty)
