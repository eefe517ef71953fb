"""Derive pairwise comparisons from scored responses, and unpaired labels from comparisons.

Pairwise objectives need (chosen, rejected) pairs while much feedback arrives as scores;
KTO-style objectives need single labelled responses while much arrives as pairs.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from itertools import combinations

from prefloop.data.records import Comparison, Rating, Unpaired

STRATEGIES = ("best_vs_random", "best_vs_worst", "all_pairs")


def ratings_to_pairs(
    ratings: Iterable[Rating], strategy: str = "best_vs_worst", seed: int = 0
) -> list[Comparison]:
    """Turn each rating into comparisons; the higher-scored response is always the chosen one.

    ``best_vs_worst``: the top response against the lowest. ``best_vs_random``: the top response
    against one drawn uniformly from those scored strictly lower. ``all_pairs``: every pair with
    unequal scores, in index order. Ties never become pairs; among equal top (or bottom) scores
    the first response wins. ``margin`` is the score gap, and ``metadata`` gains
    ``chosen_index`` and ``rejected_index`` (positions in ``responses``). The same ``seed``
    gives the same pairs.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    rng = random.Random(seed)
    return [
        _pair(rating, high, low)
        for rating in ratings
        for high, low in _index_pairs(rating.scores, strategy, rng)
    ]


def _index_pairs(scores: list[float], strategy: str, rng: random.Random) -> list[tuple[int, int]]:
    """(higher, lower) index pairs of ``scores`` chosen by ``strategy``."""
    if strategy == "all_pairs":
        return [
            (i, j) if scores[i] > scores[j] else (j, i)
            for i, j in combinations(range(len(scores)), 2)
            if scores[i] != scores[j]
        ]
    if not scores:
        return []
    best = max(range(len(scores)), key=scores.__getitem__)
    lower = [i for i, score in enumerate(scores) if score < scores[best]]
    if not lower:
        return []
    if strategy == "best_vs_worst":
        return [(best, min(lower, key=scores.__getitem__))]
    return [(best, rng.choice(lower))]


def _pair(rating: Rating, high: int, low: int) -> Comparison:
    return Comparison(
        prompt=rating.prompt,
        chosen=rating.responses[high],
        rejected=rating.responses[low],
        margin=rating.scores[high] - rating.scores[low],
        annotator=rating.annotator,
        metadata={**rating.metadata, "chosen_index": high, "rejected_index": low},
    )


def comparisons_to_unpaired(comparisons: Iterable[Comparison]) -> list[Unpaired]:
    """Split each comparison into its chosen response (desirable) and rejected one (not)."""
    return [
        Unpaired(
            prompt=comparison.prompt,
            completion=completion,
            label=label,
            annotator=comparison.annotator,
            metadata=dict(comparison.metadata),
        )
        for comparison in comparisons
        for completion, label in ((comparison.chosen, True), (comparison.rejected, False))
    ]
