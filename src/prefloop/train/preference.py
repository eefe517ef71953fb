"""Offline preference optimisation: any ``pairwise_loss`` objective over labelled pairs.

Each objective is a typed method: :func:`pairwise_method` builds its config dataclass from the
loss function's signature (so its defaults live in one place, the loss) plus the trainer's own
options. Reference (and, for ``inpo``, previous-iterate) log-probs are computed once and cached
under a fingerprint of the reference, tokenizer and data; reference-free objectives never
compute them. Per-pair ``margin`` and ``strength`` come from the records; the SPO
preference-degree auxiliary and any extra loss (e.g. C3PO's likelihood constraint) are added
to the objective.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, make_dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from prefloop.data.records import Comparison
from prefloop.models.packing import pack_pairs
from prefloop.models.policy import Policy
from prefloop.objectives import get_objective, objective_names, pairwise_loss
from prefloop.train.caches import cached_sequence_logps, data_fingerprint
from prefloop.train.config import ConfigError, coerce, setting, signature_fields, validate
from prefloop.train.engine import Task, Trainable, TrainConfig, TrainResult, fit
from prefloop.train.sources import IndexSource
from prefloop.train.spo import PreferenceDegreeAuxiliary

#: ``extra_loss(indices) -> (loss, metrics)``, added to the objective at every step.
ExtraLoss = Callable[[Sequence[int]], tuple[torch.Tensor, dict[str, float]]]
#: Loss arguments the trainer fills per pair; they are not settings.
PER_PAIR = ("margin", "chosen_lengths", "rejected_lengths",
            "previous_chosen_logps", "previous_rejected_logps")  # fmt: skip
_LOGPS = ("policy_chosen_logps", "policy_rejected_logps",
          "reference_chosen_logps", "reference_rejected_logps")  # fmt: skip
OPTION_HELP = {
    "beta": "KL strength β (inverse temperature of the implicit reward).",
    "label_smoothing": "Assumed rate ε of flipped labels.",
    "length_normalized": "Average log-ratios per token instead of summing them.",
    "divergence": "f-divergence: reverse_kl, forward_kl, js or alpha.",
    "alpha": "α of the objective (see docs/objectives.md).",
    "strength": "Preference strength for every pair (unset: each record's, missing = 1).",
    "ratio": "INPO's weight of the previous iterate in the reference mixture.",
    "gamma": "SimPO's target reward margin γ (unset: gamma_beta_ratio · β).",
    "gamma_beta_ratio": "SimPO's γ / β.",
    "odds_ratio_weight": "ORPO's λ on the odds-ratio term (unset: β).",
    "conservative_bias": "CPL's conservative weight λ on the rejected segment.",
    "bc_weight": "CPL's behaviour-cloning weight on the chosen segment.",
}


@dataclass
class PairwiseMethod:
    """Options every pairwise objective's trainer has; subclasses add the loss's own."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "policy"
    use_margin: bool = setting(False, "Use each pair's margin (records must have one).")
    spo_weight: float = setting(
        0.0, "Weight λ of the SPO preference-degree auxiliary (0: off).", low=0
    )
    spo_classes: int = setting(3, "Classes of the SPO preference-degree head.", low=2)

    def __post_init__(self) -> None:
        owner = f"method {self.name!r}"
        validate(self, owner)
        one = torch.zeros(1)
        extra = {k: one for k in ("previous_chosen_logps", "previous_rejected_logps")
                 if k in get_objective(self.name).options}  # fmt: skip
        try:  # the loss checks its own option ranges: one dry call reports them now
            pairwise_loss(self.name, one, one, one, one, **self.loss_options(), **extra,
                          chosen_lengths=torch.ones(1), rejected_lengths=torch.ones(1))  # fmt: skip
        except ValueError as error:
            raise ConfigError(f"{owner}: {error}") from None

    def loss_options(self) -> dict[str, Any]:
        """The options that go to the loss (unset ones keep the loss's handling)."""
        own = {f.name for f in fields(PairwiseMethod)}
        options = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in own}
        if options.get("strength") is None:
            options.pop("strength", None)
        return options


@functools.cache
def pairwise_method(objective: str) -> type[PairwiseMethod]:
    """The config dataclass of pairwise objective ``objective`` (defaults from its loss)."""
    spec = get_objective(objective)
    strength = (float | None, setting(None, OPTION_HELP["strength"], low=0, high=1))
    option_fields = signature_fields(spec.fn, PER_PAIR + _LOGPS, OPTION_HELP,
                                     {"strength": strength})  # fmt: skip
    cls_name = "".join(part.capitalize() for part in objective.split("-")) + "Config"
    cls = make_dataclass(cls_name, option_fields, bases=(PairwiseMethod,))
    cls.name = objective
    cls.__doc__ = f"Settings of the {objective!r} objective ({spec.source})."
    return cls


def method_config(objective: str, **options: Any) -> PairwiseMethod:
    """The settings of ``objective``, e.g. ``method_config("simpo", beta=2.5)``; an unknown
    option is a :class:`ConfigError` naming it."""
    return coerce(pairwise_method(objective), f"method {objective!r}", options)


def pairwise_methods() -> dict[str, type[PairwiseMethod]]:
    return {name: pairwise_method(name) for name in objective_names()}


def _record_tensors(method: PairwiseMethod, pairs: Sequence[Comparison]) -> dict[str, torch.Tensor]:
    """Per-pair ``margin`` (if asked) and ``strength`` (if the objective takes one)."""
    found: dict[str, torch.Tensor] = {}
    if method.use_margin:
        if any(c.margin is None for c in pairs):
            raise ConfigError(f"method {method.name!r}: use_margin needs a margin on every pair")
        found["margin"] = torch.tensor([c.margin for c in pairs], dtype=torch.float32)
    # a per-pair strength, unless the objective has none or one was set for every pair
    if "strength" in get_objective(method.name).options and method.strength is None:
        found["strength"] = torch.tensor(
            [1.0 if c.strength is None else c.strength for c in pairs], dtype=torch.float32
        )
    return found


def preference_task(
    policy: Policy,
    comparisons: Sequence[Comparison],
    config: TrainConfig,
    method: PairwiseMethod,
    reference: Policy | None = None,
    previous: Policy | None = None,
    extra_loss: ExtraLoss | None = None,
) -> Task:
    """DPO-family training of ``policy`` on ``comparisons``; see the module docstring.

    The reference defaults to the policy as it is before training; ``inpo`` takes its previous
    iterate's log-probs from ``previous`` (default: the reference, the first iteration).
    """
    objective = get_objective(method.name)
    prompts = [c.prompt for c in comparisons]
    responses = {"chosen": [c.chosen for c in comparisons],
                 "rejected": [c.rejected for c in comparisons]}  # fmt: skip
    tensors = _record_tensors(method, comparisons)
    # tokenised once, not in every step
    rows = policy.tokenize(prompts, responses["chosen"], responses["rejected"])

    def setup(out_dir: Path, write: bool) -> None:
        """Reference (and previous-iterate) log-probs, before the policy moves."""
        if objective.requires_reference:
            ref = cached_sequence_logps(reference or policy, prompts, responses, out_dir,
                                        "reference_logps", write)  # fmt: skip
            tensors.update(reference_chosen=ref["chosen"], reference_rejected=ref["rejected"])
        if "previous_chosen_logps" in objective.options:
            prev = cached_sequence_logps(previous or reference or policy, prompts, responses,
                                         out_dir, "previous_logps", write)  # fmt: skip
            tensors.update(previous_chosen_logps=prev["chosen"],
                           previous_rejected_logps=prev["rejected"])  # fmt: skip

    options = method.loss_options()
    beta = options["beta"]
    spo = PreferenceDegreeAuxiliary(policy, method.spo_classes, config.seed) if (
        method.spo_weight
    ) else None  # fmt: skip

    def loss(indices: list[int]):
        batch = pack_pairs([rows[i] for i in indices], policy.tokenizer.pad_token_id)
        chosen, rejected = policy.pair_logps(batch)  # the prompt computed once per pair
        device = chosen.device
        picked = torch.tensor(indices)
        per_pair = {k: v[picked].to(device) for k, v in tensors.items()}
        ref_chosen = per_pair.pop("reference_chosen", None)
        ref_rejected = per_pair.pop("reference_rejected", None)
        chosen_lengths, rejected_lengths = (batch.chosen_lengths.to(device),
                                            batch.rejected_lengths.to(device))  # fmt: skip
        losses = pairwise_loss(method.name, chosen, rejected, ref_chosen, ref_rejected,
                               chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
                               **options, **per_pair)  # fmt: skip
        total = losses.mean()
        metrics = _pair_metrics(chosen, rejected, ref_chosen, ref_rejected, beta)
        if spo is not None:
            pairs = [comparisons[i] for i in indices]
            batch_prompts = [c.prompt for c in pairs] * 2
            aux, aux_metrics = spo.loss(batch_prompts, [c.chosen for c in pairs]
                                        + [c.rejected for c in pairs])  # fmt: skip
            total = total + method.spo_weight * aux
            metrics |= aux_metrics
        if extra_loss is not None:
            extra, extra_metrics = extra_loss(indices)
            total = total + extra
            metrics |= extra_metrics
        return total, metrics

    trainables = [Trainable(policy)] + ([Trainable(spo, "head")] if spo else [])
    return Task(
        method.name,
        IndexSource(len(comparisons), config.batch_size, config.seed),
        loss,
        trainables,
        policy.save_pretrained,  # the SPO head is an auxiliary: it is not part of the result
        {"method": {"name": method.name, **vars(method)}, "data": data_fingerprint(comparisons)},
        setup,
    )


def train_preference(
    policy: Policy,
    comparisons: Sequence[Comparison],
    config: TrainConfig,
    out_dir: str | Path,
    method: PairwiseMethod | None = None,
    reference: Policy | None = None,
    previous: Policy | None = None,
    extra_loss: ExtraLoss | None = None,
    **run: Any,
) -> TrainResult:
    """Train ``policy`` with ``method`` (default DPO); ``run`` goes to :func:`fit`."""
    method = method or method_config("dpo")
    task = preference_task(policy, comparisons, config, method, reference, previous, extra_loss)
    return fit(task, config, out_dir, **run)


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
