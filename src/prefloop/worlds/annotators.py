"""Simulated annotators: label response pairs from a world's gold reward."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from prefloop.data.records import Comparison
from prefloop.worlds.base import World


@dataclass
class BradleyTerryAnnotator:
    """Prefers ``a`` over ``b`` with probability sigmoid((gold(a) − gold(b)) / temperature).

    ``flip_rate`` then flips each label independently, modelling careless mistakes. With
    ``report_strength`` the record carries the noise-free probability that ``chosen`` beats
    ``rejected`` (a calibrated AI judge's output); it is off by default because it reveals flips.
    """

    world: World
    temperature: float = 0.5
    flip_rate: float = 0.0
    seed: int = 0
    annotator_id: str = "bt-annotator"
    report_strength: bool = False

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.flip_rate <= 1.0:
            raise ValueError(f"flip_rate must be in [0, 1], got {self.flip_rate}")
        self._rng = random.Random(self.seed)

    def preference_probability(self, prompt: str, a: str, b: str) -> float:
        gap = self.world.gold_reward(prompt, a) - self.world.gold_reward(prompt, b)
        return 1.0 / (1.0 + math.exp(-gap / self.temperature))

    def label(self, prompt: str, a: str, b: str) -> Comparison:
        p_a = self.preference_probability(prompt, a, b)
        a_wins = self._rng.random() < p_a
        flipped = self._rng.random() < self.flip_rate
        if flipped:
            a_wins = not a_wins
        chosen, rejected = (a, b) if a_wins else (b, a)
        return Comparison(
            prompt=prompt,
            chosen=chosen,
            rejected=rejected,
            strength=(p_a if a_wins else 1.0 - p_a) if self.report_strength else None,
            annotator=self.annotator_id,
            metadata={"flipped": flipped},
        )

    def label_pairs(self, triples: Sequence[tuple[str, str, str]]) -> list[Comparison]:
        """Label ``(prompt, a, b)`` triples; pairs of identical responses are skipped."""
        return [self.label(p, a, b) for p, a, b in triples if a != b]
