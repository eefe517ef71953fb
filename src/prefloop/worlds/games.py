"""Preference games: finitely many prompts × responses and a preference matrix per prompt.

A game holds ``P[x, a, b] = P(a ≻ b | x)`` with ``P + Pᵀ = 1`` and ``P[x, a, a] = ½``, a
reference policy ``μ`` (the KL anchor of the regularised game, default uniform), an optional
start policy for iterative methods (default ``μ``), and, when the preference aggregates
annotator subpopulations, each group's matrix and weight (``P = Σ_g w_g P_g``).

The built-in games (:data:`BUILTIN_GAMES`) each show one way a scalar reward misleads:
noisy rock–paper–scissors (no reward explains a cycle), a Condorcet winner that is not the
Bradley–Terry winner, and three transitive annotator groups whose aggregate is cyclic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

TOLERANCE = 1e-6


class GameError(ValueError):
    """A preference game (or its file) breaks a rule; the message names the field."""


@dataclass(frozen=True)
class PreferenceGame:
    """A symmetric preference game over ``responses`` for each of ``preference.shape[0]`` prompts.

    ``preference`` is ``[prompts, n, n]``; ``reference`` and ``start`` are ``[prompts, n]``
    probability tables. ``group_preferences`` ``[groups, prompts, n, n]`` and
    ``group_weights`` ``[groups]`` are set when ``preference`` is a mixture of annotator groups.
    """

    name: str
    responses: tuple[str, ...]
    preference: np.ndarray
    reference: np.ndarray
    start: np.ndarray
    description: str = ""
    group_preferences: np.ndarray | None = None
    group_weights: np.ndarray | None = None

    @property
    def prompts(self) -> int:
        return self.preference.shape[0]

    @property
    def size(self) -> int:
        return len(self.responses)


def _fail(source: str, message: str) -> GameError:
    return GameError(f"{source}: {message}")


def _as_matrix(value, source: str, name: str, n: int) -> np.ndarray:
    try:
        matrix = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(source, f"'{name}' must be an {n}×{n} matrix of numbers") from None
    if matrix.ndim == 2:
        matrix = matrix[None]
    if matrix.ndim != 3 or matrix.shape[1:] != (n, n):
        raise _fail(
            source,
            f"'{name}' must be an {n}×{n} matrix (one row per response), "
            f"got shape {list(np.shape(value))}",
        )
    return matrix


def check_preference(matrix: np.ndarray, source: str, name: str = "P") -> None:
    """Raise :class:`GameError` unless ``matrix`` ``[prompts, n, n]`` is a preference matrix."""
    if not np.isfinite(matrix).all() or (matrix < 0).any() or (matrix > 1).any():
        raise _fail(source, f"'{name}' entries must be probabilities in [0, 1]")
    if not np.allclose(np.diagonal(matrix, axis1=1, axis2=2), 0.5, atol=TOLERANCE):
        raise _fail(source, f"'{name}' must have ½ on its diagonal (P(y ≻ y) = 0.5)")
    sums = matrix + np.swapaxes(matrix, 1, 2)
    if not np.allclose(sums, 1.0, atol=TOLERANCE):
        x, a, b = np.argwhere(np.abs(sums - 1.0) > TOLERANCE)[0]
        raise _fail(
            source,
            f"'{name}' must satisfy P + Pᵀ = 1; entries [{a}][{b}] and "
            f"[{b}][{a}] sum to {sums[x, a, b]:.6g}",
        )


def _as_policy(value, source: str, name: str, prompts: int, n: int) -> np.ndarray:
    try:
        table = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise _fail(source, f"'{name}' must be a list of {n} probabilities") from None
    if table.ndim == 1:
        table = np.broadcast_to(table, (prompts, table.shape[0])).copy()
    if table.shape != (prompts, n):
        raise _fail(
            source,
            f"'{name}' must be a list of {n} probabilities (one per response), "
            f"got shape {list(np.shape(value))}",
        )
    if not np.isfinite(table).all() or (table <= 0).any():
        raise _fail(source, f"'{name}' probabilities must be positive (the KL to it is finite)")
    if not np.allclose(table.sum(axis=1), 1.0, atol=TOLERANCE):
        raise _fail(source, f"'{name}' probabilities must sum to 1, got {table.sum(axis=1)[0]:.6g}")
    return table


def make_game(
    name: str,
    responses,
    preference,
    reference=None,
    start=None,
    description: str = "",
    source: str | None = None,
) -> PreferenceGame:
    """Validate and build a game; ``reference`` defaults to uniform, ``start`` to ``reference``.

    ``preference`` is ``[n, n]`` (one prompt) or ``[prompts, n, n]``. Errors name ``source``
    (a file name, or the game's name) and the field.
    """
    source = source or f"game {name!r}"
    if not isinstance(responses, list | tuple) or not responses:
        raise _fail(source, "'responses' must be a non-empty list of names")
    if not all(isinstance(r, str) and r for r in responses):
        raise _fail(source, "'responses' must be non-empty strings")
    if len(set(responses)) != len(responses):
        raise _fail(source, "'responses' must be distinct")
    n = len(responses)
    matrix = _as_matrix(preference, source, "P", n)
    check_preference(matrix, source)
    prompts = matrix.shape[0]
    uniform = np.full((prompts, n), 1.0 / n)
    mu = uniform if reference is None else _as_policy(reference, source, "reference", prompts, n)
    pi0 = mu.copy() if start is None else _as_policy(start, source, "start", prompts, n)
    return PreferenceGame(name, tuple(responses), matrix, mu, pi0, description)


def load_game(path: str | Path) -> PreferenceGame:
    """A one-game JSON file ``{"responses": [...], "P": [[...]], "reference": [...]}``.

    ``reference`` (default uniform) and ``start`` (default ``reference``) are optional.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise _fail(str(path), f"not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(data, dict):
        raise _fail(str(path), "must hold one JSON object with 'responses' and 'P'")
    for key in ("responses", "P"):
        if key not in data:
            raise _fail(str(path), f"missing field {key!r}")
    unknown = sorted(set(data) - {"responses", "P", "reference", "start", "name"})
    if unknown:
        raise _fail(
            str(path), f"unknown field(s) {unknown}; expected responses, P, reference, start"
        )
    return make_game(
        data.get("name", path.stem),
        data["responses"],
        data["P"],
        data.get("reference"),
        data.get("start"),
        source=str(path),
    )


def bradley_terry_preference(utilities) -> np.ndarray:
    """``P(a ≻ b) = σ(u_a − u_b)``: the (transitive) preference of one BT annotator."""
    u = np.asarray(utilities, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-(u[:, None] - u[None, :])))


def mixture_game(
    name: str, responses, utilities, weights, reference=None, start=None, description: str = ""
) -> PreferenceGame:
    """Annotator groups, each a BT annotator with its own ``utilities``, mixed by ``weights``."""
    groups = np.stack([bradley_terry_preference(u)[None] for u in utilities])
    w = np.asarray(weights, dtype=np.float64)
    if (w <= 0).any() or not np.isclose(w.sum(), 1.0):
        raise _fail(f"game {name!r}", "'weights' must be positive and sum to 1")
    game = make_game(
        name, responses, np.tensordot(w, groups, axes=1), reference, start, description
    )
    return replace(game, group_preferences=groups, group_weights=w)


def rock_paper_scissors(noise: float = 0.2) -> PreferenceGame:
    """Rock–paper–scissors judged by an annotator who answers at random with prob. ``noise``.

    The winner of each pair is preferred with ``1 − noise/2`` (0.9 by default). The minimax
    winner and the BT optimum under the uniform reference are both uniform, so the start policy
    is skewed (0.6, 0.3, 0.1): an iterative method has to travel to the equilibrium.
    """
    beats = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float64)  # row beats column
    clean = beats + 0.5 * np.eye(3)
    preference = (1 - noise) * clean + noise * 0.5
    return make_game(
        "rock-paper-scissors",
        ["rock", "paper", "scissors"],
        preference,
        start=[0.6, 0.3, 0.1],
        description=f"rock–paper–scissors, annotator noise {noise}",
    )


def condorcet_not_bt() -> PreferenceGame:
    """A beats every other response narrowly (0.6); B beats C and D by far (0.9); C ~ D.

    A is the Condorcet winner, hence the (pure) minimax winner; B's large margins give it the
    highest Bradley–Terry score (and Borda count), so reward maximisation picks B.
    """
    p = np.full((4, 4), 0.5)
    for loser in (1, 2, 3):
        p[0, loser], p[loser, 0] = 0.6, 0.4
    for loser in (2, 3):
        p[1, loser], p[loser, 1] = 0.9, 0.1
    return make_game(
        "condorcet-not-bt",
        ["A", "B", "C", "D"],
        p,
        description="Condorcet winner A (narrow wins) vs BT winner B (big margins)",
    )


def annotator_mixture() -> PreferenceGame:
    """Three BT annotator groups, each transitive, whose weighted aggregate is cyclic.

    Groups (weights 0.4, 0.35, 0.25) rank A>B>C, B>C>A and C>A>B (utilities 4, 2, 0 on that
    order, so each group prefers its better response with probability σ(2) ≈ 0.88 or σ(4)); all
    three put D last (utility −2). The weighted majority prefers A to B, B to C and C to A.
    """
    utilities = [[4.0, 2.0, 0.0, -2.0], [0.0, 4.0, 2.0, -2.0], [2.0, 0.0, 4.0, -2.0]]
    return mixture_game(
        "annotator-mixture",
        ["A", "B", "C", "D"],
        utilities,
        [0.4, 0.35, 0.25],
        description="three transitive annotator groups, cyclic in aggregate",
    )


BUILTIN_GAMES: dict[str, Callable[[], PreferenceGame]] = {
    "rock-paper-scissors": rock_paper_scissors,
    "condorcet-not-bt": condorcet_not_bt,
    "annotator-mixture": annotator_mixture,
}


def builtin_games() -> list[PreferenceGame]:
    """Every built-in game, in :data:`BUILTIN_GAMES` order."""
    return [build() for build in BUILTIN_GAMES.values()]
