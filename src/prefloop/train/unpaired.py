"""KTO training over unpaired desirable / undesirable responses.

The reference point ``z0`` is the KTO paper's estimate of KL(pi || pi_ref): each batch pairs
every prompt with another example's completion (a fixed seeded derangement, so the reference
side is computed once and cached) and averages ``log pi - log pi_ref`` over those mismatched
pairs, without gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from prefloop.data.records import Unpaired
from prefloop.models.policy import Policy
from prefloop.objectives import kto_loss
from prefloop.train.engine import TrainConfig, TrainResult, run_training

REFERENCE_CACHE = "kto_reference_logps.safetensors"


def mismatched_partners(num_examples: int, seed: int) -> list[int]:
    """A seeded derangement: example ``i`` borrows the completion of ``partners[i] != i``."""
    if num_examples < 2:
        raise ValueError("KTO's KL estimate needs at least two examples")
    order = np.random.default_rng(seed).permutation(num_examples)
    partners = np.empty(num_examples, dtype=int)
    partners[order] = np.roll(order, 1)  # one cycle through a random order: no fixed point
    return partners.tolist()


def _reference_logps(
    reference: Policy, examples: Sequence[Unpaired], partners: list[int], out_dir: Path
) -> dict[str, torch.Tensor]:
    cache = out_dir / REFERENCE_CACHE
    if cache.exists():
        cached = load_file(cache)
        if cached["matched"].numel() == len(examples):
            return cached
    prompts = [e.prompt for e in examples]
    matched, _ = reference.sequence_logps(prompts, [e.completion for e in examples])
    mismatched, _ = reference.sequence_logps(prompts, [examples[j].completion for j in partners])
    logps = {"matched": matched, "mismatched": mismatched}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(logps, cache)
    return logps


def train_kto(
    policy: Policy,
    examples: Sequence[Unpaired],
    config: TrainConfig,
    out_dir: str | Path,
    beta: float | None = 0.1,
    reference: Policy | None = None,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    resume: bool = False,
    show_progress: bool = True,
) -> TrainResult:
    """Optimise ``policy`` with :func:`prefloop.objectives.kto_loss` on labelled completions.

    The reference defaults to the policy before training; ``beta=None`` means 0.1.
    """
    beta = 0.1 if beta is None else beta
    out_dir = Path(out_dir)
    partners = mismatched_partners(len(examples), config.seed)
    cached = _reference_logps(reference or policy, examples, partners, out_dir)
    labels = torch.tensor([e.label for e in examples], dtype=torch.bool)

    def loss_fn(indices: Sequence[int]):
        prompts = [examples[i].prompt for i in indices]
        batch = policy.encode(prompts, [examples[i].completion for i in indices])
        logps = policy.token_logps(batch).sum(-1)
        picked = torch.tensor(indices)
        device = logps.device
        with torch.no_grad():
            shifted = policy.encode(prompts, [examples[partners[i]].completion for i in indices])
            mismatched = policy.token_logps(shifted).sum(-1)
            kl = (mismatched - cached["mismatched"][picked].to(device)).mean()
        desirable = labels[picked].to(device)
        losses = kto_loss(
            logps,
            cached["matched"][picked].to(device),
            desirable,
            kl,
            beta=beta,
            desirable_weight=desirable_weight,
            undesirable_weight=undesirable_weight,
        )
        with torch.no_grad():
            rewards = beta * (logps - cached["matched"][picked].to(device))
        metrics = {"kl_estimate": kl.item()}
        for name, mask in (("desirable", desirable), ("undesirable", ~desirable)):
            if mask.any():
                metrics[f"{name}_reward"] = rewards[mask].mean().item()
        return losses.mean(), metrics

    return run_training(
        policy.model,
        len(examples),
        loss_fn,
        config,
        out_dir,
        policy.save_pretrained,
        resume=resume,
        description="kto",
        show_progress=show_progress,
    )
