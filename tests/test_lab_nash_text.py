"""A tiny end-to-end run of the Nash text lab: schema, files, equal labels, the round robin."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prefloop.lab.common import BasePolicySetup
from prefloop.lab.nash_text import NashTextConfig, run_nash_text
from prefloop.models.factory import TinyModelSpec
from prefloop.train.engine import TrainConfig

pytestmark = pytest.mark.slow


def test_nash_text_lab_spends_equal_labels_and_plays_a_round_robin(tmp_path, console):
    one_pass = TrainConfig(learning_rate=1e-3, batch_size=32, epochs=1)
    config = NashTextConfig(
        base=BasePolicySetup(corpus_size=300, model=TinyModelSpec(hidden_size=32,
                             intermediate_size=64, num_hidden_layers=2),
                             sft=TrainConfig(learning_rate=1e-2, batch_size=32, epochs=1)),
        labels=48, iterations=2, rm_steps=1, eval_prompts=4, eval_samples=4, curve_prompts=2,
        curve_samples=2, max_new_tokens=10, dpo=one_pass, reward_model=one_pass,
        judge_sft=one_pass,
    )  # fmt: skip
    run_nash_text(config, [0], tmp_path, console, fast=True)
    saved = json.loads((tmp_path / "nash_text.json").read_text())
    runs = {r["method"]: r for r in saved["per_seed"][0]["runs"]}
    assert list(runs) == ["dpo", "rloo (rm)", "iterative-dpo", "nash-md (sequence)",
                          "nash-md (token, TRL)", "spo", "inpo", "dno", "osp"]  # fmt: skip
    # 24 labels per iteration: 24 one-label prompts, 6 prompts × 4 samples, 4 prompts × 6 pairs
    assert runs["dpo"]["labels_used"] == runs["rloo (rm)"]["labels_used"] == 48
    for name in ("iterative-dpo", "nash-md (sequence)", "nash-md (token, TRL)", "spo", "inpo",
                 "dno", "osp"):  # fmt: skip
        assert runs[name]["labels_used"] == 48, name
        assert len(runs[name]["win_rate_by_iteration"]) == 3  # before, after each iteration
        assert set(runs[name]["group_gold"]) == {"enthusiasts", "detail-seekers", "minimalists"}
    matrix = np.array(saved["round_robin"])
    assert saved["policies"] == ["sft", *runs]
    np.testing.assert_allclose(matrix + matrix.T, 1.0, atol=1e-9)  # P(a ≻ b) + P(b ≻ a) = 1
    assert sum(saved["round_robin_nash"].values()) == pytest.approx(1.0, abs=1e-3)
    assert 0.0 <= runs["osp"]["judge_accuracy"] <= 1.0
    for name in ("nash_text.md", "nash_text_round_robin.png", "nash_text_iterations.png"):
        assert (tmp_path / name).exists()
