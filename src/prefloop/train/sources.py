"""Where the engine's batches come from.

The engine asks a :class:`BatchSource` for each step's batch, one shard per process. The
offline source draws example indices from a seeded permutation per epoch, so a batch depends
only on (seed, step) and resuming is exact. An online source (generate → judge → build) keeps
its position and random state in ``state_dict``, which the engine checkpoints with the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Shard:
    """Process ``index`` of ``count`` data-parallel processes."""

    index: int = 0
    count: int = 1


@dataclass
class Batch:
    """This process's share of one step's batch, and the size of the whole (global) batch."""

    items: list[Any]
    global_size: int
    padded: bool = False  # the items only stand in (weight 0): this shard got none this step


@runtime_checkable
class BatchSource(Protocol):
    """One step's batch for a shard; ``examples`` is the epoch size (None: endless)."""

    examples: int | None

    def batch(self, step: int, shard: Shard) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def batch_indices(num_examples: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Example indices of ``step``: a fresh seeded permutation per epoch, so resuming is exact."""
    per_epoch = math.ceil(num_examples / batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return order[position * batch_size : (position + 1) * batch_size].tolist()


class IndexSource:
    """A fixed dataset of ``examples`` items, seen as seeded batches of indices.

    A shard takes every ``count``-th index of the global batch, so the union over processes is
    exactly the single-process batch and equal global batches give equal updates.
    """

    def __init__(self, examples: int, batch_size: int, seed: int) -> None:
        if examples < 1:
            raise ValueError("no training examples")
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed

    def batch(self, step: int, shard: Shard) -> Batch:
        indices = batch_indices(self.examples, self.batch_size, step, self.seed)
        mine = indices[shard.index :: shard.count]
        # Every process must take part in each step's gradient sync, even with nothing to add.
        return Batch(mine, len(indices)) if mine else Batch(indices[:1], len(indices), True)

    def state_dict(self) -> dict[str, Any]:
        return {}  # a batch is a function of (seed, step)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
