"""Registry, dispatcher errors, common options, and gradient signs for every objective."""

from __future__ import annotations

import pytest
import torch

from prefloop.objectives import (
    OBJECTIVES,
    default_options,
    objective_names,
    pairwise_loss,
    requires_reference,
)

EXPECTED_NAMES = {
    "dpo", "ipo", "hinge", "cdpo", "robust", "f-dpo", "soft-preference",
    "inpo", "dno", "simpo", "orpo", "cpl",
}  # fmt: skip

# Options that make each objective non-trivial (not just its default).
OPTIONS: dict[str, dict] = {
    "dpo": {},
    "ipo": {"length_normalized": True},
    "hinge": {},
    "cdpo": {"label_smoothing": 0.2},
    "robust": {"label_smoothing": 0.2},
    "f-dpo": {"divergence": "alpha", "alpha": 0.3},
    "soft-preference": {"strength": torch.tensor([0.9, 0.6])},
    "inpo": {
        "previous_chosen_logps": torch.tensor([-10.0, -11.0]),
        "previous_rejected_logps": torch.tensor([-10.0, -9.0]),
    },
    "dno": {"strength": torch.tensor([0.9, 0.7])},
    "simpo": {},
    "orpo": {},
    "cpl": {"conservative_bias": 0.5, "bc_weight": 1.0},
}
CASES = [*OPTIONS.items(), *[("f-dpo", {"divergence": d}) for d in ("forward_kl", "js")]]


def batch() -> dict[str, torch.Tensor]:
    return {
        "policy_chosen_logps": torch.tensor([-10.0, -12.0], requires_grad=True),
        "policy_rejected_logps": torch.tensor([-11.0, -9.0], requires_grad=True),
        "reference_chosen_logps": torch.tensor([-10.5, -11.0]),
        "reference_rejected_logps": torch.tensor([-10.0, -10.0]),
        "chosen_lengths": torch.tensor([4.0, 5.0]),
        "rejected_lengths": torch.tensor([3.0, 6.0]),
    }


def test_names_and_reference_flags() -> None:
    assert set(objective_names()) == EXPECTED_NAMES == set(OBJECTIVES) == set(OPTIONS)
    assert {n for n in EXPECTED_NAMES if not requires_reference(n)} == {"simpo", "orpo", "cpl"}
    assert default_options("simpo")["beta"] == 2.0
    assert default_options("ipo")["length_normalized"] is False


@pytest.mark.parametrize(("name", "opts"), CASES)
def test_raising_chosen_logp_lowers_loss(name: str, opts: dict) -> None:
    b = batch()
    out = pairwise_loss(name, **b, beta=0.1, **opts)  # beta=0.1: IPO/INPO below their target
    assert out.shape == (2,)
    out.sum().backward()
    assert (b["policy_chosen_logps"].grad < 0).all()
    assert (b["policy_rejected_logps"].grad > 0).all()


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_common_options_accepted_everywhere(name: str) -> None:
    out = pairwise_loss(name, **batch(), **OPTIONS[name])
    assert torch.isfinite(out).all()


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown objective 'dop'.*dpo.*simpo"):
        pairwise_loss("dop", **batch())


@pytest.mark.parametrize("name", ["dpo", "simpo"])
def test_unknown_option_is_named(name: str) -> None:
    with pytest.raises(TypeError, match=f"'{name}'.*'label_smothing'"):
        pairwise_loss(name, **batch(), label_smothing=0.1)


def test_option_of_another_objective_is_rejected() -> None:
    with pytest.raises(TypeError, match="gamma"):
        pairwise_loss("dpo", **batch(), gamma=0.5)


def test_missing_reference_names_objective() -> None:
    b = batch()
    b["reference_rejected_logps"] = None
    with pytest.raises(ValueError, match="'dpo' needs reference"):
        pairwise_loss("dpo", **b)


def test_reference_free_accepts_none_reference() -> None:
    b = batch()
    b["reference_chosen_logps"] = b["reference_rejected_logps"] = None
    assert pairwise_loss("simpo", **b).shape == (2,)


def test_shape_mismatch_is_rejected() -> None:
    b = batch()
    b["policy_rejected_logps"] = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="shapes differ"):
        pairwise_loss("dpo", **b)
