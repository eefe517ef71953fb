"""Game-theoretic alignment recipes (Nash-MD, INPO, SPO, DNO, OSP) and the BT-RLHF baseline.

Every method plays the τ-regularised preference game ``P_τ(π ≻ π') = P(π ≻ π') − τ KL(π‖μ)
+ τ KL(π'‖μ)`` by self-play: iteration ``t`` freezes ``π_t``, asks for feedback on responses
drawn from ``π_t`` (or Nash-MD's mixture ``π_t^μ``), and moves the policy by minimising the
method's loss from ``objectives/``. A method exposes two things:

* ``loss(policy_logps, iterate)`` — that loss with the expectation over sampled responses
  taken exactly over the finite response set (each response weighted by its probability), as
  a function of the policy's log-prob table. A torch optimiser on it trains any policy with a
  ``log_probs()`` table; a text policy uses the same ``objectives/`` functions on sampled
  responses instead.
* ``step(iterate)`` — the exact minimiser of that loss, where the paper gives it in closed form
  (a multiplicative / mirror-descent update), or ``None`` (OSP). The tabular lab uses it:
  exact, and fast enough for thousands of iterations. The tests check that minimising
  ``loss`` lands on ``step``.

Step sizes are written as ``η`` = the size of the mirror step (bigger moves further); where a
paper uses the inverse (INPO's and DNO's η, DPO's β) the docstring gives the mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np
import torch

from prefloop.eval.games import exploitability, kl_divergence, regularized_gap
from prefloop.models.tabular import TabularPolicy
from prefloop.objectives import direct
from prefloop.objectives.nash import geometric_mixture, nash_md_loss, spo_loss
from prefloop.objectives.reward import bradley_terry_loss
from prefloop.train.config import setting
from prefloop.worlds.games import PreferenceGame

Tensor = torch.Tensor


@dataclass(frozen=True)
class Iterate:
    """What one iteration sees: ``log π_t`` and ``log μ`` ``[X, n]``, ``P`` ``[X, n, n]``."""

    previous: Tensor
    reference: Tensor
    preference: Tensor

    def win_rates(self, opponent_logps: Tensor) -> Tensor:
        """``P(y ≻ q)`` for every response against the distribution ``q``: ``[X, n]``."""
        return torch.einsum("xab,xb->xa", self.preference, opponent_logps.exp())


class NashMethod(Protocol):
    name: ClassVar[str]
    on_policy: ClassVar[bool]  # loss weights come from π_θ itself (REINFORCE), not from π_t
    tau: float

    def loss(self, policy_logps: Tensor, iterate: Iterate) -> Tensor: ...

    def step(self, iterate: Iterate) -> Tensor | None: ...


def _normalise(logits: Tensor) -> Tensor:
    return torch.log_softmax(logits, dim=-1)


def _on_policy(policy_logps: Tensor, per_sample: Tensor) -> Tensor:
    """Exact ``E_{y~π_θ}`` of a per-sample loss: weights ``π_θ`` detached, mean over prompts."""
    return (policy_logps.detach().exp() * per_sample).sum(-1).mean()


def _pair_terms(policy_logps: Tensor, *others: Tensor) -> tuple[Tensor, ...]:
    """Every ordered pair ``(a, b)``, ``a ≠ b``: each table ``[X, n]`` as (chosen, rejected)."""
    n = policy_logps.shape[-1]
    a, b = torch.where(~torch.eye(n, dtype=torch.bool))
    return tuple(t for table in (policy_logps, *others) for t in (table[:, a], table[:, b]))


def _pair_weights(iterate: Iterate) -> Tensor:
    """``π_t(a) π_t(b)`` for the ordered pairs of :func:`_pair_terms`: both drawn from ``π_t``."""
    p = iterate.previous.exp()
    chosen, rejected = _pair_terms(p)
    return chosen * rejected


def _pair_labels(iterate: Iterate) -> Tensor:
    """``P(a ≻ b)`` for the ordered pairs of :func:`_pair_terms`."""
    n = iterate.preference.shape[-1]
    a, b = torch.where(~torch.eye(n, dtype=torch.bool))
    return iterate.preference[:, a, b]


@dataclass(frozen=True)
class _MirrorStep:
    """The settings of a method with a closed-form mirror step: the game's τ and the step η."""

    tau: float = setting(0.05, "KL-to-reference strength τ of the game.", low=0)
    eta: float = setting(1.0, "Mirror step size η (bigger moves further).", low=0, low_open=True)


@dataclass(frozen=True)
class NashMD(_MirrorStep):
    """Nash-MD (Munos et al. 2023): best response to the geometric mixture, with KL to it.

    ``π_t^μ ∝ π_t^{1−ητ} μ^{ητ}``; ``π_{t+1} = argmax η P(π ≻ π_t^μ) − KL(π ‖ π_t^μ)``
    ``∝ π_t^μ exp(η P(y ≻ π_t^μ))`` (constant step ``η``; needs ``ητ ≤ 1``).
    """

    name: ClassVar[str] = "nash-md"
    on_policy: ClassVar[bool] = True

    def mixture(self, iterate: Iterate) -> Tensor:
        return geometric_mixture(iterate.previous, iterate.reference, self.eta * self.tau)

    def loss(self, policy_logps: Tensor, iterate: Iterate) -> Tensor:
        mixture = self.mixture(iterate)
        per_sample = nash_md_loss(
            policy_logps, mixture, iterate.win_rates(mixture), kl_coef=1.0 / self.eta
        )
        return _on_policy(policy_logps, per_sample)

    def step(self, iterate: Iterate) -> Tensor:
        mixture = self.mixture(iterate)
        return _normalise(mixture + self.eta * iterate.win_rates(mixture))


@dataclass(frozen=True)
class SPO(_MirrorStep):
    """SPO (Swamy et al. 2024): reward = win rate against the policy's own samples, RL step.

    The RL step maximises ``E_π r_t − τ KL(π‖μ) − KL(π‖π_t)/η`` with ``r_t(y) = P(y ≻ π_t)``:
    ``π_{t+1} ∝ (π_t μ^{ητ} exp(η r_t))^{1/(1+ητ)}`` (a magnetic mirror-descent step).
    ``τ = 0`` is the paper's unregularised self-play, whose guarantee is for the average iterate.
    """

    name: ClassVar[str] = "spo"
    on_policy: ClassVar[bool] = True

    def loss(self, policy_logps: Tensor, iterate: Iterate) -> Tensor:
        reward = iterate.win_rates(iterate.previous)
        per_sample = spo_loss(
            policy_logps, iterate.previous, iterate.reference, reward, eta=self.eta, tau=self.tau
        )
        return _on_policy(policy_logps, per_sample)

    def step(self, iterate: Iterate) -> Tensor:
        reward = iterate.win_rates(iterate.previous)
        ht = self.eta * self.tau
        return _normalise(
            (iterate.previous + ht * iterate.reference + self.eta * reward) / (1 + ht)
        )


@dataclass(frozen=True)
class INPO(_MirrorStep):
    """INPO (Zhang et al. 2024): online mirror descent through a pairwise regression loss.

    Pairs ``y, y' ~ π_t`` labelled by the preference; loss ``direct.inpo`` with its ``beta`` =
    the paper's η = ``1/eta`` here and ``ratio = τ/η_paper = eta·τ``. Its minimiser is
    ``π_{t+1} ∝ π_t^{1−ητ} μ^{ητ} exp(η P(y ≻ π_t))`` (needs ``ητ ≤ 1``).
    """

    name: ClassVar[str] = "inpo"
    on_policy: ClassVar[bool] = False

    def loss(self, policy_logps: Tensor, iterate: Iterate) -> Tensor:
        pi_w, pi_l, ref_w, ref_l, prev_w, prev_l = _pair_terms(
            policy_logps, iterate.reference, iterate.previous
        )
        per_pair = direct.inpo(
            pi_w,
            pi_l,
            ref_w,
            ref_l,
            beta=1.0 / self.eta,
            previous_chosen_logps=prev_w,
            previous_rejected_logps=prev_l,
            ratio=self.eta * self.tau,
        )
        weights = _pair_weights(iterate) * _pair_labels(iterate)  # chosen a, rejected b
        return (weights * per_pair).sum(-1).mean()

    def step(self, iterate: Iterate) -> Tensor:
        ht = self.eta * self.tau
        wins = iterate.win_rates(iterate.previous)
        return _normalise((1 - ht) * iterate.previous + ht * iterate.reference + self.eta * wins)


@dataclass(frozen=True)
class DNO(_MirrorStep):
    """DNO (Rosset et al. 2024, Alg. 1): soft-label BCE regression with ``π_t`` as reference.

    Reward ``r_t(y) = P(y ≻ π_t) − τ log(π_t(y)/μ(y))`` (the win rate against ``π_t``, with the
    game's KL to μ shaping it; ``τ = 0`` is the paper's), pairs ``y, y' ~ π_t``, target
    ``σ(r_t(y) − r_t(y'))``, loss ``direct.dno`` with ``beta = 1/eta`` (the paper's η) and
    reference ``π_t``. Minimiser: ``π_{t+1} ∝ π_t exp(η r_t)``; with ``τ > 0`` that is INPO's
    step, reached through win-rate estimates instead of pairwise labels.
    """

    name: ClassVar[str] = "dno"
    on_policy: ClassVar[bool] = False

    def reward(self, iterate: Iterate) -> Tensor:
        return iterate.win_rates(iterate.previous) - self.tau * (
            iterate.previous - iterate.reference
        )

    def loss(self, policy_logps: Tensor, iterate: Iterate) -> Tensor:
        pi_w, pi_l, prev_w, prev_l, r_w, r_l = _pair_terms(
            policy_logps, iterate.previous, self.reward(iterate)
        )
        per_pair = direct.dno(
            pi_w, pi_l, prev_w, prev_l, beta=1.0 / self.eta, strength=torch.sigmoid(r_w - r_l)
        )
        return (_pair_weights(iterate) * per_pair).sum(-1).mean()

    def step(self, iterate: Iterate) -> Tensor:
        return _normalise(iterate.previous + self.eta * self.reward(iterate))


@dataclass(frozen=True)
class OSP:
    """OSP (Zhai et al. 2024): the policy judges pairs of its own samples; soft-label DPO.

    Pairs ``y, y' ~ π_t`` with self-judged strength ``p``; loss ``direct.soft_preference``
    (SPCE) on the DPO logit with reference μ and ``beta = τ``. A tabular policy is only a
    table and has no judging skill of its own, so its self-judge is ``judge`` (``[X, n, n]``;
    ``None``: the game's aggregate preference, i.e. a self-judge exactly as good as the
    annotator pool). Ranked pairing of K samples becomes, in exact expectation, every pair
    weighted by ``π_t(y) π_t(y')``. No closed form: the step is a weighted BT fit.
    """

    name: ClassVar[str] = "osp"
    on_policy: ClassVar[bool] = False
    tau: float = setting(0.05, "β of the DPO logit (the game's τ).", low=0, low_open=True)
    judge: np.ndarray | None = None

    def loss(self, policy_logps: Tensor, iterate: Iterate) -> Tensor:
        pi_w, pi_l, ref_w, ref_l = _pair_terms(policy_logps, iterate.reference)
        judged = iterate.preference if self.judge is None else torch.as_tensor(self.judge)
        strength = _pair_labels(Iterate(iterate.previous, iterate.reference, judged))
        per_pair = direct.soft_preference(
            pi_w, pi_l, ref_w, ref_l, beta=self.tau, strength=strength
        )
        return (_pair_weights(iterate) * per_pair).sum(-1).mean()

    def step(self, iterate: Iterate) -> None:
        return None


METHODS: dict[str, Callable[..., NashMethod]] = {m.name: m for m in (NashMD, INPO, SPO, DNO, OSP)}


def minimise(
    policy: TabularPolicy,
    objective: Callable[[Tensor], Tensor],
    steps: int,
    lr: float,
    on_policy: bool,
) -> float:
    """Minimise ``objective(policy.log_probs())``; returns the last loss.

    An on-policy surrogate (weights from the current ``π_θ``, detached) is not a function whose
    values a line search can trust, so it gets ``steps`` Adam steps; a loss over pairs drawn
    from the frozen ``π_t`` is a fixed convex function of the logits and gets L-BFGS.
    """
    if on_policy:
        optimiser = torch.optim.Adam(policy.parameters(), lr=lr)
        for _ in range(steps):
            optimiser.zero_grad()
            loss = objective(policy.log_probs())
            loss.backward()
            optimiser.step()
        return loss.item()
    optimiser = torch.optim.LBFGS(
        policy.parameters(),
        max_iter=steps,
        tolerance_grad=1e-10,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = objective(policy.log_probs())
        loss.backward()
        return loss

    return optimiser.step(closure).item()


@dataclass
class TabularRun:
    """Per-iteration exact metrics of one run (index 0 is the start policy) and its end."""

    exploitability: list[float]
    regularized_gap: list[float]
    kl_to_reference: list[float]
    final_policy: np.ndarray
    average_policy: np.ndarray  # uniform mixture of the iterates π_0 .. π_T

    def summary(self) -> dict:
        return {
            "final_exploitability": self.exploitability[-1],
            "final_regularized_gap": self.regularized_gap[-1],
            "final_kl_to_reference": self.kl_to_reference[-1],
        }


def game_tensors(game: PreferenceGame) -> tuple[Tensor, Tensor]:
    """``(log μ, P)`` as float64 tensors."""
    return torch.log(torch.as_tensor(game.reference)), torch.as_tensor(game.preference)


def run_tabular(
    method: NashMethod,
    game: PreferenceGame,
    iterations: int,
    exact: bool = True,
    inner_steps: int = 200,
    inner_lr: float = 0.05,
) -> TabularRun:
    """Self-play ``method`` on ``game`` from ``game.start`` for ``iterations`` iterations.

    ``exact`` uses the closed-form step where the method has one; otherwise (or with
    ``exact=False``) each iteration runs ``inner_steps`` Adam steps on the method's loss,
    starting from ``π_t`` (Adam for on-policy surrogates, L-BFGS for pair losses).
    """
    log_mu, preference = game_tensors(game)
    policy = TabularPolicy.from_probs(game.start)
    tables = [game.start]
    for _ in range(iterations):
        iterate = Iterate(policy.log_probs().detach(), log_mu, preference)
        target = method.step(iterate) if exact else None
        if target is not None:
            policy.assign(target)
        else:
            minimise(
                policy,
                lambda logps, it=iterate: method.loss(logps, it),
                inner_steps,
                inner_lr,
                method.on_policy,
            )
        tables.append(policy.probs())
    p, mu = game.preference, game.reference
    return TabularRun(
        exploitability=[exploitability(p, t) for t in tables],
        regularized_gap=[regularized_gap(p, t, mu, method.tau) for t in tables],
        kl_to_reference=[kl_divergence(t, mu) for t in tables],
        final_policy=tables[-1],
        average_policy=np.mean(tables, axis=0),
    )


def bradley_terry_scores(preference: np.ndarray, iterations: int = 200) -> np.ndarray:
    """Maximum-likelihood BT scores ``[X, n]`` (mean zero per prompt) for the soft labels ``P``.

    Every ordered pair ``a ≠ b`` counts once with target ``P(a ≻ b)``; the likelihood is convex
    and L-BFGS solves it to machine precision.
    """
    p = torch.as_tensor(preference)
    scores = torch.zeros(p.shape[:2], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [scores],
        max_iter=iterations,
        tolerance_grad=1e-12,
        tolerance_change=1e-14,
        line_search_fn="strong_wolfe",
    )
    n = p.shape[-1]
    a, b = torch.where(~torch.eye(n, dtype=torch.bool))

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = bradley_terry_loss(scores[:, a], scores[:, b], strength=p[:, a, b]).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    fitted = scores.detach().numpy()
    return fitted - fitted.mean(axis=1, keepdims=True)


def bt_rlhf_policy(game: PreferenceGame, beta: float) -> np.ndarray:
    """Classic RLHF's optimum on the game: ``π ∝ μ exp(r/β)`` with the BT fit ``r`` of ``P``."""
    logits = np.log(game.reference) + bradley_terry_scores(game.preference) / beta
    logits -= logits.max(axis=1, keepdims=True)
    pi = np.exp(logits)
    return pi / pi.sum(axis=1, keepdims=True)
