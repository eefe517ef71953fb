"""Secrets-II strength treatment on a toy set with known flips; B-Pref teacher knobs by hand."""

from __future__ import annotations

import pytest
import torch

from prefloop.data.records import Comparison
from prefloop.models.strength import RobustOptions, preference_strength, robust_relabel
from prefloop.worlds.reviews import ReviewWorld
from prefloop.worlds.teachers import BPrefTeacher


def _fit_linear_bt(diff: torch.Tensor, seed: int, steps: int = 100) -> torch.Tensor:
    """Weights of a linear BT model on feature differences chosen − rejected (bootstrap)."""
    generator = torch.Generator().manual_seed(seed)
    sample = diff[torch.randint(len(diff), (len(diff),), generator=generator)]
    w = torch.zeros(diff.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam([w], lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        (-torch.nn.functional.logsigmoid(sample @ w).mean() + 1e-3 * w.square().sum()).backward()
        optimizer.step()
    return w.detach()


def test_preference_strength_by_hand():
    chosen = torch.tensor([[3.0, 1.0], [1.0, 1.0]])  # 2 members x 2 pairs
    rejected = torch.tensor([[1.0, 2.0], [0.0, 2.0]])
    mu, sigma = preference_strength(chosen, rejected)
    assert mu.tolist() == pytest.approx([1.5, -1.0])
    assert sigma.tolist() == pytest.approx([0.5, 0.0])


def test_relabel_rules_by_hand():
    pairs = [Comparison("p", f"c{i}", f"r{i}") for i in range(3)]
    mu, sigma = torch.tensor([-2.0, 0.1, 3.0]), torch.tensor([0.5, 0.5, 0.5])
    out = robust_relabel(pairs, mu, sigma, RobustOptions(smoothing=0.2, margin_scale=0.5))
    assert [c.metadata["treatment"] for c in out] == ["flipped", "ambiguous", "strong"]
    assert (out[0].chosen, out[0].rejected, out[0].margin) == ("r0", "c0", 1.0)
    assert (out[1].strength, out[1].margin) == (pytest.approx(0.8), 0.0)
    assert (out[2].strength, out[2].margin) == (1.0, 1.5)


def test_strength_flipping_recovers_known_flips():
    torch.manual_seed(0)
    n, dim = 600, 6
    diff = torch.randn(n, dim)
    truth = torch.tensor([2.0, -1.5, 1.0, 0.5, 0.0, 0.0])
    clean_sign = torch.sign(diff @ truth)
    diff = diff * clean_sign[:, None]  # oriented so the true chosen comes first
    flipped = torch.rand(n) < 0.2
    noisy = torch.where(flipped[:, None], -diff, diff)  # the labelled chosen − rejected
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threading only adds overhead
    try:
        members = torch.stack([noisy @ _fit_linear_bt(noisy, seed) for seed in range(8)])
    finally:
        torch.set_num_threads(threads)
    mu, sigma = preference_strength(members, torch.zeros_like(members))
    pairs = [Comparison("p", f"a{i}", f"b{i}") for i in range(n)]
    treated = robust_relabel(pairs, mu, sigma, RobustOptions(flip_z=1.0))
    detected = torch.tensor([c.metadata["treatment"] == "flipped" for c in treated])
    precision = (detected & flipped).sum() / detected.sum()
    recall = (detected & flipped).sum() / flipped.sum()
    assert precision > 0.9 and recall > 0.7, (precision, recall)


def test_teacher_knobs():
    world = ReviewWorld()
    prompt = world.prompt_for("kettle", "price")
    good = "the kettle is great . the price is good . i love it ."
    bad = "the kettle is bad . the price is awful . i hate it ."
    rational = BPrefTeacher(world)
    assert rational.label(prompt, bad, good).chosen == good
    assert rational.perceived_return(prompt, good) == pytest.approx(world.gold_reward(prompt, good))
    # skip and equal thresholds act on the return gap
    gap = world.gold_reward(prompt, good) - world.gold_reward(prompt, bad)
    assert BPrefTeacher(world, skip_threshold=gap + 0.1).label(prompt, good, bad) is None
    tie = BPrefTeacher(world, equal_threshold=gap + 0.1).label(prompt, good, bad)
    assert tie.strength == 0.5
    # skipped pairs still spend budget
    labels, spent = BPrefTeacher(world, skip_threshold=gap + 0.1).label_pairs([(prompt, good, bad)])
    assert (labels, spent) == ([], 1)
    # mistakes flip at the given rate
    always_wrong = BPrefTeacher(world, mistake=1.0)
    assert always_wrong.label(prompt, good, bad).chosen == bad
    # myopia: with γ → small, only the last sentence counts; a bad opening is forgiven
    late = "the kettle is awful . the price is good ."
    early = "the price is good . the kettle is awful ."
    myopic = BPrefTeacher(world, myopia=0.1)
    assert world.gold_reward(prompt, late) == world.gold_reward(prompt, early)
    assert myopic.perceived_return(prompt, late) > myopic.perceived_return(prompt, early)
    # rationality: a near-zero β labels at random
    coin = BPrefTeacher(world, rationality=1e-6, seed=1)
    wins = sum(coin.label(prompt, good, bad).chosen == good for _ in range(400))
    assert 160 < wins < 240
