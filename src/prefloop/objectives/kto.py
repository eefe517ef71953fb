"""KTO (Ethayarajh et al. 2024) on unpaired desirable / undesirable examples."""

from __future__ import annotations

import torch

from prefloop.objectives._common import Tensor, log_ratio


def kto_loss(
    policy_logps: Tensor,
    reference_logps: Tensor,
    desirable: Tensor,
    kl_estimate: Tensor | float,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> Tensor:
    """Per-example KTO loss ``lambda_y - v(x, y)`` (paper form), shape ``[B]``.

    ``r = log pi(y) - log pi_ref(y)`` (summed), ``z0 = max(kl_estimate, 0)`` detached (the
    batch reference point, e.g. a mismatched-pair KL estimate).
    Desirable: ``v = lambda_D * sigma(beta*(r - z0))``; undesirable:
    ``v = lambda_U * sigma(beta*(z0 - r))``; ``lambda_D, lambda_U`` are the two weights.
    """
    if desirable.dtype != torch.bool:
        raise ValueError("kto_loss: 'desirable' must be a BoolTensor")
    r = log_ratio(policy_logps, reference_logps)
    z0 = torch.as_tensor(kl_estimate, dtype=r.dtype, device=r.device).detach().clamp(min=0)
    sign = torch.where(desirable, 1.0, -1.0).to(r.dtype)
    weight = torch.where(desirable, desirable_weight, undesirable_weight).to(r.dtype)
    return weight * (1 - torch.sigmoid(sign * beta * (r - z0)))
