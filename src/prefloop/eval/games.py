"""Exact quantities of a preference game: win probabilities, KL, exploitability, equilibria.

Policies are probability tables ``[prompts, n]`` and preferences ``[prompts, n, n]`` (numpy,
float64); every quantity is averaged over prompts (uniform prompt distribution).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linprog


def win_probability(preference: np.ndarray, policy: np.ndarray, opponent: np.ndarray) -> float:
    """``P(π ≻ π') = E_x πᵀ P π'``."""
    return float(np.einsum("xa,xab,xb->x", policy, preference, opponent).mean())


def response_win_rates(preference: np.ndarray, opponent: np.ndarray) -> np.ndarray:
    """``P(y ≻ π')`` for every response: ``[prompts, n]``."""
    return np.einsum("xab,xb->xa", preference, opponent)


def kl_divergence(policy: np.ndarray, reference: np.ndarray) -> float:
    """``E_x KL(π(·|x) ‖ μ(·|x))`` in nats (zero-probability responses contribute 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(policy > 0, policy * (np.log(policy) - np.log(reference)), 0.0)
    return float(terms.sum(axis=1).mean())


def exploitability(preference: np.ndarray, policy: np.ndarray) -> float:
    """``E_x max_y P(y ≻ π) − ½``: ≥ 0, and 0 exactly at a minimax winner."""
    return float(response_win_rates(preference, policy).max(axis=1).mean() - 0.5)


def regularized_gap(
    preference: np.ndarray, policy: np.ndarray, reference: np.ndarray, tau: float
) -> float:
    """Duality gap of the τ-regularised game, ``max_π' P_τ(π' ≻ π) − ½``; 0 only at ``π*_τ``.

    ``P_τ(π' ≻ π) = P(π' ≻ π) − τ KL(π'‖μ) + τ KL(π‖μ)``; the best response is
    ``π' ∝ μ exp(P(y ≻ π)/τ)``, so the max is ``τ log Σ_y μ(y) exp(P(y ≻ π)/τ) + τ KL(π‖μ)``.
    With ``τ = 0`` it is the exploitability.
    """
    if tau == 0:
        return exploitability(preference, policy)
    g = response_win_rates(preference, policy) / tau
    top = g.max(axis=1, keepdims=True)
    log_partition = top[:, 0] + np.log((reference * np.exp(g - top)).sum(axis=1))
    return float((tau * log_partition).mean() + tau * kl_divergence(policy, reference) - 0.5)


def minimax_winner(preference: np.ndarray) -> np.ndarray:
    """A minimax (von Neumann) winner per prompt by linear programming: ``[prompts, n]``.

    Maximise ``v`` subject to ``Σ_y π(y) P(y ≻ y') ≥ v`` for every ``y'``, ``Σ π = 1``,
    ``π ≥ 0``; the value is ½ for every symmetric game. Ties between equilibria are broken by
    the solver (HiGHS).
    """
    winners = []
    for matrix in preference:
        n = matrix.shape[0]
        objective = np.zeros(n + 1)
        objective[-1] = -1.0
        constraints = np.hstack([-matrix.T, np.ones((n, 1))])  # v − (Pᵀπ)_y' ≤ 0
        equality = np.hstack([np.ones((1, n)), np.zeros((1, 1))])
        result = linprog(
            objective,
            A_ub=constraints,
            b_ub=np.zeros(n),
            A_eq=equality,
            b_eq=[1.0],
            bounds=[(0, None)] * n + [(None, None)],
            method="highs",
        )
        if not result.success:
            raise RuntimeError(f"minimax linear programme failed: {result.message}")
        pi = np.clip(result.x[:n], 0.0, None)
        winners.append(pi / pi.sum())
    return np.stack(winners)


def regularized_equilibrium(
    preference: np.ndarray,
    reference: np.ndarray,
    tau: float,
    tolerance: float = 1e-10,
    max_iterations: int = 200_000,
) -> np.ndarray:
    """The τ-regularised equilibrium ``π*_τ = softmax(log μ + P π*_τ / τ)``, per prompt.

    Found by the damped fixed-point (magnetic mirror descent) iteration
    ``π ← normalise((π μ^{ητ} exp(η P π))^{1/(1+ητ)})`` with ``η = τ / 2`` (a contraction for
    payoffs in [0, 1]) until ``π`` and ``softmax(log μ + P π / τ)`` differ by under
    ``tolerance`` everywhere.
    """
    eta = tau / 2
    log_pi = np.log(reference)
    log_mu = np.log(reference)
    for _ in range(max_iterations):
        pi = np.exp(log_pi)
        best = log_mu + response_win_rates(preference, pi) / tau
        best = np.exp(best - np.logaddexp.reduce(best, axis=1, keepdims=True))
        if np.abs(best - pi).max() < tolerance:
            return pi
        step = (log_pi + eta * tau * log_mu + eta * response_win_rates(preference, pi)) / (
            1 + eta * tau
        )
        log_pi = step - np.logaddexp.reduce(step, axis=1, keepdims=True)
    raise RuntimeError(f"regularised equilibrium not found in {max_iterations} iterations")
