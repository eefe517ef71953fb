"""Imperfect simulated teachers: the B-Pref knobs (Lee et al. 2021) on any text world.

A teacher compares two responses by a (possibly myopic) return R and then

* **rationality** β: prefers a with probability σ(β·(R(a) − R(b))); ``None`` = always the
  better one (perfectly rational);
* **myopia** γ: R = gold(∅) + Σ_t γ^(T−t) r_t over the response's T sentences, r_t being the
  gold gain of adding sentence t; γ = 1 is the gold reward, γ < 1 forgets the beginning;
* **mistake** ε: the label is flipped with probability ε after the choice;
* **skip** δ_skip: pairs with |R(a) − R(b)| < δ_skip are skipped — no label, budget spent;
* **equal** δ_eq: pairs with |R(a) − R(b)| < δ_eq are labelled a tie (strength 0.5), trained
  as a soft target.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from prefloop.data.records import Comparison
from prefloop.worlds.base import World


@dataclass
class BPrefTeacher:
    """A simulated teacher with the B-Pref knobs; see the module docstring."""

    world: World
    rationality: float | None = None
    myopia: float = 1.0
    mistake: float = 0.0
    skip_threshold: float = 0.0
    equal_threshold: float = 0.0
    seed: int = 0
    annotator_id: str = "bpref-teacher"

    def __post_init__(self) -> None:
        if not 0.0 < self.myopia <= 1.0:
            raise ValueError(f"myopia must be in (0, 1], got {self.myopia}")
        if not 0.0 <= self.mistake <= 1.0:
            raise ValueError(f"mistake must be in [0, 1], got {self.mistake}")
        self._rng = random.Random(self.seed)

    def perceived_return(self, prompt: str, response: str) -> float:
        """The (discounted) return the teacher judges by."""
        if self.myopia == 1.0:
            return self.world.gold_reward(prompt, response)
        sentences = [s.strip() + " ." for s in response.split(".") if s.strip()]
        prefixes = [" ".join(sentences[:t]) for t in range(len(sentences) + 1)]
        values = [self.world.gold_reward(prompt, p) for p in prefixes]
        steps = len(sentences)
        return values[0] + sum(
            self.myopia ** (steps - t) * (values[t] - values[t - 1]) for t in range(1, steps + 1)
        )

    def label(self, prompt: str, a: str, b: str) -> Comparison | None:
        """One judgment, or ``None`` when the teacher skips the pair."""
        gap = self.perceived_return(prompt, a) - self.perceived_return(prompt, b)
        if abs(gap) < self.skip_threshold:
            return None
        if abs(gap) < self.equal_threshold:
            return Comparison(prompt, a, b, strength=0.5, annotator=self.annotator_id,
                              metadata={"tie": True, "flipped": False})  # fmt: skip
        if self.rationality is None:
            a_wins = gap > 0 or (gap == 0 and self._rng.random() < 0.5)
        else:
            a_wins = self._rng.random() < 1.0 / (1.0 + math.exp(-self.rationality * gap))
        flipped = self._rng.random() < self.mistake
        if flipped:
            a_wins = not a_wins
        chosen, rejected = (a, b) if a_wins else (b, a)
        return Comparison(prompt, chosen, rejected, strength=1.0, annotator=self.annotator_id,
                          metadata={"tie": False, "flipped": flipped})  # fmt: skip

    def label_pairs(self, triples: Sequence[tuple[str, str, str]]) -> tuple[list[Comparison], int]:
        """Labels for ``(prompt, a, b)`` triples and the number of queries spent (skips count)."""
        queried = [(p, a, b) for p, a, b in triples if a != b]
        labels = [self.label(p, a, b) for p, a, b in queried]
        return [c for c in labels if c is not None], len(queried)
