"""Dueling-bandit upper-confidence pair selection, after APOHF (Lin et al.).

APOHF fits a latent utility ``h`` by Bradley-Terry on observed pairs, then asks about
``arm1 = argmax h`` against ``arm2 = argmax_{x != arm1} h(x) + sigma(x)`` with
``sigma(x) = sqrt(nu * sum((g(x) - g(arm1))**2 / V))`` and the diagonal design matrix
``V = lambda + sum over past pairs (g(a) - g(b))**2``, where ``g`` is the gradient of ``h``.

Here the candidates are pairs, optionally grouped (for example by prompt: only responses to
the same prompt can be compared). In each group the leader is the arm with the highest
utility; a pair is eligible only if it contains its group's leader, and scores
``h(challenger) + sigma(challenger) - h(leader)``. With one group and all pairs as candidates
the best-scoring pair is exactly APOHF's ``(arm1, arm2)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from numpy.typing import ArrayLike


def dueling_ucb_scores(
    pairs: Sequence[tuple[int, int]],
    utilities: ArrayLike,
    gradients: ArrayLike,
    history: ArrayLike | None = None,
    groups: Sequence[Hashable] | None = None,
    nu: float = 1.0,
    lam: float = 0.1,
) -> np.ndarray:
    """Score candidate pairs ``(a, b)`` of arm indices; ineligible pairs score ``-inf``.

    ``utilities`` is ``h`` per arm ``[arms]``; ``gradients`` is ``g`` per arm ``[arms, dim]``
    (for a linear utility, the arm's features); ``history`` holds ``g(a) - g(b)`` for every
    pair already compared ``[past, dim]``; ``groups`` labels each arm (default: one group).
    """
    h = np.asarray(utilities, dtype=float)
    g = np.asarray(gradients, dtype=float)
    if g.ndim != 2 or g.shape[0] != h.shape[0]:
        raise ValueError("gradients must have shape [arms, dim] matching utilities")
    past = np.zeros((0, g.shape[1])) if history is None else np.asarray(history, dtype=float)
    v = lam + (past**2).sum(axis=0)
    labels = list(groups) if groups is not None else [0] * len(h)
    leader: dict[Hashable, int] = {}
    for arm, label in enumerate(labels):
        if label not in leader or h[arm] > h[leader[label]]:
            leader[label] = arm
    scores = np.full(len(pairs), -np.inf)
    for k, (a, b) in enumerate(pairs):
        if labels[a] != labels[b]:
            raise ValueError(f"pair {(a, b)} mixes groups")
        top = leader[labels[a]]
        if top not in (a, b) or a == b:
            continue
        challenger = b if top == a else a
        sigma = np.sqrt(nu * np.sum((g[challenger] - g[top]) ** 2 / v))
        scores[k] = h[challenger] + sigma - h[top]
    return scores


def fit_linear_utility(
    features: ArrayLike,
    pairs: Sequence[tuple[int, int]],
    preferences: Sequence[float],
    lam: float = 0.1,
    iterations: int = 25,
) -> np.ndarray:
    """Fit ``h(x) = w . x`` by L2-regularised Bradley-Terry (Newton's method).

    ``preferences[k]`` is the probability that ``pairs[k][0]`` beat ``pairs[k][1]`` (ties 0.5).
    For a linear ``h`` the gradient ``g(x)`` is ``x`` itself, so the returned weights and the
    features are all :func:`dueling_ucb_scores` needs. Returns ``w`` of shape ``[dim]``.
    """
    x = np.asarray(features, dtype=float)
    w = np.zeros(x.shape[1])
    if not pairs:
        return w
    d = np.stack([x[a] - x[b] for a, b in pairs])
    y = np.asarray(preferences, dtype=float)
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(d @ w)))
        grad = d.T @ (p - y) + lam * w
        hess = (d * (p * (1 - p))[:, None]).T @ d + lam * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return w
