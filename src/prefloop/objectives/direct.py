"""Reference-based direct-alignment objectives (DPO family).

Every function takes summed response log-probs of shape ``[B]`` and returns the per-example
loss ``[B]``. ``margin`` (per-example tensor or float) is subtracted from the objective's logit
after scaling by ``beta``: ``z = beta * (s_w - s_l) - margin`` (ODPO / DPO-with-offset style).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prefloop.objectives._common import (
    Margin,
    Tensor,
    check_range,
    log_ratio,
    max_exponent,
    per_token,
    preference_logit,
    require,
    soft_label_loss,
)

DIVERGENCES = ("reverse_kl", "forward_kl", "js", "alpha")


def dpo_logit(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    beta: float,
    margin: Margin = None,
) -> Tensor:
    """The DPO logit ``beta * (lr(y_w) - lr(y_l)) - margin``."""
    return preference_logit(
        log_ratio(policy_chosen_logps, reference_chosen_logps),
        log_ratio(policy_rejected_logps, reference_rejected_logps),
        beta,
        margin,
    )


def dpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    margin: Margin = None,
) -> Tensor:
    """DPO (Rafailov et al. 2023), sigmoid form: ``-logsig(beta * (lr_w - lr_l) - margin)``."""
    z = dpo_logit(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        margin,
    )
    return -F.logsigmoid(z)


def _squared_to_target(h: Tensor, beta: float, margin: Margin) -> Tensor:
    """IPO-style regression ``(h - (1/2 + margin) / beta)^2``.

    Written on the logit scale this is ``((beta*h - margin) - 1/2)^2 / beta^2``: the margin
    shifts the logit exactly as in the sigmoid objectives, and without a margin the minimiser
    is ``h = 1/(2*beta)``.
    """
    offset = 0.5 if margin is None else 0.5 + margin
    return (h - offset / beta) ** 2


def ipo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    margin: Margin = None,
    length_normalized: bool = False,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
) -> Tensor:
    """IPO (Azar et al. 2023): ``(h - 1/(2*beta))^2`` with ``h = lr_w - lr_l``.

    Default is the paper's form on summed sequence log-ratios (beta is the paper's tau).
    ``length_normalized=True`` reproduces TRL's ``loss_type="ipo"``: ``h = lr_w/|y_w| - lr_l/|y_l|``
    (needs ``chosen_lengths`` and ``rejected_lengths``).
    """
    lr_w = log_ratio(policy_chosen_logps, reference_chosen_logps)
    lr_l = log_ratio(policy_rejected_logps, reference_rejected_logps)
    if length_normalized:
        lr_w = per_token(lr_w, chosen_lengths, "ipo", "chosen_lengths")
        lr_l = per_token(lr_l, rejected_lengths, "ipo", "rejected_lengths")
    return _squared_to_target(lr_w - lr_l, beta, margin)


def hinge(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    margin: Margin = None,
) -> Tensor:
    """SLiC-style hinge on the DPO logit: ``max(0, 1 - z)``, ``z = beta*(lr_w - lr_l) - margin``.

    SLiC-HF's calibration loss is ``max(0, delta - log pi(y_w) + log pi(y_l))`` on raw policy
    log-probs. We follow the DPO paper / TRL ``loss_type="hinge"`` and use reference log-ratios
    scaled by beta, with unit margin: equivalent to SLiC with ``delta = 1/beta`` in log-ratio units.
    """
    z = dpo_logit(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        margin,
    )
    return torch.relu(1 - z)


def cdpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    margin: Margin = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Conservative DPO: ``(1-eps)(-logsig(z)) + eps(-logsig(-z))``, ``eps = label_smoothing``.

    ``eps`` is the assumed label-flip rate, in [0, 0.5]. The margin is part of ``z`` (applied
    before the flip). ``eps = 0`` gives exactly ``dpo``.
    """
    check_range(label_smoothing, "cdpo", "label_smoothing", 0.0, 0.5)
    z = dpo_logit(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        margin,
    )
    return soft_label_loss(z, 1.0 - label_smoothing)


def robust(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    margin: Margin = None,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Robust DPO (Chowdhury et al. 2024), unbiased under label-flip rate ``eps < 0.5``:

    ``[(1-eps)(-logsig(z)) - eps(-logsig(-z))] / (1 - 2 eps)``, so that
    ``(1-eps) L(z) + eps L(-z) = -logsig(z)`` (the clean DPO loss). Not bounded below.
    """
    check_range(label_smoothing, "robust", "label_smoothing", 0.0, 0.5, high_open=True)
    z = dpo_logit(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta,
        margin,
    )
    eps = label_smoothing
    return ((1 - eps) * -F.logsigmoid(z) - eps * -F.logsigmoid(-z)) / (1 - 2 * eps)


def _alpha_score(lr: Tensor, a: float) -> Tensor:
    """Paper's alpha-divergence ``f'(u) = (1 - u^{-a})/a`` less its constant: ``-exp(-a*lr)/a``.

    Computed as ``-exp(min(-a*lr - log a, max_exponent))``; beyond the clamp the score is
    constant (no gradient), reached only when ``lr`` is far below ``-80/a`` in float32.
    """
    exponent = -a * lr - torch.log(torch.tensor(a, dtype=lr.dtype, device=lr.device))
    return -torch.exp(exponent.clamp(max=max_exponent(lr.dtype)))


def _f_score(lr: Tensor, divergence: str, alpha: float) -> Tensor:
    """``f'(u)`` with ``u = exp(lr)``, constants dropped (they cancel in ``s_w - s_l``)."""
    if divergence == "reverse_kl":
        return lr  # f'(u) = log u + 1
    if divergence == "forward_kl":
        return _alpha_score(lr, 1.0)  # f'(u) = -1/u
    if divergence == "js":
        return F.logsigmoid(lr)  # f'(u) = log(2u/(1+u)) = log 2 + logsig(lr)
    return _alpha_score(lr, alpha)


def f_dpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    margin: Margin = None,
    divergence: str = "reverse_kl",
    alpha: float = 0.5,
) -> Tensor:
    """f-DPO (Wang et al. 2023): ``-logsig(beta*(f'(u_w) - f'(u_l)) - margin)``, ``u = pi/pi_ref``.

    ``divergence`` in {reverse_kl, forward_kl, js, alpha}; ``alpha`` is the paper's ``a`` in
    (0, 1) (alpha-divergence ``f'(u) = (1 - u^{-a})/a``). TRL's ``f_alpha_divergence_coef``
    equals ``1 - a``; they coincide at the default 0.5. ``reverse_kl`` is exactly ``dpo``.
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"objective 'f-dpo': unknown divergence {divergence!r}; use {DIVERGENCES}")
    if divergence == "alpha":
        check_range(alpha, "f-dpo", "alpha", 0.0, 1.0, low_open=True, high_open=True)
    s_w = _f_score(log_ratio(policy_chosen_logps, reference_chosen_logps), divergence, alpha)
    s_l = _f_score(log_ratio(policy_rejected_logps, reference_rejected_logps), divergence, alpha)
    return -F.logsigmoid(preference_logit(s_w, s_l, beta, margin))


def _soft_dpo(
    objective: str,
    logps: tuple[Tensor, Tensor, Tensor, Tensor],
    beta: float,
    margin: Margin,
    strength: Tensor | float,
) -> Tensor:
    """Soft-label BCE on the DPO logit with target ``strength`` in [0, 1]."""
    check_range(strength, objective, "strength", 0.0, 1.0)
    return soft_label_loss(dpo_logit(*logps, beta, margin), strength)


def soft_preference(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    margin: Margin = None,
    strength: Tensor | float = 1.0,
) -> Tensor:
    """Soft-preference cross-entropy (OSP, Zhai et al. 2024): ``-[p logsig(z) + (1-p) logsig(-z)]``.

    ``z`` is the DPO logit and ``p = strength`` in [0, 1] the (self-judged) preference strength
    of y_w over y_l; ``strength = 1`` is exactly ``dpo``.
    """
    return _soft_dpo(
        "soft-preference",
        (
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps,
            reference_rejected_logps,
        ),
        beta,
        margin,
        strength,
    )


def dno(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    margin: Margin = None,
    strength: Tensor | float = 1.0,
) -> Tensor:
    """DNO contrastive regression (Rosset et al. 2024, Alg. 1), one iteration.

    Pass the **previous iterate** pi_t as the reference; beta plays eta. ``strength`` is the
    soft target ``sigma(r_t(y_w) - r_t(y_l))`` (win-rate gap against pi_t), default 1 which is
    DNO-Prct's hard-label DPO step with ``pi_ref = pi_t``. Loss is soft-label BCE on the logit.
    """
    return _soft_dpo(
        "dno",
        (
            policy_chosen_logps,
            policy_rejected_logps,
            reference_chosen_logps,
            reference_rejected_logps,
        ),
        beta,
        margin,
        strength,
    )


def inpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    *,
    beta: float = 0.1,
    margin: Margin = None,
    previous_chosen_logps: Tensor | None = None,
    previous_rejected_logps: Tensor | None = None,
    ratio: float = 1.0 / 3.0,
) -> Tensor:
    """INPO (Zhang et al. 2024) regression ``(h_t - 1/(2*beta))^2``, beta plays eta:

    ``h_t = [log pi(y_w) - log pi(y_l)] - ratio * [log pi_ref(y_w) - log pi_ref(y_l)]
    - (1 - ratio) * [log pi_t(y_w) - log pi_t(y_l)]``, ``ratio = tau/eta`` in [0, 1];
    ``previous_*`` are the previous iterate pi_t's summed log-probs. ``ratio = 1`` is IPO.
    """
    require(previous_chosen_logps, "inpo", "previous_chosen_logps")
    require(previous_rejected_logps, "inpo", "previous_rejected_logps")
    check_range(ratio, "inpo", "ratio", 0.0, 1.0)
    h = (
        (policy_chosen_logps - policy_rejected_logps)
        - ratio * (reference_chosen_logps - reference_rejected_logps)
        - (1 - ratio) * (previous_chosen_logps - previous_rejected_logps)
    )
    return _squared_to_target(h, beta, margin)
