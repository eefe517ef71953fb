"""Likelihood losses on token log-probs: the one negative log-likelihood SFT and constraints use."""

from __future__ import annotations

from prefloop.objectives._common import Tensor


def response_nll(token_logps: Tensor, response_mask: Tensor) -> Tensor:
    """Token-averaged negative log-likelihood of the masked (response) tokens of a batch.

    ``token_logps`` [B, T] are log π(token | prefix), ``response_mask`` [B, T] marks the tokens
    that count; every counted token weighs the same, whichever sequence it belongs to.
    """
    return -(token_logps * response_mask).sum() / response_mask.sum().clamp_min(1)
