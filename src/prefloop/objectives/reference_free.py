"""Reference-free preference objectives: SimPO, ORPO, CPL.

Inputs are summed response log-probs ``[B]``; outputs are per-example losses ``[B]``. ``margin``
is subtracted from each objective's logit (after scaling), as in the reference objectives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefloop.objectives._common import (
    Margin,
    Tensor,
    check_range,
    per_token,
    preference_logit,
)

#: Largest per-token average log-prob ORPO uses; keeps the odds ``p/(1-p)`` finite.
ORPO_MAX_AVG_LOGP = -1e-6


def simpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    *,
    beta: float = 2.0,
    margin: Margin = None,
    gamma: float | None = None,
    gamma_beta_ratio: float = 0.5,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> Tensor:
    """SimPO (Meng et al. 2024): ``-logsig(beta*(lp_w/|y_w| - lp_l/|y_l|) - gamma - margin)``.

    The target reward margin is ``gamma`` (absolute, TRL's ``simpo_gamma``) if given, else
    ``gamma_beta_ratio * beta`` (the SimPO repository's parametrization, default 0.5). Default
    ``beta = 2.0`` is the paper's recommended value; lengths are required.
    """
    avg_w = per_token(policy_chosen_logps, chosen_lengths, "simpo", "chosen_lengths")
    avg_l = per_token(policy_rejected_logps, rejected_lengths, "simpo", "rejected_lengths")
    target = gamma if gamma is not None else gamma_beta_ratio * beta
    return -F.logsigmoid(preference_logit(avg_w, avg_l, beta, margin) - target)


def _log_odds(avg_logps: Tensor) -> Tensor:
    """``log(p / (1 - p))`` from ``log p``, stable near ``p -> 1`` and ``p -> 0``."""
    a = avg_logps.clamp(max=ORPO_MAX_AVG_LOGP)
    log1m = torch.where(a > -0.6931471805599453, torch.log(-torch.expm1(a)), torch.log1p(-a.exp()))
    return a - log1m


def orpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    margin: Margin = None,
    odds_ratio_weight: float | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> Tensor:
    """ORPO (Hong et al. 2024): ``NLL_w - lambda * logsig(log odds(y_w) - log odds(y_l) - margin)``.

    ``log odds(y) = a - log(1 - exp(a))`` with ``a = logp / |y|`` the per-token average log-prob;
    ``NLL_w = -logp_w / |y_w|`` (token-averaged SFT loss of the chosen response). The weight
    ``lambda = odds_ratio_weight``, falling back to ``beta`` (TRL's ORPO ``beta`` is this
    lambda; paper default 0.1). ``a`` is clamped at ``-1e-6`` so the odds stay finite.
    """
    weight = beta if odds_ratio_weight is None else odds_ratio_weight
    avg_w = per_token(policy_chosen_logps, chosen_lengths, "orpo", "chosen_lengths")
    avg_l = per_token(policy_rejected_logps, rejected_lengths, "orpo", "rejected_lengths")
    z = preference_logit(_log_odds(avg_w), _log_odds(avg_l), 1.0, margin)
    return -avg_w - weight * F.logsigmoid(z)


def cpl(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    margin: Margin = None,
    alpha: float | None = None,
    conservative_bias: float = 1.0,
    bc_weight: float = 0.0,
    chosen_lengths: Tensor | None = None,
) -> Tensor:
    """CPL (Hejna et al. 2024): ``-logsig(alpha*S_w - conservative_bias*alpha*S_l - margin)``.

    ``S`` is the segment sum of ``log pi(a|s)`` (the summed log-probs given; no discount, as in
    the authors' code). ``alpha`` (temperature) falls back to ``beta``. ``conservative_bias``
    is lambda in (0, 1]. With ``bc_weight > 0`` adds ``bc_weight * (-logp_w / |y_w|)``, the
    behaviour-cloning term on the preferred segment (needs ``chosen_lengths``).
    """
    check_range(conservative_bias, "cpl", "conservative_bias", 0.0, 1.0, low_open=True)
    temperature = beta if alpha is None else alpha
    score_w = temperature * policy_chosen_logps
    score_l = conservative_bias * temperature * policy_rejected_logps
    loss = -F.logsigmoid(preference_logit(score_w, score_l, 1.0, margin))
    if bc_weight:
        avg_w = per_token(policy_chosen_logps, chosen_lengths, "cpl", "chosen_lengths")
        loss = loss - bc_weight * avg_w
    return loss
