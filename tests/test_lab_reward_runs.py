"""Tiny end-to-end runs of the over-optimization, reward-models and teacher-knob labs: schema,
files and the internal consistency of what they measure (not the sizes of the effects)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from prefloop.eval.best_of_n import best_of_n_kl
from prefloop.lab.common import BasePolicySetup
from prefloop.lab.overoptimization import OveroptimizationConfig, run_overoptimization
from prefloop.lab.regret_labels import RegretLabelsConfig
from prefloop.lab.reward_models import RewardModelsConfig, run_reward_models
from prefloop.lab.teachers import KNOBS, TeacherKnobsConfig, run_teacher_knobs
from prefloop.models.factory import TinyModelSpec
from prefloop.train.engine import TrainConfig

pytestmark = pytest.mark.slow

TINY_BASE = BasePolicySetup(
    corpus_size=400,
    model=TinyModelSpec(hidden_size=32, intermediate_size=64),
    sft=TrainConfig(learning_rate=1e-2, batch_size=64, epochs=3),
)
TINY_RM = TrainConfig(learning_rate=1e-3, batch_size=16, epochs=1)


def test_overoptimization_lab_at_two_seeds_writes_per_seed_and_aggregate(tmp_path, console):
    config = replace(OveroptimizationConfig(), base=TINY_BASE, label_prompts=40,
                     heldout_prompts=20, reward_model=TINY_RM, ensemble_size=2, bon_prompts=3,
                     bon_samples=16, max_n=8)  # fmt: skip
    run_overoptimization(config, [0, 1], tmp_path, console)
    report = json.loads((tmp_path / "overoptimization.json").read_text())
    assert report["seeds"] == [0, 1] and [s["seed"] for s in report["per_seed"]] == [0, 1]
    assert (tmp_path / "seed-1" / "overoptimization.json").exists()
    for seed_report in report["per_seed"]:
        assert [s["label_noise"] for s in seed_report["settings"]] == [0.0, 0.25]
        for setting in seed_report["settings"]:
            assert set(setting["curves"]) == {"single", "mean", "wco", "uwo"}
            assert set(setting["shared_heads"]["curves"]) == {"mean", "wco", "uwo"}
            assert len(setting["head_heldout_accuracy"]) == 2
            for curve in setting["curves"].values():
                assert [p["n"] for p in curve] == [1, 2, 4, 8]
                assert [p["kl"] for p in curve] == pytest.approx(
                    [best_of_n_kl(n) for n in (1, 2, 4, 8)]
                )
            # n = 1 selects nothing: every selector's gold is the pool's mean gold
            shared = setting["shared_heads"]["curves"].values()
            for curve in [*setting["curves"].values(), *shared]:
                assert curve[0]["gold"] == pytest.approx(seed_report["pool"]["mean_gold"])
        assert seed_report["settings"][1]["flipped"] > 0 == seed_report["settings"][0]["flipped"]
    # the seeds draw different pools, and the aggregate is their mean with an interval
    golds = [s["pool"]["mean_gold"] for s in report["per_seed"]]
    assert golds[0] != golds[1]
    pooled = report["aggregate"]["pool_mean_gold"]
    assert pooled["mean"] == pytest.approx(sum(golds) / 2) and pooled["values"] == golds
    assert pooled["low"] < pooled["mean"] < pooled["high"]
    selectors = report["aggregate"]["settings"][1]["selectors"]
    assert set(selectors) == {"single", "mean", "wco", "uwo", "mean (shared heads)",
                              "wco (shared heads)", "uwo (shared heads)"}  # fmt: skip
    assert len(report["comparisons"]) == 2 * 3 * 3  # noise x combiner x (gold, drop, shared)
    text = (tmp_path / "overoptimization.md").read_text()
    assert "full run, 2 seeds (0, 1)" in text and "| wco (shared heads) |" in text
    assert (tmp_path / "overoptimization.png").stat().st_size > 0


def _without_timings(value):
    """A report with every wall-time entry (keys ending in "seconds") removed."""
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if not k.endswith("seconds")}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def test_same_seed_same_machine_gives_identical_numbers(tmp_path, console):
    """Run-to-run reproducibility: the same seed twice gives bit-identical numbers."""
    config = replace(OveroptimizationConfig(), base=TINY_BASE, label_prompts=40,
                     heldout_prompts=20, reward_model=TINY_RM, ensemble_size=2, bon_prompts=3,
                     bon_samples=16, max_n=8, label_noises=(0.25,))  # fmt: skip
    first = run_overoptimization(config, [3], tmp_path / "a", console)
    again = run_overoptimization(config, [3], tmp_path / "b", console)
    assert _without_timings(first["per_seed"]) == _without_timings(again["per_seed"])
    assert _without_timings(first["aggregate"]) == _without_timings(again["aggregate"])


def test_reward_models_lab_evaluates_every_model(tmp_path, console):
    config = replace(RewardModelsConfig(), base=TINY_BASE, label_prompts=120, user_ids=8,
                     reward_model=TINY_RM, ensemble_size=2, dpo=TINY_RM,
                     vpl=replace(TINY_RM, epochs=2), suite_prompts=16,
                     user_eval_prompts=60)  # fmt: skip
    run_reward_models(config, [0], tmp_path, console)
    report = json.loads((tmp_path / "reward_models.json").read_text())
    names = {"bt", "bt-robust", "ensemble", "ensemble-heads", "vpl", "dpo-implicit"}
    seed_report = report["per_seed"][0]
    assert set(seed_report["models"]) == names == set(report["aggregate"]["models"])
    for metrics in seed_report["models"].values():
        for key in ("accuracy", "accuracy_ood", "one_to_many", "consistency", "ece"):
            assert 0.0 <= metrics[key] <= 1.0
        assert set(metrics["accuracy_by_user_type"]) == {"neutral", "concise", "verbose"}
    assert sum(seed_report["robust_treatment"].values()) == seed_report["pairs"]
    text = (tmp_path / "reward_models.md").read_text()
    assert "**1 seed** (0): no intervals and no verdicts" in text
    assert "| bt − dpo-implicit, accuracy OOD |" in text and "not distinguishable at 1 seed" in text


def test_teacher_knobs_lab_measures_every_knob(tmp_path, console):
    config = replace(TeacherKnobsConfig(), base=TINY_BASE, budget=60, heldout_prompts=40,
                     reward_model=TINY_RM, strength_heads=2,
                     regret=RegretLabelsConfig(pairs=100, heldout_pairs=100, steps=50))  # fmt: skip
    run_teacher_knobs(config, [0], tmp_path, console)
    report = json.loads((tmp_path / "teacher_knobs.json").read_text())
    rows = report["per_seed"][0]["results"]
    assert [r["knob"] for r in rows] == [k for k, settings in KNOBS.items() for _ in settings]
    by_knob = {r["knob"]: r for r in rows}
    assert by_knob["skip_threshold"]["labels"] < by_knob["skip_threshold"]["queries"] == 60
    assert by_knob["equal_threshold"]["ties"] > 0 and by_knob["perfect"]["ties"] == 0
    assert by_knob["perfect"]["soft_ties"] == by_knob["perfect"]["plain"]  # no ties to soften
    regret = report["per_seed"][0]["regret_labels"]
    assert [r["teacher"] for r in regret] == ["partial_return", "regret"]
    assert len(report["aggregate"]["results"]) == len(rows)
    assert "A perfect teacher gives" in (tmp_path / "teacher_knobs.md").read_text()
