"""Shared tensor helpers: log-ratios, the preference logit, soft-label BCE, option checks."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Margin = Tensor | float | None


def log_ratio(policy_logps: Tensor, reference_logps: Tensor) -> Tensor:
    """Sequence log-ratio ``lr(y) = log pi(y) - log pi_ref(y)``."""
    return policy_logps - reference_logps


def preference_logit(
    chosen_score: Tensor, rejected_score: Tensor, scale: float, margin: Margin = None
) -> Tensor:
    """``scale * (chosen_score - rejected_score) - margin``.

    Every logit-based objective goes through this function, so the margin convention
    (subtracted after scaling, ODPO / DPO-with-offset style) is the same everywhere.
    """
    z = scale * (chosen_score - rejected_score)
    if margin is not None:
        z = z - margin
    return z


def soft_label_loss(z: Tensor, target: Tensor | float) -> Tensor:
    """Soft-label BCE on a logit: ``-[p logsig(z) + (1-p) logsig(-z)]``, ``p = target``.

    With ``p == 1`` this is bit-for-bit ``-logsig(z)`` (the second term is ``0 * finite``).
    """
    return -(target * F.logsigmoid(z) + (1 - target) * F.logsigmoid(-z))


def per_token(logps: Tensor, lengths: Tensor | None, objective: str, option: str) -> Tensor:
    """Per-token average of a summed log-prob; ``lengths`` must be given and positive."""
    if lengths is None:
        raise ValueError(f"objective {objective!r} requires option {option!r} (token counts)")
    if bool((lengths <= 0).any()):
        raise ValueError(f"objective {objective!r}: {option!r} must be positive")
    return logps / lengths


def require(value: object, objective: str, option: str) -> None:
    """Raise a ValueError naming ``objective`` and ``option`` when ``value`` is None."""
    if value is None:
        raise ValueError(f"objective {objective!r} requires option {option!r}")


def check_range(
    value: Tensor | float,
    objective: str,
    option: str,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise a ValueError unless every element of ``value`` lies in the given interval."""
    t = torch.as_tensor(value, dtype=torch.float64)
    bad_low = bool((t <= low).any()) if low_open else bool((t < low).any())
    bad_high = bool((t >= high).any()) if high_open else bool((t > high).any())
    if bad_low or bad_high:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"objective {objective!r}: {option!r} must lie in {lo}{low}, {high}{hi}")


def max_exponent(dtype: torch.dtype) -> float:
    """Largest exponent used before ``exp`` in f-divergence scores: ``log(finfo.max / 4)``.

    About 87.3 for float32/bfloat16, 9.7 for float16 and 708 for float64; the headroom of 4
    keeps the difference of two scores finite.
    """
    return math.log(torch.finfo(dtype).max / 4)
