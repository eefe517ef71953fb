"""Reward-model losses and ensemble combiners."""

from __future__ import annotations

from prefloop.objectives._common import (
    Margin,
    Tensor,
    check_range,
    preference_logit,
    soft_label_loss,
)

COMBINE_METHODS = ("mean", "wco", "uwo")


def bradley_terry_loss(
    chosen_rewards: Tensor,
    rejected_rewards: Tensor,
    margin: Margin = None,
    label_smoothing: float = 0.0,
    strength: Tensor | float | None = None,
) -> Tensor:
    """Per-example Bradley-Terry loss ``-[t logsig(z) + (1-t) logsig(-z)]``, ``z = r_c - r_r - m``.

    The soft target is ``t = (1-eps) p + eps (1-p)`` with ``p = strength`` (default 1) and
    ``eps = label_smoothing`` (Secrets of RLHF II's label smoothing). With defaults this is the
    plain ``-logsig(r_c - r_r)``; the margin ``m`` sits inside the sigmoid (adaptive-margin form).
    """
    check_range(label_smoothing, "bradley_terry", "label_smoothing", 0.0, 0.5)
    p = 1.0 if strength is None else strength
    if strength is not None:
        check_range(strength, "bradley_terry", "strength", 0.0, 1.0)
    target = (1 - label_smoothing) * p + label_smoothing * (1 - p)
    z = preference_logit(chosen_rewards, rejected_rewards, 1.0, margin)
    return soft_label_loss(z, target)


def combine_rewards(rewards: Tensor, method: str = "mean", uwo_lambda: float = 0.5) -> Tensor:
    """Combine ensemble rewards ``[K, B]`` into ``[B]`` (Coste et al. 2024).

    ``mean``; ``wco`` = worst case, ``min_k``; ``uwo`` = ``mean - uwo_lambda * Var_k`` with the
    **population** variance (1/K). The authors' code is inconsistent: the BoN path uses
    ``np.var`` (1/K), the PPO path ``torch.var`` (1/(K-1)); we use 1/K everywhere, which also
    stays defined for K = 1. Default ``uwo_lambda = 0.5`` is their BoN setting (PPO used 0.1).
    """
    if rewards.dim() != 2:
        raise ValueError(
            f"combine_rewards: rewards must be [K, B], got shape {tuple(rewards.shape)}"
        )
    if method == "mean":
        return rewards.mean(dim=0)
    if method == "wco":
        return rewards.min(dim=0).values
    if method == "uwo":
        return rewards.mean(dim=0) - uwo_lambda * rewards.var(dim=0, unbiased=False)
    raise ValueError(f"combine_rewards: unknown method {method!r}; use one of {COMBINE_METHODS}")


def regression_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over examples and outputs (multi-objective reward heads, DPA)."""
    return (predicted - target).pow(2).mean()


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per row, summed over the latent dimensions."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def vpl_loss(
    chosen_rewards: Tensor,
    rejected_rewards: Tensor,
    mu: Tensor,
    logvar: Tensor,
    kl_weight: float = 0.01,
    margin: Margin = None,
    strength: Tensor | float | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Negative ELBO of Variational Preference Learning (Poddar et al. 2024), with its parts.

    ``BT(r(y_c|z), r(y_r|z)) + kl_weight · KL(q(z | context) ‖ N(0, I))``, each term a batch
    mean; returns (loss, nll, kl). ``kl_weight = 0`` is a plain BT head on the latent.
    """
    nll = bradley_terry_loss(chosen_rewards, rejected_rewards, margin=margin,
                             strength=strength).mean()  # fmt: skip
    kl = gaussian_kl(mu, logvar).mean()
    return nll + kl_weight * kl, nll, kl
