"""Tiny end-to-end runs of the online and verifiable labs: schema, files, label accounting."""

from __future__ import annotations

import json

import pytest

from prefloop.lab.common import BasePolicySetup
from prefloop.lab.online import OnlineLabConfig, run_online
from prefloop.lab.verifiable import METHODS, VerifiableLabConfig, run_verifiable
from prefloop.models.factory import TinyModelSpec
from prefloop.train.engine import TrainConfig

pytestmark = pytest.mark.slow

TINY_BASE = BasePolicySetup(
    corpus_size=300,
    model=TinyModelSpec(hidden_size=32, intermediate_size=64),
    sft=TrainConfig(learning_rate=1e-2, batch_size=64, epochs=2),
)


def test_online_lab_spends_equal_labels_and_writes_its_schema(tmp_path, console):
    config = OnlineLabConfig(base=TINY_BASE, labels=64, online_steps=2, max_new_tokens=12,
                             eval_prompts=8, eval_samples=2, curve_points=2,
                             reward_model=TrainConfig(batch_size=16, epochs=1),
                             dpo=TrainConfig(batch_size=16, epochs=1))  # fmt: skip
    report = run_online(config, [0], tmp_path, console, fast=True)
    saved = json.loads((tmp_path / "online.json").read_text())
    assert set(saved["sft"]) == {"gold_reward", "kl"}
    methods = [run["method"] for run in saved["runs"]]
    assert methods[0] == "dpo" and {"online-dpo", "iterative-dpo", "raft (rm)", "rloo (rm)",
                                    "grpo (rm)", "ppo (rm)"} <= set(methods)  # fmt: skip
    for run in saved["runs"]:
        assert set(run) >= {"method", "labels_used", "gold_reward", "kl", "wall_seconds"}
    per_seed = {r["method"]: r for r in report["per_seed"][0]["runs"]}
    pairs = report["per_seed"][0]["labels"]  # what offline DPO and the reward model got
    assert per_seed["dpo"]["labels_used"] == per_seed["grpo (rm)"]["labels_used"] == pairs
    assert per_seed["online-dpo"]["labels_used"] == 64  # 4 steps × 16 one-label pairs
    assert per_seed["iterative-dpo"]["labels_used"] == 64  # 4 iterations × 16 prompts
    assert (tmp_path / "online.md").exists() and (tmp_path / "online_gold_vs_labels.png").exists()


def test_verifiable_lab_reports_pass_at_k_length_and_kl(tmp_path, console):
    config = VerifiableLabConfig(steps=2, rollout_prompts=2, samples_per_prompt=2,
                                 max_new_tokens=16, eval_prompts=6, eval_samples=2,
                                 base=BasePolicySetup(corpus_size=300,
                                                      model=TinyModelSpec(hidden_size=32,
                                                                          intermediate_size=64),
                                                      sft=TrainConfig(batch_size=64,
                                                                      epochs=1)))  # fmt: skip
    run_verifiable(config, [0], tmp_path, console, fast=True)
    saved = json.loads((tmp_path / "verifiable.json").read_text())
    assert set(saved["sft"]) >= {"pass@1", "pass@2"}
    assert [run["method"] for run in saved["runs"]] == list(METHODS)
    for run in saved["runs"]:
        assert set(run) >= {"method", "pass@1", "pass@2", "mean_length", "kl", "wall_seconds"}
        assert 0.0 <= run["pass@1"] <= run["pass@2"] <= 1.0
    curves = saved["per_seed"][0]["runs"][0]["length_curve"]
    assert len(curves) == 2  # one mean completion length per step
    assert (tmp_path / "verifiable_length.png").exists()
