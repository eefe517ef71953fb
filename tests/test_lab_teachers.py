"""Teacher-knob and reward-model lab pieces: regret labels on the tabular world, report verdicts."""

from __future__ import annotations

import pytest

from prefloop.lab import reward_models, teachers
from prefloop.lab.regret_labels import (
    RegretLabelsConfig,
    planned_return_share,
    run_regret_labels,
)
from prefloop.lab.report import lab_report
from prefloop.worlds.tabular import GridWorld


def test_planning_on_the_true_reward_is_optimal_and_shift_invariant():
    world = GridWorld()
    _, q = world.optimal_values()
    true = {key: world.step(*key)[1] for key in q}
    assert planned_return_share(world, true) == pytest.approx(1.0)
    assert planned_return_share(world, {k: v + 5.0 for k, v in true.items()}) == pytest.approx(1.0)
    # a reward that pays for bumping into walls never reaches the goal: every step costs 1
    assert planned_return_share(world, {k: -v for k, v in true.items()}) < 0


def test_regret_labels_lower_gold_agreement_of_a_partial_return_learner():
    """Measured: 0.995 vs 0.869 agreement with partial return at 2000 pairs, seed 0."""
    rows = {r["teacher"]: r for r in run_regret_labels(RegretLabelsConfig(pairs=2000))}
    by_return, by_regret = rows["partial_return"], rows["regret"]
    assert by_return["agreement_partial_return"] > 0.95  # its own model: recovered
    assert by_return["planned_return_share"] == pytest.approx(1.0)
    assert by_return["agreement_partial_return"] > by_regret["agreement_partial_return"] + 0.05
    assert by_regret["agreement_regret"] > by_return["agreement_regret"] + 0.2


def _knob_row(knob, plain, soft, smooth, robust):
    return {"knob": knob, "setting": {}, "labels": 10, "ties": 0, "true_mistakes": 0,
            "plain": plain, "soft_ties": soft, "label_smoothing": smooth, "secrets_ii": robust,
            "flipped_by_treatment": 0}  # fmt: skip


def _regret_rows(partial, regret):
    return [{"teacher": "partial_return", "pairs": 3, "agreement_partial_return": partial,
             "agreement_regret": 0.5, "planned_return_share": 1.0},
            {"teacher": "regret", "pairs": 3, "agreement_partial_return": regret,
             "agreement_regret": 0.9, "planned_return_share": 1.0}]  # fmt: skip


def _teacher_seed(seed, mistake_plain, smooth_gain):
    return {"world": "reviews", "seed": seed, "budget": 10, "heldout_pairs": 5,
            "results": [_knob_row("perfect", 0.8, 0.8, 0.8, 0.8),
                        _knob_row("mistake", mistake_plain, mistake_plain,
                                  mistake_plain + smooth_gain, mistake_plain)],
            "regret_labels": _regret_rows(0.99, 0.87 + seed / 100)}  # fmt: skip


def test_teacher_report_states_degradation_and_withholds_unclear_recovery():
    # mistake − perfect: -0.2, -0.3, -0.1 -> -0.2 ± 0.248 crosses 0; smoothing gains 0.1, 0.0, -0.1
    per_seed = [_teacher_seed(0, 0.6, 0.1), _teacher_seed(1, 0.5, 0.0), _teacher_seed(2, 0.7, -0.1)]
    report = lab_report("teacher_knobs", per_seed, teachers._aggregate(per_seed),
                        teachers._comparisons(per_seed), False, 1.0, world="reviews",
                        budget=10)  # fmt: skip
    text = teachers.teacher_knobs_markdown(report)
    assert "A perfect teacher gives 0.800 ± 0.000." in text
    assert "| mistake | {} | 10.000 ± 0.000 | 0.000 ± 0.000 | 0.000 ± 0.000 | 0.600 ± 0.248 |" in (
        text
    )
    assert "| mistake: plain − perfect teacher | -0.200 ± 0.248 | not distinguishable at 3" in text
    assert "| mistake: label_smoothing − plain | +0.000 ± 0.248 | not distinguishable at 3" in text
    # regret − partial-return agreement: -0.12, -0.11, -0.10 -> below zero on every seed
    assert "agreement partial return | -0.110 ± 0.025 | regret labels score lower" in text


def _rm_row(accuracy, ood):
    return {"accuracy": accuracy, "accuracy_ood": ood, "one_to_many": 0.5, "consistency": 0.5,
            "ece": 0.1, "accuracy_by_user_type": {"concise": 0.4, "verbose": 0.6}}  # fmt: skip


@pytest.mark.parametrize(("bt_ood", "says"), [
    ((0.70, 0.72, 0.68), "the explicit RM generalizes better out of distribution"),
    ((0.50, 0.72, 0.68), "not distinguishable at 3 seeds"),
])  # fmt: skip
def test_reward_models_report_verdict_follows_the_intervals(bt_ood, says):
    models = ("bt", "bt-robust", "ensemble", "ensemble-heads", "vpl", "dpo-implicit")
    per_seed = [{"world": "reviews", "seed": seed, "pairs": 4, "conflict_pairs": 2,
                 "robust_treatment": {},
                 "models": {name: _rm_row(0.8, ood if name == "bt" else 0.6) for name in models}}
                for seed, ood in enumerate(bt_ood)]  # fmt: skip
    report = lab_report("reward_models", per_seed, reward_models._aggregate(per_seed),
                        reward_models._comparisons(per_seed), False, 1.0,
                        world="reviews")  # fmt: skip
    text = reward_models.reward_models_markdown(report)
    assert (
        f"| bt − dpo-implicit, accuracy OOD | {report['comparisons'][0]['difference']['mean']:+.3f}"
        in text
    )
    assert report["comparisons"][0]["verdict"].startswith(says)
