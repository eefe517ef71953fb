"""Opponents from the geometric mixture ``π^{1−c} μ^c`` of a policy and its reference.

Nash-MD plays each sample of ``π_t`` against one of the mixture ``π_t^μ ∝ π_t^{1−c} μ^c``.
Two ways to draw it from language models:

* **token level** (TRL's ``NashMDTrainer``): sample every next token from
  ``softmax((1 − c) log π_t + c log μ)``. :class:`GeometricMixtureModel` is that next-token
  distribution as a model the generator can decode from. Its sequences are *not* distributed
  as the sequence-level mixture (the per-token normalisers do not multiply out).
* **sequence level** (the paper's ``π_t^μ``): :func:`mixture_opponents` resamples the policy's
  own samples with self-normalised importance weights ``(μ(y)/π_t(y))^c``, which are exactly the
  density ratio of the sequence-level mixture to ``π_t`` up to a constant.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from prefloop.models.policy import Policy
from prefloop.online.generator import repeat_for_samples


class _CachePair:
    """The KV caches of both models, re-indexed together as the generator drops rows."""

    def __init__(self, policy_cache, reference_cache) -> None:
        self.policy, self.reference = policy_cache, reference_cache

    def repeat_for_samples(self, k: int, steps: int) -> None:
        repeat_for_samples(self.policy, k, steps)
        repeat_for_samples(self.reference, k, steps)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self.policy.batch_select_indices(indices)
        self.reference.batch_select_indices(indices)


class GeometricMixtureModel(torch.nn.Module):
    """A causal LM whose next-token log-probs are ``log_softmax((1−c) log π + c log μ)``."""

    def __init__(self, policy: torch.nn.Module, reference: torch.nn.Module, coef: float) -> None:
        super().__init__()
        if not 0.0 <= coef <= 1.0:
            raise ValueError(f"mixture coefficient must be in [0, 1], got {coef}")
        self.policy, self.reference, self.coef = policy, reference, coef
        self.config = policy.config
        self.training = policy.training

    def train(self, mode: bool = True) -> GeometricMixtureModel:
        """The policy's mode follows; the frozen reference always stays in eval mode."""
        self.training = mode
        self.policy.train(mode)
        self.reference.eval()
        return self

    def forward(self, cache: _CachePair | None = None, **inputs) -> SimpleNamespace:
        a = self.policy(**inputs, cache=cache.policy if cache else None)
        b = self.reference(**inputs, cache=cache.reference if cache else None)
        mixed = (1 - self.coef) * torch.log_softmax(a.logits.float(), -1) + self.coef * (
            torch.log_softmax(b.logits.float(), -1)
        )
        return SimpleNamespace(
            logits=torch.log_softmax(mixed, -1), cache=_CachePair(a.cache, b.cache)
        )


def mixture_policy(policy: Policy, reference: Policy, coef: float) -> Policy:
    """The token-level mixture of ``policy`` and ``reference`` as a policy to sample from."""
    model = getattr(policy.model, "module", policy.model)
    return Policy(GeometricMixtureModel(model, reference.model, coef), policy.tokenizer,
                  policy.max_length)  # fmt: skip


def mixture_opponents(
    previous_logps: torch.Tensor, reference_logps: torch.Tensor, coef: float, seed: int
) -> torch.Tensor:
    """For each of K samples per prompt, the index of an opponent among the *other* K − 1,
    drawn with probability ∝ ``exp(c (log μ(y) − log π_t(y)))``: sampling-importance
    resampling of ``π_t``'s draws toward the sequence-level mixture ``π_t^{1−c} μ^c``.

    ``previous_logps`` and ``reference_logps`` are summed sequence log-probs ``[G, K]``;
    returns ``[G, K]`` indices within each group.
    """
    groups, k = previous_logps.shape
    if k < 2:
        raise ValueError("sequence-level mixture opponents need at least 2 samples per prompt")
    log_weights = coef * (reference_logps - previous_logps).double()
    log_weights = log_weights[:, None, :].expand(groups, k, k).clone()
    log_weights[:, torch.arange(k), torch.arange(k)] = float("-inf")  # never itself
    probs = torch.softmax(log_weights, -1).numpy()
    rng = np.random.default_rng([seed, 0x4E4D])
    picks = [[rng.choice(k, p=row / row.sum()) for row in group] for group in probs]
    return torch.tensor(picks, dtype=torch.long)
