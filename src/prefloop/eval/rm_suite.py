"""``eval-rm``: the reward-model evaluation suite.

Metrics, each on plain score arrays so any scorer (a reward model, an ensemble, a personalized
RM given a user, a DPO policy's implicit reward) can be judged the same way:

* pairwise accuracy: share of pairs with r(chosen) > r(rejected) (ties count as wrong);
* one-to-many accuracy (RewardMATH): a group counts only if the chosen response beats every
  rejected one, ``r(chosen) > max r(rejected)``;
* contrast consistency (Shen et al.): for prompts I1, I2 with correct responses r1, r2, both
  ``R(I1,r1) > R(I1,r2)`` and ``R(I2,r2) > R(I2,r1)`` (response consistency), and both
  ``R(I1,r1) > R(I2,r1)`` and ``R(I2,r2) > R(I1,r2)`` (instruction consistency);
* expected calibration error of the Bradley–Terry probability σ(r_chosen − r_rejected): pairs
  are binned by confidence max(p, 1 − p) into equal-width bins on [0.5, 1]; ECE is
  Σ_b (n_b / n) |accuracy_b − mean confidence_b|.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from prefloop.data.records import Comparison, Prompt
from prefloop.models.policy import Policy
from prefloop.worlds.review_shifts import ContrastPair, OneToMany, RMEvalSuite

Scorer = Callable[[Sequence[Prompt], Sequence[str]], np.ndarray]


def pairwise_accuracy(chosen: np.ndarray, rejected: np.ndarray) -> float:
    return float(np.mean(np.asarray(chosen) > np.asarray(rejected))) if len(chosen) else np.nan


def one_to_many_accuracy(chosen: Sequence[float], rejected: Sequence[Sequence[float]]) -> float:
    """Share of groups whose chosen score is strictly above every rejected score."""
    if not len(chosen):
        return float("nan")
    return float(np.mean([c > max(r) for c, r in zip(chosen, rejected)]))


def contrast_consistency(
    s11: np.ndarray, s12: np.ndarray, s21: np.ndarray, s22: np.ndarray
) -> dict[str, float]:
    """``sij`` = R(I_i, r_j). Response and instruction consistency, as shares of contrast pairs."""
    s11, s12, s21, s22 = map(np.asarray, (s11, s12, s21, s22))
    return {
        "response": float(np.mean((s11 > s12) & (s22 > s21))),
        "instruction": float(np.mean((s11 > s21) & (s22 > s12))),
    }


def expected_calibration_error(
    probabilities: np.ndarray, outcomes: np.ndarray, bins: int = 10
) -> float:
    """ECE of predicted P(a ≻ b) against 0/1 outcomes (a won), binned by confidence."""
    p = np.asarray(probabilities, dtype=float)
    y = np.asarray(outcomes, dtype=float)
    if not len(p):
        return float("nan")
    confidence = np.maximum(p, 1 - p)
    correct = ((p >= 0.5) == (y == 1)).astype(float)
    index = np.minimum(((confidence - 0.5) * 2 * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def score_pairs(scorer: Scorer, pairs: Sequence[Comparison]) -> tuple[np.ndarray, np.ndarray]:
    prompts = [c.prompt for c in pairs]
    scores = np.asarray(scorer(prompts + prompts, [c.chosen for c in pairs] +
                               [c.rejected for c in pairs]), dtype=float)  # fmt: skip
    return scores[: len(pairs)], scores[len(pairs) :]


def score_groups(scorer: Scorer, groups: Sequence[OneToMany]) -> float:
    prompts = [g.prompt for g in groups for _ in range(1 + len(g.rejected))]
    responses = [r for g in groups for r in (g.chosen, *g.rejected)]
    scores = np.asarray(scorer(prompts, responses), dtype=float)
    chosen, rejected, start = [], [], 0
    for g in groups:
        chosen.append(scores[start])
        rejected.append(scores[start + 1 : start + 1 + len(g.rejected)])
        start += 1 + len(g.rejected)
    return one_to_many_accuracy(chosen, rejected)


def score_contrast(scorer: Scorer, contrast: Sequence[ContrastPair]) -> dict[str, float]:
    combos = [("prompt_1", "response_1"), ("prompt_1", "response_2"),
              ("prompt_2", "response_1"), ("prompt_2", "response_2")]  # fmt: skip
    prompts = [getattr(c, p) for p, _ in combos for c in contrast]
    responses = [getattr(c, r) for _, r in combos for c in contrast]
    scores = np.asarray(scorer(prompts, responses), dtype=float).reshape(4, len(contrast))
    return contrast_consistency(*scores)


def evaluate_rm_suite(scorer: Scorer, suite: RMEvalSuite) -> dict:
    """Every metric of the suite for one scorer (see the module docstring)."""
    chosen, rejected = score_pairs(scorer, suite.pairs)
    ood = {
        name: pairwise_accuracy(*score_pairs(scorer, pairs)) for name, pairs in suite.ood.items()
    }
    cal_chosen, cal_rejected = score_pairs(scorer, suite.calibration)
    probabilities = 1 / (1 + np.exp(-(cal_chosen - cal_rejected)))
    consistency = score_contrast(scorer, suite.contrast)
    return {
        "accuracy": pairwise_accuracy(chosen, rejected),
        "accuracy_ood": float(np.mean(list(ood.values()))),
        "accuracy_ood_by_shift": ood,
        "one_to_many": score_groups(scorer, suite.one_to_many),
        "consistency": consistency["response"],
        "instruction_consistency": consistency["instruction"],
        "ece": expected_calibration_error(probabilities, np.ones_like(probabilities)),
        "pairs": len(suite.pairs),
    }


def reward_model_scorer(reward_model) -> Scorer:
    """Scores of anything with ``score(prompts, responses) -> Tensor`` (RM, ensemble)."""
    return lambda prompts, responses: reward_model.score(list(prompts), list(responses)).numpy()


def implicit_reward_scorer(policy: Policy, reference: Policy, beta: float) -> Scorer:
    """DPO's implicit reward β·(log π(y|x) − log π_ref(y|x)) as a reward model."""

    def score(prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        prompts, responses = list(prompts), list(responses)
        logps, _ = policy.sequence_logps(prompts, responses)
        reference_logps, _ = reference.sequence_logps(prompts, responses)
        return (beta * (logps - reference_logps)).numpy()

    return score


def labels_accuracy_and_ece(scorer: Scorer, pairs: Sequence[Comparison]) -> dict[str, float]:
    """Accuracy against a dataset's labels and the ECE of σ(r_c − r_r) on it."""
    chosen, rejected = score_pairs(scorer, pairs)
    probabilities = torch.sigmoid(torch.tensor(chosen - rejected)).numpy()
    return {
        "label_accuracy": pairwise_accuracy(chosen, rejected),
        "ece": expected_calibration_error(probabilities, np.ones_like(probabilities)),
        "pairs": len(pairs),
    }


def evaluate_model_directory(
    model_dir: str | Path,
    suite: RMEvalSuite,
    world_name: str,
    reference_dir: str | Path | None = None,
    beta: float = 0.1,
    comparisons: Sequence[Comparison] = (),
) -> dict:
    """``prefloop eval-rm``: a reward model, or a policy's implicit reward given its reference.

    Runs a world's ``suite`` (in-distribution, both shifts, one-to-many, contrast, ECE) and,
    when ``comparisons`` are given, accuracy and ECE against their labels.
    """
    from prefloop.eval.cli_eval import is_reward_model
    from prefloop.models.reward import RewardModel

    if is_reward_model(model_dir):
        kind, scorer = "reward_model", reward_model_scorer(RewardModel.from_pretrained(model_dir))
    elif reference_dir is not None:
        policy, reference = Policy.from_pretrained(model_dir), Policy.from_pretrained(reference_dir)
        kind, scorer = "dpo_implicit", implicit_reward_scorer(policy, reference, beta)
    else:
        raise ValueError(f"{model_dir} is a policy: pass its reference for the implicit reward")
    report = {"kind": kind, "world": world_name}
    report |= evaluate_rm_suite(scorer, suite)
    if comparisons:
        report["data"] = labels_accuracy_and_ece(scorer, comparisons)
    return report
