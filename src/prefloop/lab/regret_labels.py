"""A Bradley–Terry reward model trained on regret labels vs partial-return labels (tabular world).

The learner is the usual partial-return BT model: a table r̂(s, a) with
P(σ1 ≻ σ2) = σ(Σ r̂(σ1) − Σ r̂(σ2)). Teachers label random segment pairs either by partial
return (the learner's own assumption) or by regret (Knox et al.). We report, on held-out pairs,
how often r̂ orders segments as the true partial return does (the "gold agreement" of every
other teacher knob) and as regret does, and — what a reward is for — the true return of the
policy that plans on r̂, as a share of the optimal return, from every start state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from prefloop.worlds.tabular import ACTIONS, GridWorld, label_segments, preference_gap


@dataclass
class RegretLabelsConfig:
    pairs: int = 2000
    heldout_pairs: int = 2000
    segment_length: int = 3
    temperature: float = 1.0
    steps: int = 400
    learning_rate: float = 0.1
    seed: int = 0


def _features(world: GridWorld, segment: list) -> np.ndarray:
    """Visit counts of each (state, action) in a segment: Σ r̂(σ) = counts · r̂."""
    counts = np.zeros(len(world.states) * len(ACTIONS))
    for state, action, _ in segment:
        counts[world.states.index(state) * len(ACTIONS) + action] += 1
    return counts


def fit_partial_return_bt(world: GridWorld, labelled: list, config: RegretLabelsConfig) -> dict:
    """r̂(s, a) maximising the BT likelihood of the labels under the partial-return model."""
    torch.manual_seed(config.seed)
    diff = torch.tensor(
        np.array([_features(world, a) - _features(world, b) for a, b, _ in labelled]),
        dtype=torch.float32,
    )
    labels = torch.tensor([float(y) for _, _, y in labelled])
    reward = torch.zeros(diff.shape[1], requires_grad=True)
    optimizer = torch.optim.Adam([reward], lr=config.learning_rate)
    for _ in range(config.steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(diff @ reward, labels)
        (loss + 1e-4 * reward.square().sum()).backward()
        optimizer.step()
    table = reward.detach().numpy().reshape(len(world.states), len(ACTIONS))
    return {
        (s, a): float(table[i, a]) for i, s in enumerate(world.states) for a in range(len(ACTIONS))
    }


def planned_return_share(world: GridWorld, reward: dict, horizon: int | None = None) -> float:
    """Mean over start states of the true return of the policy planned on ``reward``, as a
    share of the optimal return (1 = optimal; both over ``horizon`` steps, the goal absorbing).
    """
    horizon = horizon or 4 * world.size
    # Planning keeps collecting r̂ at the absorbing goal, so that a constant shift of r̂ (which
    # the BT likelihood cannot see) shifts every policy's planned return equally.
    value = {s: 0.0 for s in world.states}
    policy = []  # policy[h][s]: the action with h + 1 steps to go
    for _ in range(horizon):
        q = {(s, a): reward[s, a] + value[world.step(s, a)[0]]
             for s in world.states for a in range(len(ACTIONS))}  # fmt: skip
        policy.append({s: max(range(len(ACTIONS)), key=lambda a, s=s: q[s, a])
                       for s in world.states})  # fmt: skip
        value = {s: max(q[s, a] for a in range(len(ACTIONS))) for s in world.states}
    optimal, _ = world.optimal_values()
    shares = []
    for start in (s for s in world.states if s != world.goal_cell):
        state, total = start, 0.0
        for steps_left in range(horizon, 0, -1):
            if state == world.goal_cell:
                break
            state, r = world.step(state, policy[steps_left - 1][state])
            total += r
        shares.append(total / optimal[start])
    return float(np.mean(shares))


def _order_agreement(world, reward: dict, heldout: list, model: str, values) -> float:
    def learned(segment):
        return sum(reward[s, a] for s, a, _ in segment)

    agree = [np.sign(learned(a) - learned(b)) == np.sign(preference_gap(a, b, model, values))
             for a, b in heldout if preference_gap(a, b, model, values) != 0]  # fmt: skip
    return float(np.mean(agree))


def run_regret_labels(config: RegretLabelsConfig | None = None) -> list[dict]:
    """One row per teacher model (partial_return, regret): agreements and planned return."""
    config = config or RegretLabelsConfig()
    world = GridWorld()
    values = world.optimal_values()
    rng = random.Random(config.seed + 1)
    heldout = [(world.random_segment(config.segment_length, rng),
                world.random_segment(config.segment_length, rng))
               for _ in range(config.heldout_pairs)]  # fmt: skip
    rows = []
    for model in ("partial_return", "regret"):
        labelled = label_segments(world, config.pairs, config.segment_length, model,
                                  config.seed, config.temperature)  # fmt: skip
        reward = fit_partial_return_bt(world, labelled, config)
        rows.append({
            "teacher": model,
            "pairs": len(labelled),
            "agreement_partial_return": _order_agreement(world, reward, heldout,
                                                         "partial_return", values),
            "agreement_regret": _order_agreement(world, reward, heldout, "regret", values),
            "planned_return_share": planned_return_share(world, reward),
        })  # fmt: skip
    return rows
