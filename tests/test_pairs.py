"""Comparisons derived from ratings, and unpaired labels derived from comparisons."""

from __future__ import annotations

import pytest

from prefloop.data import Comparison, Rating, Unpaired, comparisons_to_unpaired, ratings_to_pairs

CHAT = [{"role": "user", "content": "Name a colour."}]
# Scores: "red" ties "blue" for best, "green" ties "grey" for worst.
RATING = Rating(
    CHAT,
    ["red", "green", "blue", "grey", "pink"],
    [4.0, 1.0, 4.0, 1.0, 2.5],
    annotator="judge",
    metadata={"batch": 3},
)


def pair(chosen: int, rejected: int, rating: Rating = RATING) -> Comparison:
    """The comparison expected for response ``chosen`` over ``rejected`` of ``rating``."""
    return Comparison(
        rating.prompt,
        rating.responses[chosen],
        rating.responses[rejected],
        margin=rating.scores[chosen] - rating.scores[rejected],
        annotator=rating.annotator,
        metadata={**rating.metadata, "chosen_index": chosen, "rejected_index": rejected},
    )


def test_best_vs_worst_takes_first_of_tied_extremes() -> None:
    assert ratings_to_pairs([RATING]) == [
        Comparison(
            CHAT,
            "red",
            "green",
            margin=3.0,
            annotator="judge",
            metadata={"batch": 3, "chosen_index": 0, "rejected_index": 1},
        )
    ]


def test_all_pairs_skips_ties_and_orders_by_score() -> None:
    # Pairs in (i, j) order with i < j; the higher-scored response of each is chosen.
    expected = [(0, 1), (0, 3), (0, 4), (2, 1), (4, 1), (2, 3), (2, 4), (4, 3)]
    assert ratings_to_pairs([RATING], strategy="all_pairs") == [pair(*ij) for ij in expected]


def test_best_vs_random_draws_only_strictly_lower_responses() -> None:
    drawn = set()
    for seed in range(40):
        [comparison] = ratings_to_pairs([RATING], strategy="best_vs_random", seed=seed)
        rejected = comparison.metadata["rejected_index"]
        assert comparison == pair(0, rejected)
        drawn.add(rejected)
    assert drawn == {1, 3, 4}


def test_best_vs_random_is_deterministic_per_seed() -> None:
    ratings = [RATING] * 20
    first = ratings_to_pairs(ratings, strategy="best_vs_random", seed=7)
    assert ratings_to_pairs(ratings, strategy="best_vs_random", seed=7) == first
    assert ratings_to_pairs(ratings, strategy="best_vs_random", seed=8) != first
    assert len(first) == 20


def test_fully_tied_and_single_response_ratings_give_no_pairs() -> None:
    tied = Rating("p", ["a", "b", "c"], [2.0, 2.0, 2.0])
    single = Rating("p", ["a"], [5.0])
    for strategy in ("best_vs_worst", "best_vs_random", "all_pairs"):
        assert ratings_to_pairs([tied, single], strategy=strategy) == []


def test_pairs_from_several_ratings_keep_order() -> None:
    other = Rating("q", ["x", "y"], [0.0, 1.0])
    assert ratings_to_pairs([other, RATING]) == [pair(1, 0, other), pair(0, 1)]


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="strategy must be one of"):
        ratings_to_pairs([RATING], strategy="best_vs_median")


def test_comparisons_to_unpaired_labels_chosen_desirable() -> None:
    comparison = Comparison("p", "good", "bad", strength=0.8, annotator="h", metadata={"id": 1})
    unpaired = comparisons_to_unpaired([comparison])
    assert unpaired == [
        Unpaired("p", "good", True, annotator="h", metadata={"id": 1}),
        Unpaired("p", "bad", False, annotator="h", metadata={"id": 1}),
    ]
    assert unpaired[0].metadata is not unpaired[1].metadata
