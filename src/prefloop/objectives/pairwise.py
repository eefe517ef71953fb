"""Registry and dispatcher for pairwise (chosen vs rejected) objectives."""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor

_COMMON = ("chosen_lengths", "rejected_lengths")


def dpo(
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor,
    reference_rejected_logps: Tensor,
    beta: float = 0.1,
    margin: Tensor | None = None,
) -> Tensor:
    """DPO (sigmoid): -logsig(beta * (lr_w - lr_l) - margin)."""
    z = beta * (
        (policy_chosen_logps - reference_chosen_logps)
        - (policy_rejected_logps - reference_rejected_logps)
    )
    if margin is not None:
        z = z - margin
    return -F.logsigmoid(z)


OBJECTIVES = {"dpo": dpo}


def pairwise_loss(
    name: str,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None,
    reference_rejected_logps: Tensor | None,
    beta: float = 0.1,
    **options,
) -> Tensor:
    """Per-example loss (shape [B]) of the pairwise objective ``name``."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid names: {sorted(OBJECTIVES)}")
    if reference_chosen_logps is None or reference_rejected_logps is None:
        raise ValueError(f"objective {name!r} needs reference log-probs, got None")
    for key in _COMMON:
        options.pop(key, None)
    return OBJECTIVES[name](
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        beta=beta,
        **options,
    )
