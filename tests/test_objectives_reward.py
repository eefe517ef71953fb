"""KTO, Bradley-Terry, ensemble combiners, token rewards and the SPO auxiliary task."""

from __future__ import annotations

import math

import pytest
import torch

from prefloop.objectives import (
    bradley_terry_loss,
    combine_rewards,
    degree_variants,
    kto_loss,
    preference_degree_loss,
    token_rewards,
)


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_kto_value_and_clamped_detached_reference_point() -> None:
    policy, ref = t(-5.0, -6.0, -7.0), t(-5.5, -5.5, -6.0)
    desirable = torch.tensor([True, False, True])
    r, z0, beta, wd, wu = [0.5, -0.5, -1.0], 0.3, 0.5, 1.5, 0.7
    expected = [
        wd * (1 - sig(beta * (r[0] - z0))),
        wu * (1 - sig(beta * (z0 - r[1]))),
        wd * (1 - sig(beta * (r[2] - z0))),
    ]
    kl = torch.tensor(z0, dtype=torch.float64, requires_grad=True)
    out = kto_loss(
        policy, ref, desirable, kl, beta=beta, desirable_weight=wd, undesirable_weight=wu
    )
    torch.testing.assert_close(out, t(*expected))
    assert not out.requires_grad  # kl_estimate is detached
    neg = kto_loss(policy, ref, desirable, -2.0, beta=beta)
    torch.testing.assert_close(neg, kto_loss(policy, ref, desirable, 0.0, beta=beta))


def test_kto_gradient_signs() -> None:
    policy = t(-5.0, -6.0).requires_grad_()
    out = kto_loss(policy, t(-5.0, -6.0), torch.tensor([True, False]), 0.0)
    out.sum().backward()
    assert policy.grad[0] < 0 < policy.grad[1]


def test_kto_requires_bool_mask() -> None:
    with pytest.raises(ValueError, match="BoolTensor"):
        kto_loss(t(-1.0), t(-1.0), torch.tensor([1]), 0.0)


def test_bradley_terry_plain_margin_smoothing_strength() -> None:
    c, r = t(1.0, 0.2), t(0.5, 0.9)
    torch.testing.assert_close(bradley_terry_loss(c, r), t(-logsig(0.5), -logsig(-0.7)))
    m = [0.1, 0.0]
    torch.testing.assert_close(
        bradley_terry_loss(c, r, margin=t(*m)), t(-logsig(0.4), -logsig(-0.7))
    )
    eps = 0.1  # Secrets of RLHF II: -(1-eps) logsig(d) - eps logsig(-d)
    expected = [-(1 - eps) * logsig(d) - eps * logsig(-d) for d in (0.5, -0.7)]
    torch.testing.assert_close(bradley_terry_loss(c, r, label_smoothing=eps), t(*expected))
    p = [0.8, 1.0]
    expected = [
        -(pi * logsig(d) + (1 - pi) * logsig(-d)) for pi, d in zip(p, (0.5, -0.7), strict=True)
    ]
    torch.testing.assert_close(bradley_terry_loss(c, r, strength=t(*p)), t(*expected))


def test_bradley_terry_gradient_sign() -> None:
    c = t(0.3, -1.0).requires_grad_()
    bradley_terry_loss(c, t(0.0, 0.0)).sum().backward()
    assert (c.grad < 0).all()


def test_combine_rewards_hand_numbers() -> None:
    rewards = t(1.0, 2.0, 3.0, 0.0, 2.0, 1.0).reshape(3, 2)
    torch.testing.assert_close(combine_rewards(rewards, "mean"), t(2.0, 1.0))
    torch.testing.assert_close(combine_rewards(rewards, "wco"), t(1.0, 0.0))
    # population variance of {1,3,2} and {2,0,1} is 2/3
    uwo = combine_rewards(rewards, "uwo", uwo_lambda=0.5)
    torch.testing.assert_close(uwo, t(2.0 - 1 / 3, 1.0 - 1 / 3))
    with pytest.raises(ValueError, match="median"):
        combine_rewards(rewards, "median")


def test_token_rewards_masked() -> None:
    pol = t(-1.0, -2.0, float("-inf")).reshape(1, 3)
    ref = t(-1.5, -1.0, -3.0).reshape(1, 3)
    out = token_rewards(pol, ref, torch.tensor([[1, 1, 0]]), beta=0.5)
    torch.testing.assert_close(out, t(0.25, -0.5, 0.0).reshape(1, 3))


def test_degree_variants_nested_labels() -> None:
    tokens = ["the", "capital", "is", "Paris"]
    out = degree_variants(tokens, key_indices=[3, 1])
    assert out == [(tokens, 0), (["the", "capital", "is"], 1), (["the", "is"], 2)]
    seeded = degree_variants(tokens, [0, 1, 3], max_removed=2, seed=7)
    assert [k for _, k in seeded] == [0, 1, 2]
    assert [len(v) for v, _ in seeded] == [4, 3, 2]
    assert set(seeded[2][0]) <= set(seeded[1][0])
    with pytest.raises(ValueError, match="max_removed"):
        degree_variants(tokens, [1], max_removed=2)


def test_preference_degree_loss_is_cross_entropy() -> None:
    logits = t(1.0, 2.0, 0.5, 0.0, 0.0, 3.0).reshape(2, 3)
    out = preference_degree_loss(logits, torch.tensor([1, 2]))
    z0 = math.exp(1.0) + math.exp(2.0) + math.exp(0.5)
    z1 = 2 + math.exp(3.0)
    torch.testing.assert_close(out, t(-math.log(math.exp(2.0) / z0), -math.log(math.exp(3.0) / z1)))


def test_preference_degree_loss_gradient_sign() -> None:
    logits = t(1.0, 2.0, 0.5).reshape(1, 3).requires_grad_()
    preference_degree_loss(logits, torch.tensor([0])).sum().backward()
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]


def test_token_rewards_sum_to_sequence_implicit_reward() -> None:
    pol = t(-1.0, -2.0, -0.5).reshape(1, 3).requires_grad_()
    ref = t(-1.5, -1.0, -3.0).reshape(1, 3)
    out = token_rewards(pol, ref, torch.ones(1, 3), beta=0.1)
    torch.testing.assert_close(out.sum(), torch.tensor(0.1 * (-3.5 + 5.5), dtype=torch.float64))
    out.sum().backward()
    assert (pol.grad > 0).all()
