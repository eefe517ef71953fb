"""One protocol for every source of feedback an online method can ask.

A :class:`ScalarJudge` scores each (prompt, completion); a :class:`PairwiseJudge` gives
P(first ≻ second) for pairs (a human or simulated annotator answers 0 or 1, a model a
probability). Every judge counts the labels it spends — one per score, one per comparison —
so methods are compared at equal feedback. ``seed`` makes a noisy judge's answers a function
of the call, so an interrupted run resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from prefloop.data.records import Prompt
from prefloop.models.ensemble import RewardEnsemble
from prefloop.models.multi_objective import MultiObjectiveRewardModel
from prefloop.models.preference_model import PairwisePreferenceModel
from prefloop.models.reward import RewardModel
from prefloop.worlds.base import World


@runtime_checkable
class ScalarJudge(Protocol):
    labels_used: int

    def score(
        self, prompts: Sequence[Prompt], completions: Sequence[str], seed: int
    ) -> list[float]: ...


@runtime_checkable
class PairwiseJudge(Protocol):
    labels_used: int

    def prefer(
        self, prompts: Sequence[Prompt], first: Sequence[str], second: Sequence[str], seed: int
    ) -> list[float]: ...


Judge = ScalarJudge | PairwiseJudge


class _Counting:
    labels_used = 0

    def _spend(self, n: int) -> None:
        self.labels_used += n


class GoldJudge(_Counting):
    """A world's exact gold reward (an oracle: what a perfect, free rater would say)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def score(self, prompts, completions, seed=0):
        self._spend(len(prompts))
        return [self.world.gold_reward(p, c) for p, c in zip(prompts, completions)]


class AnnotatorJudge(_Counting):
    """A simulated annotator: prefers ``a`` with probability σ((gold(a) − gold(b)) / T),
    then flips its answer with ``flip_rate`` (see :class:`BradleyTerryAnnotator`)."""

    def __init__(self, world: World, temperature: float = 0.5, flip_rate: float = 0.0) -> None:
        if temperature <= 0:
            raise ValueError(f"annotator temperature must be > 0, got {temperature}")
        self.world, self.temperature, self.flip_rate = world, temperature, flip_rate

    def prefer(self, prompts, first, second, seed=0):
        rng = np.random.default_rng([seed, 0x5EED])
        answers = []
        for prompt, a, b in zip(prompts, first, second):
            gap = self.world.gold_reward(prompt, a) - self.world.gold_reward(prompt, b)
            a_wins = rng.random() < 1.0 / (1.0 + math.exp(-gap / self.temperature))
            if rng.random() < self.flip_rate:
                a_wins = not a_wins
            answers.append(float(a_wins))
        self._spend(len(answers))
        return answers


class GroupAnnotatorJudge(_Counting):
    """Annotators from several groups, each a Bradley–Terry rater of its own world's gold
    reward: every comparison is answered by a group drawn with ``weights``. The pooled
    preference (:meth:`probability`) need not be transitive even when every group is."""

    def __init__(self, groups: Sequence[World], weights: Sequence[float] | None = None,
                 temperature: float = 0.5) -> None:  # fmt: skip
        if temperature <= 0:
            raise ValueError(f"annotator temperature must be > 0, got {temperature}")
        w = np.ones(len(groups)) if weights is None else np.asarray(weights, dtype=float)
        if len(w) != len(groups) or (w < 0).any() or w.sum() <= 0:
            raise ValueError("group weights must be one non-negative number per group")
        self.groups, self.weights, self.temperature = list(groups), w / w.sum(), temperature

    def _gaps(self, prompts, first, second) -> np.ndarray:
        """``(u_g(a) − u_g(b)) / T`` for every group and comparison: ``[groups, N]``."""
        return np.array([[(g.gold_reward(p, a) - g.gold_reward(p, b)) / self.temperature
                          for p, a, b in zip(prompts, first, second)]
                         for g in self.groups]).reshape(len(self.groups), -1)  # fmt: skip

    def probability(self, prompts, first, second) -> np.ndarray:
        """The pooled P(first ≻ second) of each comparison (exact; spends no labels)."""
        return self.weights @ (1.0 / (1.0 + np.exp(-self._gaps(prompts, first, second))))

    def preference_matrix(self, prompt: Prompt, texts: Sequence[str]) -> np.ndarray:
        """The pooled ``P[i, j] = P(texts[i] ≻ texts[j])`` for one prompt: ``[n, n]``."""
        n = len(texts)
        pairs = [(a, b) for a in texts for b in texts]
        flat = self.probability([prompt] * n * n, [a for a, _ in pairs], [b for _, b in pairs])
        return flat.reshape(n, n)

    def prefer(self, prompts, first, second, seed=0):
        rng = np.random.default_rng([seed, 0x6A0])
        gaps = self._gaps(prompts, first, second)
        group = rng.choice(len(self.groups), size=gaps.shape[1], p=self.weights)
        p = 1.0 / (1.0 + np.exp(-gaps[group, np.arange(gaps.shape[1])]))
        answers = (rng.random(gaps.shape[1]) < p).astype(float)
        self._spend(len(answers))
        return answers.tolist()


class RewardModelJudge(_Counting):
    """A trained reward model, or an ensemble combined by ``mean``, ``wco`` or ``uwo``."""

    def __init__(
        self, model: RewardModel | RewardEnsemble, combine: str = "mean", uwo_lambda: float = 0.5
    ) -> None:
        self.model, self.combine, self.uwo_lambda = model, combine, uwo_lambda

    def score(self, prompts, completions, seed=0):
        self._spend(len(prompts))
        if isinstance(self.model, RewardEnsemble):
            values = self.model.score(prompts, completions, self.combine, self.uwo_lambda)
        else:
            values = self.model.score(prompts, completions)
        return values.tolist()


class PreferenceModelJudge(_Counting):
    """A pairwise preference model's probability that the first completion is better."""

    def __init__(self, model: PairwisePreferenceModel) -> None:
        self.model = model

    def prefer(self, prompts, first, second, seed=0):
        self._spend(len(prompts))
        return self.model.probability(prompts, first, second).tolist()


class ScoreComparison(_Counting):
    """A scalar judge asked for pairs: 1, 0 or ½ by which completion scores higher.

    It spends the scalar judge's labels (two per pair), not one per comparison.
    """

    def __init__(self, judge: ScalarJudge) -> None:
        self.judge = judge

    @property
    def labels_used(self) -> int:  # type: ignore[override]
        return self.judge.labels_used

    @labels_used.setter
    def labels_used(self, value: int) -> None:
        self.judge.labels_used = value

    def prefer(self, prompts, first, second, seed=0):
        n = len(prompts)
        scores = self.judge.score(list(prompts) * 2, list(first) + list(second), seed)
        return [1.0 if a > b else 0.0 if a < b else 0.5 for a, b in zip(scores[:n], scores[n:])]


@runtime_checkable
class AspectJudge(Protocol):
    """Scores named aspects of each sample: [N, len(aspects)] (DPA's multi-objective reward)."""

    labels_used: int

    def aspect_scores(
        self, prompts: Sequence[Prompt], completions: Sequence[str], aspects: Sequence[str]
    ) -> torch.Tensor: ...


class GoldAspectsJudge(_Counting):
    """A world's exact per-aspect gold scores (one label per sample)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def aspect_scores(self, prompts, completions, aspects):
        unknown = set(aspects) - set(self.world.aspects)
        if unknown:
            raise ValueError(f"world {self.world.name!r} has no aspect {sorted(unknown)}; "
                             f"it has {list(self.world.aspects)}")  # fmt: skip
        self._spend(len(prompts))
        rows = [self.world.gold_aspects(p, c) for p, c in zip(prompts, completions)]
        return torch.tensor([[row[a] for a in aspects] for row in rows], dtype=torch.float32)


class MultiObjectiveJudge(_Counting):
    """A multi-objective reward model's outputs for the named aspects."""

    def __init__(self, model: MultiObjectiveRewardModel) -> None:
        self.model = model

    def aspect_scores(self, prompts, completions, aspects):
        missing = [a for a in aspects if a not in self.model.aspects]
        if missing:
            raise ValueError(f"the reward model scores {list(self.model.aspects)}, not {missing}")
        self._spend(len(prompts))
        scores = self.model.score(prompts, completions)
        return scores[:, [self.model.aspects.index(a) for a in aspects]]


def as_pairwise(judge: Judge) -> PairwiseJudge:
    return judge if isinstance(judge, PairwiseJudge) else ScoreComparison(judge)
