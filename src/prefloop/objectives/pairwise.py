"""Registry of pairwise (chosen vs rejected) objectives and the ``pairwise_loss`` dispatcher."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefloop.objectives import direct, reference_free
from prefloop.objectives._common import Tensor

#: Options the trainer always passes; objectives that do not use them ignore them.
COMMON_OPTIONS = ("chosen_lengths", "rejected_lengths")
_LOGP_ARGS = {
    "policy_chosen_logps",
    "policy_rejected_logps",
    "reference_chosen_logps",
    "reference_rejected_logps",
}


@dataclass(frozen=True)
class Objective:
    """A registered pairwise objective: its loss function and whether it needs a reference."""

    name: str
    fn: Callable[..., Tensor]
    requires_reference: bool
    source: str

    @property
    def options(self) -> dict[str, Any]:
        """Keyword options with their defaults (``beta`` included)."""
        params = inspect.signature(self.fn).parameters.values()
        return {p.name: p.default for p in params if p.name not in _LOGP_ARGS}


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in (
        Objective("dpo", direct.dpo, True, "Rafailov et al. 2023"),
        Objective("ipo", direct.ipo, True, "Azar et al. 2023"),
        Objective("hinge", direct.hinge, True, "Zhao et al. 2023 (SLiC-HF)"),
        Objective("cdpo", direct.cdpo, True, "Mitchell 2023 (conservative DPO note)"),
        Objective("robust", direct.robust, True, "Chowdhury et al. 2024"),
        Objective("f-dpo", direct.f_dpo, True, "Wang et al. 2023 (Beyond Reverse KL)"),
        Objective("soft-preference", direct.soft_preference, True, "Zhai et al. 2024 (OSP)"),
        Objective("inpo", direct.inpo, True, "Zhang et al. 2024"),
        Objective("dno", direct.dno, True, "Rosset et al. 2024"),
        Objective("simpo", reference_free.simpo, False, "Meng et al. 2024"),
        Objective("orpo", reference_free.orpo, False, "Hong et al. 2024"),
        Objective("cpl", reference_free.cpl, False, "Hejna et al. 2024"),
    )
}


def objective_names() -> list[str]:
    """Names accepted by :func:`pairwise_loss`, in registry order."""
    return list(OBJECTIVES)


def get_objective(name: str) -> Objective:
    """Look up an objective; unknown names raise ``ValueError`` listing the valid ones."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(
            f"unknown objective {name!r}; valid names: {', '.join(OBJECTIVES)}"
        ) from None


def requires_reference(name: str) -> bool:
    """Whether objective ``name`` uses reference-model log-probs."""
    return get_objective(name).requires_reference


def default_options(name: str) -> dict[str, Any]:
    """Options of objective ``name`` with their defaults (for CLIs and docs)."""
    return get_objective(name).options


def _check_shapes(name: str, tensors: dict[str, Tensor | None]) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"objective {name!r}: log-prob shapes differ: {shapes}")


def pairwise_loss(
    name: str,
    policy_chosen_logps: Tensor,
    policy_rejected_logps: Tensor,
    reference_chosen_logps: Tensor | None,
    reference_rejected_logps: Tensor | None,
    beta: float | None = None,
    **options: Any,
) -> Tensor:
    """Per-example loss (shape ``[B]``) of pairwise objective ``name``.

    Log-prob arguments are summed response log-probs ``[B]``. ``beta=None`` uses the
    objective's default (0.1, except simpo: 2.0). Reference arguments may be None for
    reference-free objectives (simpo, orpo, cpl), which ignore them. ``chosen_lengths`` and
    ``rejected_lengths`` are accepted by every objective; any other option the objective does
    not define raises ``TypeError``.
    """
    objective = get_objective(name)
    accepted = objective.options
    unknown = [k for k in options if k not in accepted and k not in COMMON_OPTIONS]
    if unknown:
        valid = ", ".join(k for k in accepted if k != "beta")
        raise TypeError(f"objective {name!r} got unknown option(s) {unknown}; valid: {valid}")
    kwargs = {k: v for k, v in options.items() if k in accepted}
    if beta is not None:
        kwargs["beta"] = beta
    logps = {
        "policy_chosen_logps": policy_chosen_logps,
        "policy_rejected_logps": policy_rejected_logps,
    }
    if objective.requires_reference:
        if reference_chosen_logps is None or reference_rejected_logps is None:
            raise ValueError(
                f"objective {name!r} needs reference log-probs "
                "(reference_chosen_logps, reference_rejected_logps), got None"
            )
        logps["reference_chosen_logps"] = reference_chosen_logps
        logps["reference_rejected_logps"] = reference_rejected_logps
    _check_shapes(name, logps)
    return objective.fn(*logps.values(), **kwargs)
