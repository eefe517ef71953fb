"""A tiny objectives lab: the report's schema, its files, and DPO beating the SFT policy."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from prefloop.lab.common import BasePolicySetup
from prefloop.lab.objectives import RUNS, ObjectivesLabConfig, run_lab
from prefloop.models.factory import TinyModelSpec
from prefloop.train.engine import TrainConfig

pytestmark = pytest.mark.slow


def test_tiny_lab_writes_the_comparison_and_dpo_beats_sft(tmp_path):
    runs = tuple(replace(r, betas=r.betas[1:2]) for r in RUNS if r.name in ("dpo", "simpo", "kto"))
    config = replace(
        ObjectivesLabConfig(),
        base=BasePolicySetup(
            corpus_size=600,
            model=TinyModelSpec(hidden_size=32, intermediate_size=64),
            sft=TrainConfig(learning_rate=1e-2, batch_size=64, epochs=4),
        ),
        pair_prompts=256,
        train=TrainConfig(learning_rate=3e-3, batch_size=32, epochs=3),
        eval_prompts=24,
        eval_samples=2,
        c3po_samples=1,
        runs=runs,
    )
    report = run_lab(tmp_path, seeds=1, config=config)["per_seed"][0]

    saved = json.loads((tmp_path / "objectives.json").read_text())["per_seed"][0]
    assert saved["sft"].keys() >= {"gold_reward", "kl"}
    assert [r["objective"] for r in saved["runs"]] == ["dpo", "simpo", "kto"]
    for run in saved["runs"]:
        assert run.keys() >= {"objective", "setting", "gold_reward", "kl", "win_rate_vs_sft",
                              "train_seconds"}  # fmt: skip
        assert run["kl"] > 0 and 0 <= run["win_rate_vs_sft"] <= 1
    assert set(saved["c3po"]["policies"]) == {"sft", "dpo", "c3po"}
    dpo = next(r for r in report["runs"] if r["objective"] == "dpo")
    assert dpo["gold_reward"] > report["sft"]["gold_reward"]
    assert (tmp_path / "gold_vs_kl.png").stat().st_size > 0
    text = (tmp_path / "objectives.md").read_text()
    assert "| dpo | beta=0.1 |" in text and "**1 seed** (0)" in text
