"""HERON hierarchical comparisons, FLR scores and exact regret labels on the tabular world."""

from __future__ import annotations

import pytest
import torch

from prefloop.worlds.feedback_sources import (
    HeronTeacher,
    follow_up_likelihood_reward,
    heron_compare,
)
from prefloop.worlds.reviews import ReviewWorld
from prefloop.worlds.tabular import (
    GridWorld,
    disagreement_rate,
    label_segments,
    partial_return,
    preference_gap,
    segment_advantage,
)


def test_heron_compares_by_ranked_factors_with_margins():
    ranking, margins = ("request", "sentiment"), (0.5, 0.1)
    a, b = {"request": 1.0, "sentiment": -1.0}, {"request": 0.0, "sentiment": 1.0}
    assert heron_compare(a, b, ranking, margins) == 1.0  # request decides first
    c, d = {"request": 1.0, "sentiment": 0.3}, {"request": 0.8, "sentiment": 0.5}
    assert heron_compare(c, d, ranking, margins) == 0.0  # request within margin: sentiment decides
    e = {"request": 1.0, "sentiment": 0.35}
    assert heron_compare(c, e, ranking, margins) == 0.5  # nothing separates them


def test_heron_teacher_labels_review_pairs():
    world = ReviewWorld()
    prompt = world.prompt_for("lamp", "color")
    on_topic = "the color is bad ."
    off_topic = "the lamp is great ."
    teacher = HeronTeacher(world.gold_aspects, ("request", "sentiment"), (0.5, 0.1))
    (label,) = teacher.label_pairs([(prompt, off_topic, on_topic)])
    assert (label.chosen, label.strength) == (on_topic, 1.0)
    assert (
        HeronTeacher(world.gold_aspects, ("length",), (5.0,), ties="drop").label_pairs(
            [(prompt, off_topic, on_topic)]
        )
        == []
    )


class _FixedLM:
    """sequence_logps stand-in: log p of a follow-up = −(its length) × context-dependent rate."""

    def sequence_logps(self, prompts, responses):
        rate = torch.tensor([0.5 if "great" in p else 2.0 for p in prompts])
        bad = torch.tensor([3.0 if "hate" in r or "awful" in r or "bad" in r else 1.0
                            for r in responses])  # fmt: skip
        lengths = torch.tensor([float(len(r.split())) for r in responses])
        return -rate * bad * lengths, lengths


def test_flr_is_mean_positive_minus_mean_negative_token_logp():
    scores = follow_up_likelihood_reward(
        _FixedLM(), ["p", "p"], ["it is great .", "it is ok ."], ["i love it ."], ["i hate it ."]
    )
    # per-token logp: positive −rate, negative −3·rate; FLR = 2·rate
    assert scores == pytest.approx([2 * 0.5, 2 * 2.0])


def test_regret_is_exact_and_differs_from_partial_return():
    world = GridWorld()
    v, q = world.optimal_values()
    # from (3, 4) the optimal move is down into the goal: zero regret; up is a detour
    assert v[(3, 4)] == pytest.approx(9.0)
    down, up = world.rollout((3, 4), [1]), world.rollout((3, 4), [3])
    assert segment_advantage(down, v, q) == pytest.approx(0.0)
    assert segment_advantage(up, v, q) == pytest.approx(-1 + v[(2, 4)] - v[(3, 4)])
    # a detour that collects the bonus has higher partial return but more regret than
    # an optimal step elsewhere
    lure = world.rollout((1, 4), [3])  # up into the bonus cell, away from the goal
    optimal = world.rollout((0, 0), [0])  # right, towards the bonus then the goal: optimal
    assert partial_return(lure) > partial_return(optimal)
    assert segment_advantage(lure, v, q) < segment_advantage(optimal, v, q)
    values = (v, q)
    assert preference_gap(lure, optimal, "partial_return", values) > 0
    assert preference_gap(lure, optimal, "regret", values) < 0
    assert disagreement_rate(world, 300, 3) > 0.02
    labels = label_segments(world, 50, 3, "regret", seed=1, temperature=0.1)
    agree = [label == int(preference_gap(a, b, "regret", values) > 0) for a, b, label in labels
             if abs(preference_gap(a, b, "regret", values)) > 1]  # fmt: skip
    assert all(agree)
