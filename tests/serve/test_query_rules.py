"""Active-selection rules on tiny cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from prefloop.query import (
    RULES,
    dueling_ucb_scores,
    ensemble_disagreement,
    fit_linear_utility,
    rank_candidates,
    register_rule,
    select_next,
)


def test_random_rule_is_uniform_over_candidates():
    rng = np.random.default_rng(0)
    picks = [select_next(["a", "b", "c"], "random", rng=rng) for _ in range(3000)]
    counts = [picks.count(c) for c in "abc"]
    assert all(900 < n < 1100 for n in counts), counts


def test_disagreement_is_the_ensemble_std():
    rewards = [[0.0, 1.0, 2.0], [0.0, 3.0, 2.0], [0.0, 2.0, 2.0]]
    np.testing.assert_allclose(ensemble_disagreement(rewards), [0.0, np.sqrt(2 / 3), 0.0])
    assert select_next(["x", "y", "z"], "disagreement", rewards=rewards) == "y"


def test_disagreement_ignores_missing_models_and_needs_two():
    rewards = [[1.0, 0.0, np.nan], [3.0, np.nan, np.nan]]
    scores = ensemble_disagreement(rewards)
    assert scores[0] == 1.0 and scores[1] == -np.inf and scores[2] == -np.inf
    assert rank_candidates([0, 1, 2], "disagreement", rewards=rewards) == [0]


def test_dueling_ucb_matches_apohf_by_hand():
    # h = [1.0, 0.9, 0.2]; g = one-hot; one past pair (0, 1): V = lam + [1, 1, 0] = [1.1, 1.1, 0.1]
    h, g = [1.0, 0.9, 0.2], np.eye(3)
    history = [[1.0, -1.0, 0.0]]
    pairs = [(0, 1), (0, 2), (1, 2)]
    scores = dueling_ucb_scores(pairs, h, g, history, nu=1.0, lam=0.1)
    sigma_1 = np.sqrt(1 / 1.1 + 1 / 1.1)  # (g1 - g0)^2 / V
    sigma_2 = np.sqrt(1 / 1.1 + 1 / 0.1)
    np.testing.assert_allclose(scores, [0.9 + sigma_1 - 1.0, 0.2 + sigma_2 - 1.0, -np.inf])
    # the never-compared arm 2 wins despite its lower utility: optimism under uncertainty
    assert select_next(pairs, "dueling_ucb", utilities=h, gradients=g, history=history) == (0, 2)


def test_dueling_ucb_groups_keep_pairs_within_a_prompt():
    h, g = [0.0, 1.0, 5.0, 4.0], np.eye(4)
    scores = dueling_ucb_scores([(0, 1), (2, 3)], h, g, groups=["p", "p", "q", "q"])
    np.testing.assert_allclose(scores, [0.0 + np.sqrt(20) - 1.0, 4.0 + np.sqrt(20) - 5.0])
    with pytest.raises(ValueError, match="mixes groups"):
        dueling_ucb_scores([(0, 2)], h, g, groups=["p", "p", "q", "q"])


def test_linear_utility_recovers_the_preferred_direction():
    x = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    w = fit_linear_utility(x, [(0, 1), (0, 2), (2, 1)] * 5, [0.9, 0.8, 0.7] * 5)
    assert list(np.argsort(-(x @ w))) == [0, 2, 1]
    assert fit_linear_utility(x, [], []).tolist() == [0.0, 0.0]


def test_warmup_is_uniform_then_the_rule_applies():
    rewards = [[0.0, 5.0], [0.0, -5.0]]
    rng = np.random.default_rng(1)
    early = {
        select_next([0, 1], "disagreement", labelled=0, warmup=10, rng=rng, rewards=rewards)
        for _ in range(50)
    }
    assert early == {0, 1}
    assert select_next([0, 1], "disagreement", labelled=10, warmup=10, rewards=rewards) == 1


def test_rules_are_pluggable_and_unknown_ones_rejected():
    @register_rule("longest")
    def longest(candidates, rng, **_):
        return np.array([len(c) for c in candidates], dtype=float)

    try:
        assert select_next(["a", "abc", "ab"], "longest") == "abc"
    finally:
        RULES.pop("longest")
    with pytest.raises(ValueError, match="unknown selection rule 'oracle'"):
        select_next(["a"], "oracle")
    assert select_next([], "random") is None
