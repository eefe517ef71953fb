"""Token-level implicit reward of a DPO policy (Rafailov et al. 2024, "From r to Q*")."""

from __future__ import annotations

import torch

from prefloop.objectives._common import Tensor


def token_rewards(
    policy_token_logps: Tensor, reference_token_logps: Tensor, mask: Tensor, beta: float
) -> Tensor:
    """Per-token ``beta * (log pi(y_t|s_t) - log pi_ref(y_t|s_t))``, zero where ``mask`` is 0.

    Shapes ``[B, T]``. Summing over ``t`` gives the sequence implicit reward ``beta * lr(y)``.
    Masked positions are set with ``where`` so padding values (even inf/nan) never leak.
    """
    reward = beta * (policy_token_logps - reference_token_logps)
    return torch.where(mask.bool(), reward, torch.zeros_like(reward))
