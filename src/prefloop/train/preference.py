"""Offline preference optimisation: any ``pairwise_loss`` objective over labelled pairs.

Reference (and, for ``inpo``, previous-iterate) log-probs are computed once and cached in the
run directory; reference-free objectives never compute them. Per-pair ``margin`` and
``strength`` come from the records; the SPO preference-degree auxiliary and any extra loss
(e.g. C3PO's likelihood constraint) are added to the objective.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from prefloop.data.records import Comparison
from prefloop.models.policy import Policy
from prefloop.objectives import default_options, pairwise_loss, requires_reference
from prefloop.train.engine import TrainConfig, TrainResult, run_training
from prefloop.train.spo import PreferenceDegreeAuxiliary

REFERENCE_CACHE = "reference_logps.safetensors"
PREVIOUS_CACHE = "previous_logps.safetensors"
#: Options read by the trainer itself rather than by ``pairwise_loss``.
TRAINER_OPTIONS = {"spo_weight": 0.0, "spo_classes": 3}
#: ``extra_loss(indices) -> (loss, metrics)``, added to the objective at every step.
ExtraLoss = Callable[[Sequence[int]], tuple[torch.Tensor, dict[str, float]]]


def reference_logps(
    reference: Policy,
    comparisons: Sequence[Comparison],
    out_dir: str | Path | None = None,
    cache_name: str = REFERENCE_CACHE,
) -> dict[str, torch.Tensor]:
    """Summed log-probs of chosen and rejected under ``reference``, computed once.

    They are cached in ``out_dir`` so that a resumed run uses the reference of the original
    start rather than the partly trained policy.
    """
    cache = Path(out_dir, cache_name) if out_dir is not None else None
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


def record_options(
    objective: str, comparisons: Sequence[Comparison], use_margin: bool
) -> dict[str, torch.Tensor]:
    """Per-pair ``margin`` (if asked) and ``strength`` (if the objective takes one)."""
    found: dict[str, torch.Tensor] = {}
    if use_margin:
        if any(c.margin is None for c in comparisons):
            raise ValueError("use_margin needs a margin on every comparison")
        found["margin"] = torch.tensor([c.margin for c in comparisons], dtype=torch.float32)
    if "strength" in default_options(objective):
        found["strength"] = torch.tensor(
            [1.0 if c.strength is None else c.strength for c in comparisons], dtype=torch.float32
        )
    return found


def train_preference(
    policy: Policy,
    comparisons: Sequence[Comparison],
    config: TrainConfig,
    out_dir: str | Path,
    objective: str = "dpo",
    beta: float | None = 0.1,
    reference: Policy | None = None,
    use_margin: bool = False,
    options: dict[str, Any] | None = None,
    resume: bool = False,
    show_progress: bool = True,
    previous: Policy | None = None,
    extra_loss: ExtraLoss | None = None,
) -> TrainResult:
    """Optimise ``policy`` on ``comparisons`` with the pairwise objective ``objective``.

    The reference defaults to the policy as it is before training (unused by reference-free
    objectives). ``beta=None`` means the objective's own default. Chosen and rejected share one
    forward pass. ``options`` go to :func:`prefloop.objectives.pairwise_loss` (e.g.
    ``label_smoothing``), except the trainer options ``spo_weight`` (lambda of the SPO
    auxiliary, 0 = off) and ``spo_classes``. ``use_margin`` passes each record's margin;
    objectives with a ``strength`` option read the records' ``strength`` (missing = 1).
    ``inpo`` takes its previous iterate's log-probs from ``previous`` (default: the reference,
    i.e. the first iteration). ``extra_loss`` is added to the loss at every step.
    """
    options = dict(options or {})
    trainer = {k: options.pop(k, default) for k, default in TRAINER_OPTIONS.items()}
    metric_beta = beta if beta is not None else default_options(objective)["beta"]
    needs_reference = requires_reference(objective)
    cached = reference_logps(reference or policy, comparisons, out_dir) if needs_reference else {}
    # An explicit option (e.g. strength=0.7 for every pair) wins over the records' values.
    found = record_options(objective, comparisons, use_margin)
    tensors = {k: v for k, v in found.items() if k not in options}
    if objective == "inpo" and "previous_chosen_logps" not in options:
        prev = reference_logps(
            previous or reference or policy, comparisons, out_dir, PREVIOUS_CACHE
        )
        tensors |= {"previous_chosen_logps": prev["chosen"],
                    "previous_rejected_logps": prev["rejected"]}  # fmt: skip
    tensors |= {k: options.pop(k) for k in list(options) if isinstance(options[k], torch.Tensor)}
    spo = None
    if trainer["spo_weight"]:
        spo = PreferenceDegreeAuxiliary(policy, int(trainer["spo_classes"]), config.seed)

    def loss_fn(indices: Sequence[int]):
        pairs = [comparisons[i] for i in indices]
        prompts = [c.prompt for c in pairs]
        batch = policy.encode(
            prompts + prompts, [c.chosen for c in pairs] + [c.rejected for c in pairs]
        )
        chosen, rejected = policy.token_logps(batch).sum(-1).chunk(2)
        device = chosen.device
        picked = torch.tensor(indices)
        chosen_lengths, rejected_lengths = batch.response_lengths.to(device).chunk(2)
        per_example = {k: v[picked].to(device) for k, v in tensors.items()}
        ref_chosen = cached["chosen"][picked].to(device) if needs_reference else None
        ref_rejected = cached["rejected"][picked].to(device) if needs_reference else None
        losses = pairwise_loss(
            objective,
            chosen,
            rejected,
            ref_chosen,
            ref_rejected,
            beta=beta,
            chosen_lengths=chosen_lengths,
            rejected_lengths=rejected_lengths,
            **options,
            **per_example,
        )
        loss = losses.mean()
        metrics = _pair_metrics(chosen, rejected, ref_chosen, ref_rejected, metric_beta)
        if spo is not None:
            aux, aux_metrics = spo.loss(prompts + prompts, [c.chosen for c in pairs] +
                                        [c.rejected for c in pairs])  # fmt: skip
            loss = loss + trainer["spo_weight"] * aux
            metrics |= aux_metrics
        if extra_loss is not None:
            extra, extra_metrics = extra_loss(indices)
            loss = loss + extra
            metrics |= extra_metrics
        return loss, metrics

    try:
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
    finally:
        if spo is not None:
            spo.detach()


@torch.no_grad()
def _pair_metrics(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor | None,
    ref_rejected: torch.Tensor | None,
    beta: float,
) -> dict[str, float]:
    """DPO implicit-reward accuracy and margin; log-prob ones for reference-free objectives."""
    if ref_chosen is None or ref_rejected is None:
        gap = chosen - rejected
        return {"logp_accuracy": (gap > 0).float().mean().item(),
                "logp_margin": gap.mean().item(), "chosen_logps": chosen.mean().item()}  # fmt: skip
    gap = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
    return {"reward_accuracy": (gap > 0).float().mean().item(),
            "reward_margin": gap.mean().item(), "chosen_logps": chosen.mean().item()}  # fmt: skip
