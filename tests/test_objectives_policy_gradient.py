"""Policy-gradient pieces against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from prefloop.objectives.policy_gradient import (
    aggregation_weights,
    clipped_surrogate,
    clipped_value_loss,
    generalized_advantages,
    group_advantages,
    kl_estimate,
    leave_one_out_advantages,
    overlong_penalty,
    returns_to_go,
    segment_rewards,
    token_rewards,
    whiten,
)


def close(actual: torch.Tensor, expected) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype), atol=1e-4,
                               rtol=0)  # fmt: skip


def test_leave_one_out_baseline_is_the_mean_of_the_other_samples():
    # sample 0: 1 - (2 + 3 + 6) / 3; sample 3: 6 - (1 + 2 + 3) / 3
    close(leave_one_out_advantages(torch.tensor([[1.0, 2.0, 3.0, 6.0]])),
          [[1 - 11 / 3, 2 - 10 / 3, 3 - 3.0, 6 - 2.0]])  # fmt: skip
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out_advantages(torch.ones(1, 1))


def test_group_advantages_centre_and_divide_by_the_sample_std():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])  # std of the first group: 1
    close(group_advantages(rewards, eps=0.0)[0], [-1.0, 0.0, 1.0])
    close(group_advantages(rewards * 2, eps=0.0)[0], [-1.0, 0.0, 1.0])  # scale-free
    close(group_advantages(rewards * 2, scale=False)[0], [-2.0, 0.0, 2.0])  # Dr. GRPO
    close(group_advantages(rewards)[1], [0.0, 0.0, 0.0])  # a tied group teaches nothing


def test_kl_estimators_k1_k2_k3():
    logps, reference = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    ln2 = math.log(2)
    close(kl_estimate(logps, reference, "k1"), [ln2])
    close(kl_estimate(logps, reference, "k2"), [ln2**2 / 2])
    close(kl_estimate(logps, reference, "k3"), [0.5 + ln2 - 1])
    close(kl_estimate(reference, reference, "k3"), [0.0])
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(logps, reference, "k4")


def test_clipped_surrogate_with_asymmetric_clip_range():
    behaviour = torch.zeros(1, 4)
    ratios = torch.tensor([[1.5, 1.25, 0.5, 0.7]])
    advantages = torch.tensor([[1.0, 1.0, -1.0, 1.0]])
    loss = clipped_surrogate(ratios.log(), behaviour, advantages, eps_low=0.2, eps_high=0.28)
    # 1.5·A clipped at 1.28; 1.25 inside [0.8, 1.28]; A<0: min(-0.5, -0.8) = -0.8;
    # ratio 0.7 with A>0: min(0.7, 0.8) = 0.7 (clipping never raises the objective)
    close(loss, [[-1.28, -1.25, 0.8, -0.7]])
    symmetric = clipped_surrogate(ratios.log(), behaviour, advantages, 0.2, 0.2)
    close(symmetric[0, :2], [-1.2, -1.2])
    per_sample = clipped_surrogate(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([2.0, -1.0]))
    close(per_sample, [[-2.0] * 3, [1.0] * 3])


def test_gae_on_a_short_hand_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    values = torch.tensor([[0.5, 0.6, 0.7], [1.0, 1.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    advantages, returns = generalized_advantages(rewards, values, mask, gamma=1.0, lam=0.5)
    # row 0: δ = (0.1, 0.1, 0.3); A2 = 0.3, A1 = 0.1 + 0.5·0.3, A0 = 0.1 + 0.5·0.25
    # row 1 ends after two tokens: δ1 = 2 − 1, δ0 = 0 + 1 − 1; the masked value 9 is unused
    close(advantages, [[0.225, 0.25, 0.3], [0.5, 1.0, 0.0]])
    close(returns, [[0.725, 0.85, 1.0], [1.5, 2.0, 0.0]])


def test_returns_to_go_and_token_rewards():
    mask = torch.ones(1, 3)
    close(returns_to_go(torch.tensor([[1.0, 2.0, 3.0]]), mask), [[6.0, 5.0, 3.0]])
    close(returns_to_go(torch.tensor([[1.0, 2.0, 3.0]]), mask, 0.5), [[2.75, 3.5, 3.0]])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    two = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    close(token_rewards(torch.tensor([2.0, -1.0]), kl, two, beta=0.5),
          [[-0.05, -0.1, -0.15 + 2.0], [-0.2, -0.25 - 1.0, 0.0]])  # fmt: skip


def test_whiten_uses_only_the_masked_entries():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    scale = math.sqrt(2 / 3)  # population std of (1, 2, 3)
    close(whiten(values, mask), [[-1 / scale, 0.0, 1 / scale, 0.0]])


def test_aggregation_weights():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    close(aggregation_weights(mask, "sequence_mean"), [[0.5, 0.5, 0], [1 / 3] * 3])
    close(aggregation_weights(mask, "token_mean"), [[0.4, 0.4, 0], [0.4] * 3])  # 2 samples/5
    close(aggregation_weights(mask, "constant", max_tokens=4), [[0.25, 0.25, 0], [0.25] * 3])
    close(aggregation_weights(mask, "sum"), mask.tolist())
    with pytest.raises(ValueError, match="aggregation must be one of"):
        aggregation_weights(mask, "median")


def test_overlong_penalty_is_linear_inside_the_buffer():
    close(overlong_penalty(torch.tensor([5, 6, 8, 10, 12]), 10, 4), [0, 0, -0.5, -1, -1])
    with pytest.raises(ValueError, match="overlong buffer"):
        overlong_penalty(torch.tensor([1]), 10, 0)


def test_clipped_value_loss_takes_the_worse_of_clipped_and_unclipped():
    values, old = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]])
    returns, mask = torch.tensor([[2.0, 1.0]]), torch.ones(1, 2)
    # token 0: max((1−2)², (0.2−2)²) = 3.24; token 1: max(1, 1) = 1; ½·mean = 1.06
    close(clipped_value_loss(values, old, returns, mask, clip=0.2), 1.06)


def test_segment_rewards_land_on_segment_ends_with_weights():
    mask = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 0.0, 0.0]])
    dense = segment_rewards(mask, [[(1, 1.0), (3, -2.0)], [(1, 0.5)]], weight=0.5)
    close(dense, [[0, 0.5, 0, -1.0], [0, 0.25, 0, 0]])
    with pytest.raises(ValueError, match="outside its 2 tokens"):
        segment_rewards(mask, [[], [(2, 1.0)]])
