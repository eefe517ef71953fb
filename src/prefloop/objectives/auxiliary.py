"""SPO self-supervised preference-degree task (Li et al. 2024): labels and loss.

The paper's exact construction is not public (its repository holds only a licence); this is
the reconstruction in the design note (section 12): variants of a response lose ``k`` of its
key tokens, and a classifier head predicts ``k`` (the "preference degree") with cross-entropy.
Total training loss is ``L_align + lambda * mean(preference_degree_loss(...))``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

import torch.nn.functional as F

from prefloop.objectives._common import Tensor

T = TypeVar("T")


def degree_variants(
    tokens: Sequence[T],
    key_indices: Sequence[int],
    max_removed: int | None = None,
    seed: int | None = None,
) -> list[tuple[list[T], int]]:
    """Degraded variants of ``tokens`` labelled by how many key tokens were removed.

    Returns ``[(variant, k) for k in 0..max_removed]`` where ``variant`` is ``tokens`` without
    ``k`` of the key tokens at ``key_indices`` (class ``k``; class 0 is the intact response).
    The removed sets are nested (each variant drops the previous one's tokens plus one more).
    Order of removal: ``key_indices`` as given (e.g. by importance) when ``seed`` is None, else a
    permutation drawn from ``random.Random(seed)``. ``max_removed`` defaults to all key tokens.
    """
    keys = list(dict.fromkeys(key_indices))
    if any(not 0 <= i < len(tokens) for i in keys):
        raise ValueError("degree_variants: key_indices out of range")
    if max_removed is None:
        max_removed = len(keys)
    if not 0 <= max_removed <= len(keys):
        raise ValueError(f"degree_variants: max_removed must lie in [0, {len(keys)}]")
    if seed is not None:
        random.Random(seed).shuffle(keys)
    variants = []
    for k in range(max_removed + 1):
        removed = set(keys[:k])
        variants.append(([t for i, t in enumerate(tokens) if i not in removed], k))
    return variants


def preference_degree_loss(logits: Tensor, degree_labels: Tensor) -> Tensor:
    """Per-example cross-entropy ``-log softmax(logits)[label]``; logits [N, C], labels [N]."""
    return F.cross_entropy(logits, degree_labels.long(), reduction="none")
