"""Offline preference optimisation: any ``pairwise_loss`` objective over labelled pairs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from prefloop.data.records import Comparison
from prefloop.models.policy import Policy
from prefloop.objectives import pairwise_loss
from prefloop.train.engine import TrainConfig, TrainResult, run_training

REFERENCE_CACHE = "reference_logps.safetensors"


def reference_logps(
    reference: Policy, comparisons: Sequence[Comparison], out_dir: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """Summed log-probs of chosen and rejected under the reference, computed once.

    They are cached in ``out_dir`` so that a resumed run uses the reference of the original
    start rather than the partly trained policy.
    """
    cache = Path(out_dir, REFERENCE_CACHE) if out_dir is not None else None
    if cache is not None and cache.exists():
        cached = load_file(cache)
        if cached["chosen"].numel() == len(comparisons):
            return cached
    prompts = [c.prompt for c in comparisons]
    chosen, chosen_lengths = reference.sequence_logps(prompts, [c.chosen for c in comparisons])
    rejected, rejected_lengths = reference.sequence_logps(
        prompts, [c.rejected for c in comparisons]
    )
    logps = {"chosen": chosen, "rejected": rejected,
             "chosen_lengths": chosen_lengths, "rejected_lengths": rejected_lengths}  # fmt: skip
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file(logps, cache)
    return logps


def train_preference(
    policy: Policy,
    comparisons: Sequence[Comparison],
    config: TrainConfig,
    out_dir: str | Path,
    objective: str = "dpo",
    beta: float = 0.1,
    reference: Policy | None = None,
    use_margin: bool = False,
    options: dict[str, Any] | None = None,
    resume: bool = False,
    show_progress: bool = True,
) -> TrainResult:
    """Optimise ``policy`` on ``comparisons`` with the pairwise objective ``objective``.

    The reference defaults to the policy as it is before training. Chosen and rejected share one
    forward pass. ``options`` go to :func:`prefloop.objectives.pairwise_loss` (e.g.
    ``label_smoothing``); ``use_margin`` passes each record's margin and strength-carrying
    objectives read the records' ``strength``.
    """
    options = dict(options or {})
    cached = reference_logps(reference or policy, comparisons, out_dir)
    if use_margin:
        if any(c.margin is None for c in comparisons):
            raise ValueError("use_margin needs a margin on every comparison")
        options["margin"] = torch.tensor([c.margin for c in comparisons], dtype=torch.float32)
    if objective in ("soft-preference", "dno") and "strength" not in options:
        options["strength"] = torch.tensor(
            [1.0 if c.strength is None else c.strength for c in comparisons], dtype=torch.float32
        )

    def loss_fn(indices: Sequence[int]):
        pairs = [comparisons[i] for i in indices]
        prompts = [c.prompt for c in pairs]
        batch = policy.encode(
            prompts + prompts, [c.chosen for c in pairs] + [c.rejected for c in pairs]
        )
        chosen, rejected = policy.token_logps(batch).sum(-1).chunk(2)
        device = chosen.device
        picked = torch.tensor(indices)
        per_example = {
            k: v[picked].to(device) for k, v in options.items() if isinstance(v, torch.Tensor)
        }
        scalars = {k: v for k, v in options.items() if not isinstance(v, torch.Tensor)}
        losses = pairwise_loss(
            objective,
            chosen,
            rejected,
            cached["chosen"][picked].to(device),
            cached["rejected"][picked].to(device),
            beta=beta,
            chosen_lengths=cached["chosen_lengths"][picked].to(device),
            rejected_lengths=cached["rejected_lengths"][picked].to(device),
            **scalars,
            **per_example,
        )
        with torch.no_grad():
            chosen_reward = beta * (chosen - cached["chosen"][picked].to(device))
            rejected_reward = beta * (rejected - cached["rejected"][picked].to(device))
        metrics = {
            "reward_accuracy": (chosen_reward > rejected_reward).float().mean().item(),
            "reward_margin": (chosen_reward - rejected_reward).mean().item(),
            "chosen_logps": chosen.mean().item(),
        }
        return losses.mean(), metrics

    return run_training(
        policy.model,
        len(comparisons),
        loss_fn,
        config,
        out_dir,
        policy.save_pretrained,
        resume=resume,
        description=objective,
        show_progress=show_progress,
    )
