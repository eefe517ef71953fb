"""RM evaluation metrics on tiny constructed cases, and the review-world suite against gold."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prefloop.eval.rm_suite import (
    contrast_consistency,
    evaluate_rm_suite,
    expected_calibration_error,
    one_to_many_accuracy,
    pairwise_accuracy,
)
from prefloop.worlds.review_shifts import build_review_suite, restyle_response, shifted_prompt
from prefloop.worlds.reviews import ReviewWorld


def test_pairwise_accuracy_counts_ties_as_wrong():
    assert pairwise_accuracy(np.array([1.0, 2.0, 0.0, 3.0]), np.array([0.0, 2.0, 1.0, 1.0])) == 0.5


def test_one_to_many_needs_every_rejected_beaten():
    chosen = [1.0, 1.0, 5.0]
    rejected = [[0.0, 0.5, 0.9], [0.0, 1.0], [4.0]]  # wins, tie loses, wins
    assert one_to_many_accuracy(chosen, rejected) == pytest.approx(2 / 3)


def test_contrast_consistency_by_hand():
    # pair 0 fully consistent; pair 1 right on I1 only; pair 2 ranks r1 first under both prompts
    s11, s12 = np.array([2.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0])
    s21, s22 = np.array([0.0, 5.0, 3.0]), np.array([3.0, 1.0, 1.0])
    result = contrast_consistency(s11, s12, s21, s22)
    assert result["response"] == pytest.approx(1 / 3)
    # instruction: s11 > s21 and s22 > s12 -> pair 0 yes, pair 1 no (2<5), pair 2 no (3 == 3)
    assert result["instruction"] == pytest.approx(1 / 3)


def test_ece_by_hand():
    # two bins with 10 bins on [0.5, 1]: confidence 0.55 (bin 0) and 0.95 (bin 9)
    p = np.array([0.55, 0.55, 0.45, 0.95, 0.95])
    y = np.array([1, 0, 0, 1, 1])
    # bin 0: confidences .55 .55 .55 -> mean .55; correct: yes, no, yes -> 2/3
    # bin 9: confidence .95, accuracy 1
    expected = 3 / 5 * abs(2 / 3 - 0.55) + 2 / 5 * abs(1 - 0.95)
    assert expected_calibration_error(p, y) == pytest.approx(expected)
    assert expected_calibration_error(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.0)
    assert math.isnan(expected_calibration_error(np.array([]), np.array([])))


def test_shifts_keep_vocabulary_and_gold_meaning():
    world = ReviewWorld()
    vocabulary = set(" ".join(world.prompt_pool("all")).split())
    vocabulary |= {w for _, r in world.corpus(3000, 0) for w in r.split()}
    prompt = world.prompt_for("kettle", "price")
    assert set(shifted_prompt(prompt).split()) <= vocabulary
    restyled = restyle_response("the kettle is great . i love it . the price is bad .")
    assert restyled == "bad price . i love it . great kettle ."
    assert set(restyled.split()) <= vocabulary
    # same sentiment and request; only length differs
    before = world.gold_aspects(prompt, "the kettle is great . i love it . the price is bad .")
    after = world.gold_aspects(prompt, restyled)
    assert {k: before[k] for k in ("request", "sentiment", "repetition")} == {
        k: after[k] for k in ("request", "sentiment", "repetition")
    }


def test_gold_scorer_is_perfect_and_constant_scorer_is_not():
    world = ReviewWorld()
    suite = build_review_suite(world, prompts=40, seed=3)
    canonical = {shifted_prompt(p): p for p in world.prompt_pool("all")}

    def gold(prompts, responses):
        return np.array(
            [world.gold_reward(canonical.get(p, p), r) for p, r in zip(prompts, responses)]
        )

    perfect = evaluate_rm_suite(gold, suite)
    assert perfect["accuracy"] == perfect["accuracy_ood"] == perfect["one_to_many"] == 1.0
    assert perfect["consistency"] == 1.0
    assert len(suite.one_to_many) >= 3 and len(suite.contrast) == 10
    flat = evaluate_rm_suite(lambda p, r: np.zeros(len(r)), suite)
    assert flat["accuracy"] == flat["one_to_many"] == flat["consistency"] == 0.0
    # constant scores predict p = 0.5 everywhere: confidence 0.5, accuracy 1 (p >= 0.5 "a wins")
    assert flat["ece"] == pytest.approx(0.5)
