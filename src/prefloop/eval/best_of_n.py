"""Best-of-n selection curves: how proxy and gold reward move as selection pressure grows."""

from __future__ import annotations

import math

import numpy as np


def best_of_n_kl(n: int) -> float:
    """KL(best-of-n ‖ base) = log n − (n − 1)/n, the standard analytic value for best-of-n."""
    return math.log(n) - (n - 1) / n


def best_of_n_weights(total: int, n: int) -> np.ndarray:
    """P(the i-th smallest of ``total`` samples is the best of a random n-subset), i = 1..total.

    C(i−1, n−1) / C(total, n): the unbiased estimator of Coste et al. over all n-subsets.
    """
    if not 1 <= n <= total:
        raise ValueError(f"n must be in [1, {total}], got {n}")
    i = np.arange(1, total + 1)
    log_weights = np.full(total, -np.inf)
    valid = i >= n
    iv = i[valid]
    log_weights[valid] = _log_comb(iv - 1, n - 1) - _log_comb(np.array([total]), n)
    return np.exp(log_weights)


def _log_comb(a: np.ndarray, b: int) -> np.ndarray:
    lgamma = np.vectorize(math.lgamma)
    return lgamma(a + 1) - lgamma(b + 1) - lgamma(a - b + 1)


def best_of_n_curve(proxy: np.ndarray, gold: np.ndarray, ns: list[int]) -> list[dict[str, float]]:
    """Expected proxy and gold of best-of-n (selected by ``proxy``), per n, averaged over prompts.

    ``proxy`` and ``gold`` are [prompts, samples]; each prompt's samples are one pool of N.
    """
    if proxy.shape != gold.shape or proxy.ndim != 2:
        raise ValueError(
            f"proxy and gold must both be [prompts, samples], got {proxy.shape}, {gold.shape}"
        )
    order = np.argsort(proxy, axis=1, kind="stable")
    sorted_proxy = np.take_along_axis(proxy, order, axis=1)
    sorted_gold = np.take_along_axis(gold, order, axis=1)
    curve = []
    for n in ns:
        weights = best_of_n_weights(proxy.shape[1], n)
        curve.append({
            "n": n,
            "kl": best_of_n_kl(n),
            "proxy": float((sorted_proxy @ weights).mean()),
            "gold": float((sorted_gold @ weights).mean()),
        })  # fmt: skip
    return curve
