"""Annotator groups with conflicting tastes on the review world: transitive each, cyclic together.

Every group shares the world's gold aspects and adds a strong taste of its own, a feature it
likes and one it dislikes (each feature in [−1, 1]: *warmth* is the sentiment aspect, *brevity*
``−(words − target) / target``, *coverage* ``(distinct product aspects named − 2) / 2``):

* ``enthusiasts`` like warmth and dislike coverage (spec sheets bore them);
* ``detail-seekers`` like coverage and dislike brevity (a short review tells them nothing);
* ``minimalists`` like brevity and dislike warmth (gushing reads as filler).

Each group is a Bradley–Terry rater of its own utility, so each group alone is transitive. A
comparison is answered by a group drawn by weight, so the pooled preference is
``P(a ≻ b) = Σ_g w_g σ((u_g(a) − u_g(b)) / T)``: roughly a majority vote of three groups whose
tastes chase each other in a circle (warmth ≻ coverage ≻ brevity ≻ warmth), so it cycles on
many triples of reviews — Condorcet's paradox. No single reward explains such preferences;
:func:`cyclic_share` measures how often it shows (about 12 % of triples of corpus reviews of
one prompt at the defaults, taste 3 and T = 0.5).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from prefloop.worlds.reviews import ASPECTS, ReviewWorld


def _clip(x: float) -> float:
    return max(-1.0, min(1.0, x))


def taste_features(world: ReviewWorld, prompt: str, response: str) -> dict[str, float]:
    """The three features the groups weigh, each in [−1, 1]."""
    words = response.split()
    return {
        "warmth": world.gold_aspects(prompt, response)["sentiment"],
        "brevity": _clip(-(len(words) - world.target_length) / world.target_length),
        "coverage": _clip((len(set(ASPECTS).intersection(words)) - 2) / 2),
    }


@dataclass(frozen=True)
class TasteGroup:
    """One annotator group: the world's gold reward + ``taste`` · (``likes`` − ``dislikes``)."""

    name: str
    likes: str
    dislikes: str
    taste: float = 3.0


GROUPS = (TasteGroup("enthusiasts", "warmth", "coverage"),
          TasteGroup("detail-seekers", "coverage", "brevity"),
          TasteGroup("minimalists", "brevity", "warmth"))  # fmt: skip


@dataclass
class GroupWorld:
    """The review world seen by one group (a ``World`` whose gold reward is the group's)."""

    world: ReviewWorld
    group: TasteGroup

    @property
    def name(self) -> str:
        return f"{self.world.name}/{self.group.name}"

    def gold_reward(self, prompt: str, response: str) -> float:
        features = taste_features(self.world, prompt, response)
        taste = features[self.group.likes] - features[self.group.dislikes]
        return self.world.gold_reward(prompt, response) + self.group.taste * taste


def group_worlds(world: ReviewWorld, groups: Sequence[TasteGroup] = GROUPS) -> list[GroupWorld]:
    return [GroupWorld(world, g) for g in groups]


def pooled_preference(utilities: np.ndarray, weights: np.ndarray, temperature: float) -> np.ndarray:
    """``P[a, b] = Σ_g w_g σ((u_g[a] − u_g[b]) / T)`` from utilities ``[groups, n]``: ``[n, n]``."""
    gaps = (utilities[:, :, None] - utilities[:, None, :]) / temperature
    return np.tensordot(weights, 1.0 / (1.0 + np.exp(-gaps)), axes=1)


def cyclic_share(preference: np.ndarray) -> float:
    """Share of response triples whose pooled majorities form a cycle (a ≻ b ≻ c ≻ a)."""
    n = preference.shape[0]
    triples = list(itertools.combinations(range(n), 3))
    if not triples:
        return 0.0
    cyclic = 0
    for a, b, c in triples:
        wins = [preference[a, b] > 0.5, preference[b, c] > 0.5, preference[c, a] > 0.5]
        cyclic += all(wins) or not any(wins)
    return cyclic / len(triples)
