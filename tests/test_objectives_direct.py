"""Reference-based objectives: hand-computed values, gradient signs and paper limits."""

from __future__ import annotations

import math

import pytest
import torch

from prefloop.objectives import pairwise_loss


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


# Fixed batch: lr_w = [0.5, -1.0], lr_l = [-1.0, 1.0], delta = [1.5, -2.0].
PC, PR, RC, RR = t(-10.0, -12.0), t(-11.0, -9.0), t(-10.5, -11.0), t(-10.0, -10.0)
LR_W, LR_L = [0.5, -1.0], [-1.0, 1.0]
DELTA = [1.5, -2.0]
BETA = 0.5
MARGIN = [0.2, -0.3]


def loss(name: str, beta: float = BETA, **opts) -> torch.Tensor:
    return pairwise_loss(name, PC, PR, RC, RR, beta=beta, **opts)


def check(actual: torch.Tensor, expected: list[float]) -> None:
    assert actual.shape == (len(expected),)
    torch.testing.assert_close(actual, t(*expected), rtol=1e-10, atol=1e-12)


def test_dpo_value() -> None:
    check(loss("dpo"), [-logsig(BETA * d) for d in DELTA])


def test_dpo_margin_inside_logit() -> None:
    expected = [-logsig(BETA * d - m) for d, m in zip(DELTA, MARGIN, strict=True)]
    check(loss("dpo", margin=t(*MARGIN)), expected)


def test_ipo_paper_form_on_summed_ratios() -> None:
    target = 1 / (2 * BETA)
    check(loss("ipo"), [(d - target) ** 2 for d in DELTA])


def test_ipo_margin_shifts_target() -> None:
    expected = [(d - (0.5 + m) / BETA) ** 2 for d, m in zip(DELTA, MARGIN, strict=True)]
    check(loss("ipo", margin=t(*MARGIN)), expected)


def test_ipo_length_normalized_is_trl_variant() -> None:
    cl, rl = [3.0, 4.0], [5.0, 2.0]
    h = [LR_W[i] / cl[i] - LR_L[i] / rl[i] for i in range(2)]
    out = loss("ipo", length_normalized=True, chosen_lengths=t(*cl), rejected_lengths=t(*rl))
    check(out, [(x - 1 / (2 * BETA)) ** 2 for x in h])


def test_ipo_length_normalized_needs_lengths() -> None:
    with pytest.raises(ValueError, match="chosen_lengths"):
        loss("ipo", length_normalized=True)


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_ipo_minimiser_is_half_inverse_beta(beta: float) -> None:
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # policy chosen log-prob
    zero = torch.zeros(1, dtype=torch.float64)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=50, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        value = pairwise_loss("ipo", x, zero, zero, zero, beta=beta).sum()
        value.backward()
        return value

    opt.step(closure)
    assert x.item() == pytest.approx(1 / (2 * beta), rel=1e-6)


def test_hinge_value() -> None:
    check(loss("hinge"), [max(0.0, 1 - BETA * d) for d in DELTA])
    check(loss("hinge", beta=1.0), [0.0, 3.0])


def test_cdpo_value_and_zero_smoothing_is_dpo() -> None:
    eps = 0.1
    expected = [(1 - eps) * -logsig(BETA * d) + eps * -logsig(-BETA * d) for d in DELTA]
    check(loss("cdpo", label_smoothing=eps), expected)
    assert torch.equal(loss("cdpo", label_smoothing=0.0), loss("dpo"))


def test_robust_value() -> None:
    eps = 0.2
    expected = [
        ((1 - eps) * -logsig(BETA * d) - eps * -logsig(-BETA * d)) / (1 - 2 * eps) for d in DELTA
    ]
    check(loss("robust", label_smoothing=eps), expected)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3, 0.45])
def test_robust_is_unbiased_under_label_flips(eps: float) -> None:
    clean = pairwise_loss("dpo", PC, PR, RC, RR, beta=BETA)
    as_labelled = pairwise_loss("robust", PC, PR, RC, RR, beta=BETA, label_smoothing=eps)
    flipped = pairwise_loss("robust", PR, PC, RR, RC, beta=BETA, label_smoothing=eps)  # z -> -z
    torch.testing.assert_close((1 - eps) * as_labelled + eps * flipped, clean)


def test_robust_rejects_half_flip_rate() -> None:
    with pytest.raises(ValueError, match="label_smoothing"):
        loss("robust", label_smoothing=0.5)


def test_fdpo_reverse_kl_is_exactly_dpo() -> None:
    assert torch.equal(loss("f-dpo", divergence="reverse_kl"), loss("dpo"))
    m = t(*MARGIN)
    assert torch.equal(loss("f-dpo", margin=m), loss("dpo", margin=m))


def test_fdpo_forward_kl_value() -> None:
    # f'(u) = -1/u, u = exp(lr)
    s = [(-math.exp(-w), -math.exp(-lo)) for w, lo in zip(LR_W, LR_L, strict=True)]
    check(loss("f-dpo", divergence="forward_kl"), [-logsig(BETA * (w - lo)) for w, lo in s])


def test_fdpo_js_value() -> None:
    # f'(u) = log(2u / (1 + u))
    def fp(lr: float) -> float:
        u = math.exp(lr)
        return math.log(2 * u / (1 + u))

    expected = [-logsig(BETA * (fp(w) - fp(lo))) for w, lo in zip(LR_W, LR_L, strict=True)]
    check(loss("f-dpo", divergence="js"), expected)


@pytest.mark.parametrize("a", [0.3, 0.5, 0.8])
def test_fdpo_alpha_value_and_trl_mapping(a: float) -> None:
    def paper(lr: float) -> float:  # f'(u) = (1 - u^{-a}) / a
        return (1 - math.exp(lr) ** (-a)) / a

    def trl(lr: float, alpha_trl: float) -> float:  # u^{alpha-1} / (alpha-1)
        return math.exp(lr) ** (alpha_trl - 1) / (alpha_trl - 1)

    expected = [-logsig(BETA * (paper(w) - paper(lo))) for w, lo in zip(LR_W, LR_L, strict=True)]
    trl_form = [
        -logsig(BETA * (trl(w, 1 - a) - trl(lo, 1 - a))) for w, lo in zip(LR_W, LR_L, strict=True)
    ]
    check(loss("f-dpo", divergence="alpha", alpha=a), expected)
    check(loss("f-dpo", divergence="alpha", alpha=a), trl_form)


def test_fdpo_alpha_limits() -> None:
    near_zero = loss("f-dpo", divergence="alpha", alpha=1e-7)
    near_one = loss("f-dpo", divergence="alpha", alpha=1 - 1e-7)
    torch.testing.assert_close(near_zero, loss("dpo"), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(near_one, loss("f-dpo", divergence="forward_kl"))


def test_fdpo_exponent_clamp_keeps_losses_finite() -> None:
    big = t(-2000.0, 0.0)
    for dtype in (torch.float32, torch.float16):
        x = big.to(dtype).requires_grad_()
        z = torch.zeros(2, dtype=dtype)
        out = pairwise_loss("f-dpo", x, z, z, z, divergence="forward_kl", beta=0.1)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


def test_fdpo_errors() -> None:
    with pytest.raises(ValueError, match="divergence"):
        loss("f-dpo", divergence="hellinger")
    with pytest.raises(ValueError, match="alpha"):
        loss("f-dpo", divergence="alpha", alpha=1.0)


def test_soft_preference_value_and_hard_limit() -> None:
    p = [0.7, 0.2]
    expected = [
        -(pi * logsig(BETA * d) + (1 - pi) * logsig(-BETA * d))
        for pi, d in zip(p, DELTA, strict=True)
    ]
    check(loss("soft-preference", strength=t(*p)), expected)
    assert torch.equal(
        loss("soft-preference", strength=torch.ones(2, dtype=torch.float64)), loss("dpo")
    )
    assert torch.equal(loss("soft-preference", strength=1.0), loss("dpo"))
    with pytest.raises(ValueError, match="strength"):
        loss("soft-preference", strength=t(1.2, 0.5))


def test_dno_soft_target_and_default_is_dpo_against_previous_iterate() -> None:
    p = 0.8
    expected = [-(p * logsig(BETA * d) + (1 - p) * logsig(-BETA * d)) for d in DELTA]
    check(loss("dno", strength=p), expected)
    torch.testing.assert_close(loss("dno"), loss("dpo"))


def test_inpo_value() -> None:
    prev_c, prev_r = t(-10.2, -11.5), t(-10.5, -9.5)
    r = 1 / 3
    pc, pr, rc, rr = [-10.0, -12.0], [-11.0, -9.0], [-10.5, -11.0], [-10.0, -10.0]
    qc, qr = [-10.2, -11.5], [-10.5, -9.5]
    h = [(pc[i] - pr[i]) - r * (rc[i] - rr[i]) - (1 - r) * (qc[i] - qr[i]) for i in range(2)]
    out = loss("inpo", previous_chosen_logps=prev_c, previous_rejected_logps=prev_r)
    check(out, [(x - 1 / (2 * BETA)) ** 2 for x in h])
    ipo_like = loss("inpo", previous_chosen_logps=prev_c, previous_rejected_logps=prev_r, ratio=1.0)
    torch.testing.assert_close(ipo_like, loss("ipo"))


def test_inpo_needs_previous_iterate() -> None:
    with pytest.raises(ValueError, match="previous_chosen_logps"):
        loss("inpo")
