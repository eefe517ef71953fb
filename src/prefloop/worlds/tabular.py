"""A tabular world where regret is exact: preferences by partial return vs. by regret.

Knox et al. ("Models of human preference for learning reward functions") argue people judge
trajectory segments by *regret* — how much worse than optimal the segment's decisions were —
rather than by the segment's *partial return*. With deterministic transitions,

    regret(σ) = V*(s_0) − [Σ_t r(s_t, a_t) + V*(s_T)] = −Σ_t A*(s_t, a_t),

so P_regret(σ1 ≻ σ2) = σ((Σ A*(σ1) − Σ A*(σ2)) / T) and P_return(σ1 ≻ σ2) =
σ((Σ r(σ1) − Σ r(σ2)) / T). The world is a deterministic grid with a goal; V* and Q* come from
value iteration (undiscounted, episodic, so they are exact on this finite grid).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

ACTIONS = ((0, 1), (1, 0), (0, -1), (-1, 0))  # right, down, left, up


@dataclass
class GridWorld:
    """``size`` x ``size`` grid; every step costs ``step_cost``; entering the goal pays ``goal``.

    Cells in ``bonus`` pay their value on entry (a partial-return lure that regret discounts:
    collecting it from far away can still be a detour).
    """

    size: int = 5
    goal_cell: tuple[int, int] = (4, 4)
    step_cost: float = -1.0
    goal: float = 10.0
    bonus: dict[tuple[int, int], float] = field(default_factory=lambda: {(0, 4): 1.5})

    @property
    def states(self) -> list[tuple[int, int]]:
        return [(i, j) for i in range(self.size) for j in range(self.size)]

    def step(self, state: tuple[int, int], action: int) -> tuple[tuple[int, int], float]:
        """Next state and reward; the goal is absorbing with reward 0."""
        if state == self.goal_cell:
            return state, 0.0
        di, dj = ACTIONS[action]
        nxt = (min(max(state[0] + di, 0), self.size - 1), min(max(state[1] + dj, 0), self.size - 1))
        reward = self.step_cost + self.bonus.get(nxt, 0.0) * (nxt != state)
        if nxt == self.goal_cell:
            reward += self.goal
        return nxt, reward

    def optimal_values(self, iterations: int = 200) -> tuple[dict, dict]:
        """V* and Q* by value iteration (undiscounted; the absorbing goal makes it finite).

        A bonus is paid again on every re-entry; with a round trip costing two steps, a bonus
        below 2 × |step_cost| keeps every value finite (checked by the default world's tests).
        """
        v = {s: 0.0 for s in self.states}
        for _ in range(iterations):
            q = {(s, a): self._q(v, s, a) for s in self.states for a in range(len(ACTIONS))}
            v = {s: max(q[s, a] for a in range(len(ACTIONS))) for s in self.states}
        return v, q

    def _q(self, v: dict, state, action) -> float:
        nxt, reward = self.step(state, action)
        return reward + (0.0 if state == self.goal_cell else v[nxt])

    def rollout(self, start, actions) -> list[tuple[tuple[int, int], int, float]]:
        """(state, action, reward) per step of a segment."""
        segment, state = [], start
        for action in actions:
            nxt, reward = self.step(state, action)
            segment.append((state, action, reward))
            state = nxt
        return segment

    def random_segment(self, length: int, rng: random.Random) -> list:
        start = rng.choice([s for s in self.states if s != self.goal_cell])
        return self.rollout(start, [rng.randrange(len(ACTIONS)) for _ in range(length)])


def partial_return(segment: list) -> float:
    return sum(r for _, _, r in segment)


def segment_advantage(segment: list, v: dict, q: dict) -> float:
    """Σ_t A*(s_t, a_t) = −regret(σ) for deterministic transitions."""
    return sum(q[s, a] - v[s] for s, a, _ in segment)


def preference_gap(first: list, second: list, model: str, values: tuple[dict, dict]) -> float:
    """The logit gap of P(first ≻ second) under ``model`` ('regret' or 'partial_return')."""
    if model == "regret":
        return segment_advantage(first, *values) - segment_advantage(second, *values)
    if model == "partial_return":
        return partial_return(first) - partial_return(second)
    raise ValueError(f"model must be 'regret' or 'partial_return', got {model!r}")


def label_segments(
    world: GridWorld, pairs: int, length: int, model: str, seed: int = 0, temperature: float = 1.0
) -> list[tuple[list, list, int]]:
    """``(σ1, σ2, label)`` with label 1 when σ1 is preferred, sampled from ``model``."""
    rng = random.Random(seed)
    values = world.optimal_values()
    out = []
    for _ in range(pairs):
        first, second = world.random_segment(length, rng), world.random_segment(length, rng)
        p = 1.0 / (1.0 + math.exp(-preference_gap(first, second, model, values) / temperature))
        out.append((first, second, int(rng.random() < p)))
    return out


def disagreement_rate(world: GridWorld, pairs: int, length: int, seed: int = 0) -> float:
    """Share of random segment pairs the two models order differently (noise-free)."""
    rng = random.Random(seed)
    values = world.optimal_values()
    differ = []
    for _ in range(pairs):
        a, b = world.random_segment(length, rng), world.random_segment(length, rng)
        by_return = np.sign(preference_gap(a, b, "partial_return", values))
        by_regret = np.sign(preference_gap(a, b, "regret", values))
        if by_return != 0 and by_regret != 0:
            differ.append(by_return != by_regret)
    return float(np.mean(differ))
