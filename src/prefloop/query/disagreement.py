"""Ensemble disagreement: ask where the project's reward models disagree most."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def ensemble_disagreement(rewards: ArrayLike) -> np.ndarray:
    """Per-candidate disagreement of an ensemble: the standard deviation across models.

    ``rewards`` has shape ``[models, candidates]``; for pair candidates pass each model's reward
    margin ``r(a) - r(b)``. A model with no reward for a candidate gives NaN there and is left
    out; a candidate with fewer than two rewards scores ``-inf`` (nothing to disagree about).
    Uses the population standard deviation (``ddof=0``) so that two models suffice.
    """
    values = np.asarray(rewards, dtype=float)
    if values.ndim != 2:
        raise ValueError("rewards must have shape [models, candidates]")
    known = np.isfinite(values)
    count = known.sum(axis=0)
    filled = np.where(known, values, 0.0)
    mean = filled.sum(axis=0) / np.maximum(count, 1)
    var = (np.where(known, values - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count, 1)
    return np.where(count >= 2, np.sqrt(var), -np.inf)
