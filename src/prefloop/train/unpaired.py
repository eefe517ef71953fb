"""KTO training over unpaired desirable / undesirable responses.

The reference point ``z0`` is the KTO paper's estimate of KL(pi || pi_ref): each batch pairs
every prompt with another example's completion (a fixed seeded derangement, so the reference
side is computed once and cached) and averages ``log pi - log pi_ref`` over those mismatched
pairs, without gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import make_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prefloop.data.records import Unpaired
from prefloop.models.policy import Policy
from prefloop.objectives import kto_loss
from prefloop.train.caches import cached_sequence_logps, data_fingerprint
from prefloop.train.config import signature_fields, validate
from prefloop.train.engine import Task, Trainable, TrainConfig, TrainResult, fit
from prefloop.train.sources import IndexSource


def _validated(self) -> None:
    validate(self, "method 'kto'")


KTOConfig = make_dataclass(
    "KTOConfig",
    signature_fields(
        kto_loss,
        (),
        {
            "beta": "KL strength β.",
            "desirable_weight": "λ_D, the weight of desirable examples.",
            "undesirable_weight": "λ_U, the weight of undesirable examples.",
        },
    ),
    namespace={"name": "kto", "kind": "policy", "__post_init__": _validated},
)
KTOConfig.__doc__ = "KTO (Ethayarajh et al. 2024): defaults from :func:`kto_loss`."


def mismatched_partners(num_examples: int, seed: int) -> list[int]:
    """A seeded derangement: example ``i`` borrows the completion of ``partners[i] != i``."""
    if num_examples < 2:
        raise ValueError("KTO's KL estimate needs at least two examples")
    order = np.random.default_rng(seed).permutation(num_examples)
    partners = np.empty(num_examples, dtype=int)
    partners[order] = np.roll(order, 1)  # one cycle through a random order: no fixed point
    return partners.tolist()


def kto_task(
    policy: Policy,
    examples: Sequence[Unpaired],
    config: TrainConfig,
    method: Any = None,
    reference: Policy | None = None,
) -> Task:
    """KTO on labelled completions; the reference defaults to the policy before training."""
    method = method or KTOConfig()
    partners = mismatched_partners(len(examples), config.seed)
    labels = torch.tensor([e.label for e in examples], dtype=torch.bool)
    prompts = [e.prompt for e in examples]
    cached: dict[str, torch.Tensor] = {}

    def setup(out_dir: Path, write: bool) -> None:
        responses = {"matched": [e.completion for e in examples],
                     "mismatched": [examples[j].completion for j in partners]}  # fmt: skip
        cached.update(cached_sequence_logps(reference or policy, prompts, responses, out_dir,
                                            "kto_reference_logps", write))  # fmt: skip

    def loss(indices: list[int]):
        batch_prompts = [prompts[i] for i in indices]
        batch = policy.encode(batch_prompts, [examples[i].completion for i in indices])
        logps = policy.token_logps(batch).sum(-1)
        picked = torch.tensor(indices)
        device = logps.device
        reference_logps = cached["matched"][picked].to(device)
        with torch.no_grad():
            borrowed = [examples[partners[i]].completion for i in indices]
            shifted = policy.encode(batch_prompts, borrowed)
            mismatched = policy.token_logps(shifted).sum(-1)
            kl = (mismatched - cached["mismatched"][picked].to(device)).mean()
        desirable = labels[picked].to(device)
        losses = kto_loss(logps, reference_logps, desirable, kl, beta=method.beta,
                          desirable_weight=method.desirable_weight,
                          undesirable_weight=method.undesirable_weight)  # fmt: skip
        with torch.no_grad():
            rewards = method.beta * (logps - reference_logps)
        metrics = {"kl_estimate": kl.item()}
        for name, mask in (("desirable", desirable), ("undesirable", ~desirable)):
            if mask.any():
                metrics[f"{name}_reward"] = rewards[mask].mean().item()
        return losses.mean(), metrics

    return Task(
        "kto",
        IndexSource(len(examples), config.batch_size, config.seed),
        loss,
        [Trainable(policy)],
        policy.save_pretrained,
        {"method": vars(method), "data": data_fingerprint(examples)},
        setup,
    )


def train_kto(
    policy: Policy,
    examples: Sequence[Unpaired],
    config: TrainConfig,
    out_dir: str | Path,
    method: Any = None,
    reference: Policy | None = None,
    **run: Any,
) -> TrainResult:
    """Optimise ``policy`` with :func:`prefloop.objectives.kto_loss`; ``run`` goes to ``fit``."""
    return fit(kto_task(policy, examples, config, method, reference), config, out_dir, **run)
