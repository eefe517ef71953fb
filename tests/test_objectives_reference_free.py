"""SimPO, ORPO and CPL against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from prefloop.objectives import pairwise_loss


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


PC, PR = [-4.0, -9.0], [-6.0, -3.0]
CL, RL = [4.0, 5.0], [3.0, 6.0]
LENGTHS = {"chosen_lengths": t(*CL), "rejected_lengths": t(*RL)}


def loss(name: str, **opts) -> torch.Tensor:
    return pairwise_loss(name, t(*PC), t(*PR), None, None, **opts)


def check(actual: torch.Tensor, expected: list[float]) -> None:
    torch.testing.assert_close(actual, t(*expected), rtol=1e-10, atol=1e-12)


def avg(i: int) -> tuple[float, float]:
    return PC[i] / CL[i], PR[i] / RL[i]


def test_simpo_defaults_beta_two_and_ratio_half() -> None:
    # beta = 2.0, gamma = 0.5 * beta = 1.0
    expected = [-logsig(2.0 * (avg(i)[0] - avg(i)[1]) - 1.0) for i in range(2)]
    check(loss("simpo", **LENGTHS), expected)


def test_simpo_absolute_gamma_and_margin() -> None:
    m = [0.1, -0.2]
    expected = [-logsig(0.5 * (avg(i)[0] - avg(i)[1]) - 0.3 - m[i]) for i in range(2)]
    check(loss("simpo", beta=0.5, gamma=0.3, margin=t(*m), **LENGTHS), expected)


def test_simpo_needs_lengths() -> None:
    with pytest.raises(ValueError, match="simpo.*chosen_lengths"):
        loss("simpo")


def test_orpo_value() -> None:
    def log_odds(a: float) -> float:
        return a - math.log(1 - math.exp(a))

    lam = 0.25
    expected = [
        -avg(i)[0] - lam * logsig(log_odds(avg(i)[0]) - log_odds(avg(i)[1])) for i in range(2)
    ]
    check(loss("orpo", odds_ratio_weight=lam, **LENGTHS), expected)
    # the weight falls back to beta (TRL's ORPO beta is the paper's lambda)
    check(loss("orpo", beta=lam, **LENGTHS), expected)


def test_orpo_near_certain_tokens_stay_finite() -> None:
    x = t(-1e-12, -1e-3).requires_grad_()
    out = pairwise_loss("orpo", x, t(-5.0, -5.0), None, None, **LENGTHS)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


def test_cpl_value_with_conservative_bias_and_bc() -> None:
    alpha, lam, bc = 0.3, 0.5, 2.0
    expected = [
        -logsig(alpha * PC[i] - lam * alpha * PR[i]) + bc * (-PC[i] / CL[i]) for i in range(2)
    ]
    out = loss("cpl", alpha=alpha, conservative_bias=lam, bc_weight=bc, **LENGTHS)
    check(out, expected)


def test_cpl_alpha_falls_back_to_beta() -> None:
    check(loss("cpl", beta=0.3), [-logsig(0.3 * (PC[i] - PR[i])) for i in range(2)])


def test_cpl_rejects_bias_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="conservative_bias"):
        loss("cpl", conservative_bias=0.0)
    with pytest.raises(ValueError, match="conservative_bias"):
        loss("cpl", conservative_bias=1.5)
