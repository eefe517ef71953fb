"""``TabularPolicy``: a probability table over a finite response set, one row per prompt.

It is trained like any other policy (a torch module whose ``log_probs`` feed the losses in
``objectives/``); because its response set is finite, expectations over its own samples can be
taken exactly by weighting every response with its probability instead of sampling.
"""

from __future__ import annotations

import numpy as np
import torch


class TabularPolicy(torch.nn.Module):
    """``π(y | x) = softmax(logits[x])``; ``logits`` is ``[prompts, responses]`` (float64)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = torch.nn.Parameter(logits.detach().clone().to(torch.float64))

    @classmethod
    def from_probs(cls, probs: np.ndarray | torch.Tensor) -> TabularPolicy:
        """A policy with the given (strictly positive) probability table ``[prompts, n]``."""
        return cls(torch.log(torch.as_tensor(probs, dtype=torch.float64)))

    def log_probs(self, prompts: torch.Tensor | None = None) -> torch.Tensor:
        """``log π(y | x)`` for every response: ``[len(prompts), n]`` (all prompts by default)."""
        logits = self.logits if prompts is None else self.logits[prompts]
        return torch.log_softmax(logits, dim=-1)

    def probs(self) -> np.ndarray:
        """The probability table ``[prompts, n]`` as a numpy array (no gradient)."""
        return self.log_probs().detach().exp().numpy()

    @torch.no_grad()
    def assign(self, log_probs: torch.Tensor) -> None:
        """Set the table to ``log_probs`` (an exact, closed-form update)."""
        self.logits.copy_(log_probs)
