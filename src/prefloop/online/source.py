"""The online batch source: sample → judge → build a rollout, then serve it as minibatches.

:class:`RolloutSource` is a :class:`~prefloop.train.sources.BatchSource` the engine pulls from
like any other. When its buffer is spent it calls the method's ``build(rollout, shard)``,
which samples from the *current* policy, asks the judge and returns training items (pairs,
kept samples or samples with advantages); those are served for ``epochs`` passes in seeded
minibatches (PPO's several epochs per rollout; one pass for on-policy methods). Every random
choice is a function of (seed, rollout index), and the buffer, its position, the labels spent
and a moving reference's weights are in ``state_dict``, which the engine checkpoints: an
online run interrupted anywhere, mid-rollout included, resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from prefloop.models.policy import Policy
from prefloop.train.config import ConfigError
from prefloop.train.sources import Batch, Shard

#: ``build(rollout_index, shard) -> (items, metrics)``: one rollout's training items.
Builder = Callable[[int, Shard], tuple[list[dict[str, Any]], dict[str, float]]]
REFERENCE_SCHEDULES = ("fixed", "previous", "every")


class ReferenceSchedule:
    """Which reference the KL (or the DPO log-ratio) is taken to, and when it moves.

    ``fixed``: the policy as training started (the SFT model); ``previous``: the policy as each
    rollout starts (iterative DPO's previous iterate); ``every``: refreshed from the policy
    every ``every`` optimisation steps.
    """

    def __init__(self, policy: Policy, reference: Policy | None, kind: str = "fixed",
                 every: int = 0) -> None:  # fmt: skip
        if kind not in REFERENCE_SCHEDULES:
            raise ConfigError(f"reference must be one of {', '.join(REFERENCE_SCHEDULES)}, "
                              f"got {kind!r}")  # fmt: skip
        if kind == "every" and every < 1:
            raise ConfigError("reference 'every' needs reference_every >= 1")
        self.policy, self.reference, self.kind, self.every = policy, reference, kind, every
        self.updated_at = 0

    def before_rollout(self, step: int) -> None:
        if self.reference is None:
            return
        due = self.kind == "previous" or (
            self.kind == "every" and step - self.updated_at >= self.every
        )
        if due and step > 0:
            model = getattr(self.policy.model, "module", self.policy.model)
            self.reference.model.load_state_dict(model.state_dict())
            self.updated_at = step

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"updated_at": self.updated_at}
        if self.reference is not None and self.kind != "fixed":
            state["weights"] = {k: v.cpu() for k, v in self.reference.model.state_dict().items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updated_at = state["updated_at"]
        if "weights" in state and self.reference is not None:
            self.reference.model.load_state_dict(state["weights"])


class RolloutSource:
    """See the module docstring; ``batch_size`` is the global number of items per step."""

    examples = None  # endless: the run's length is TrainConfig.max_steps

    def __init__(self, build: Builder, batch_size: int, epochs: int, seed: int,
                 reference: ReferenceSchedule | None = None,
                 counters: Callable[[], dict[str, int]] | None = None,
                 restore_counters: Callable[[dict[str, int]], None] | None = None,
                 ) -> None:  # fmt: skip
        self.build, self.batch_size, self.epochs, self.seed = build, batch_size, epochs, seed
        self.reference = reference
        self.counters, self.restore_counters = counters, restore_counters
        self.rollout = 0
        self.items: list[dict[str, Any]] = []
        self.schedule: list[list[int]] = []
        self.position = 0
        self.metrics: dict[str, float] = {}

    def batch(self, step: int, shard: Shard) -> Batch:
        if self.position >= len(self.schedule):
            self._refill(step, shard)
        mine = [self.items[i] for i in self.schedule[self.position]]
        self.position += 1
        # Each process holds an equal share of the rollout, so the step's global batch is
        # count × this share (a rollout smaller than batch_size makes a smaller step).
        size = max(1, len(mine) * shard.count)
        # Every process must join each step's gradient sync, even with nothing to add.
        return Batch(mine, size) if mine else Batch(self.items[:1], size, True)

    def _refill(self, step: int, shard: Shard) -> None:
        for _ in range(100):  # a rollout may keep nothing (e.g. every group tied): sample again
            if self.reference is not None:
                self.reference.before_rollout(step)
            self.items, self.metrics = self.build(self.rollout, shard)
            self.rollout += 1
            if self.items:
                break
        else:
            raise RuntimeError("100 rollouts in a row gave no training items; the judge "
                               "cannot tell the samples apart")  # fmt: skip
        per_step = max(1, math.ceil(self.batch_size / shard.count))
        rng = np.random.default_rng([self.seed, self.rollout, 0xB0F])
        self.schedule = []
        for _ in range(self.epochs):
            order = rng.permutation(len(self.items)).tolist()
            self.schedule += [order[i : i + per_step] for i in range(0, len(order), per_step)]
        self.position = 0

    # ---- checkpointing -------------------------------------------------------------------
    def _own_state(self) -> dict[str, Any]:
        return {"rollout": self.rollout, "items": self.items, "schedule": self.schedule,
                "position": self.position, "metrics": self.metrics,
                "counters": self.counters() if self.counters else {},
                "reference": self.reference.state_dict() if self.reference else None}  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """Every process's state (each holds its own share of the rollout)."""
        own = self._own_state()
        if dist.is_available() and dist.is_initialized():
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, own)
            return {"processes": gathered}
        return {"processes": [own]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        index = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        own = state["processes"][index]
        self.rollout, self.items, self.schedule = own["rollout"], own["items"], own["schedule"]
        self.position, self.metrics = own["position"], own["metrics"]
        if self.restore_counters:
            self.restore_counters(own["counters"])
        if self.reference is not None and own["reference"] is not None:
            self.reference.load_state_dict(own["reference"])


def pad_tokens(
    rows: list[torch.Tensor], width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Completion-aligned [N, L] values and their 0/1 mask from per-sample 1-d tensors."""
    width = width or max((len(r) for r in rows), default=0)
    values = torch.zeros(len(rows), width)
    mask = torch.zeros(len(rows), width)
    for i, row in enumerate(rows):
        values[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return values, mask
