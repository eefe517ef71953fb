"""Multi-objective RM with DPA directions, and the non-transitive pairwise preference model."""

from __future__ import annotations

import math

import pytest
import torch

from prefloop.data.records import Comparison, Rating
from prefloop.models.factory import TinyModelSpec, build_tiny_model
from prefloop.models.multi_objective import (
    MultiObjectiveRewardModel,
    directional_reward,
    dpa_direction,
)
from prefloop.models.preference_model import PairwisePreferenceModel
from prefloop.train.engine import TrainConfig
from prefloop.train.multi_objective import train_multi_objective
from prefloop.train.preference_model import train_preference_model

SPEC = TinyModelSpec(hidden_size=32, intermediate_size=64, num_hidden_layers=1)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_directions_by_hand():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    assert directional_reward(rewards, [3.0, 4.0]).tolist() == pytest.approx([0.6, 1.6, 5.0])
    v = dpa_direction(30.0)
    assert v.tolist() == pytest.approx([math.sqrt(3) / 2, 0.5])
    with pytest.raises(ValueError):
        directional_reward(rewards, [0.0, 0.0])


def test_multi_objective_rm_learns_each_aspect(tmp_path):
    texts = ["good", "bad", "long long long", "short"]
    path = build_tiny_model(texts + ["q"], tmp_path / "base", SPEC)
    responses = ["good", "bad", "good long long long", "bad long long long"]
    aspects = {"quality": [1.0, -1.0, 1.0, -1.0], "verbosity": [-1.0, -1.0, 1.0, 1.0]}
    ratings = [Rating("q", responses, [0.0] * 4, aspects)]
    model = MultiObjectiveRewardModel.from_pretrained(path, ["quality", "verbosity"])
    config = TrainConfig(learning_rate=1e-2, batch_size=4, max_steps=150, warmup_ratio=0.0)
    train_multi_objective(model, ratings, config, tmp_path / "mo", show_progress=False)
    scores = model.score(["q"] * 4, responses)
    assert scores.shape == (4, 2)
    assert torch.allclose(scores, torch.tensor(list(aspects.values())).T, atol=0.3)
    # a verbosity-leaning direction prefers the long bad answer to the short good one
    along = model.directional_score(["q"] * 4, responses, dpa_direction(80.0))
    assert along[3] > along[0]
    assert model.directional_score(["q"] * 4, responses, dpa_direction(0.0)).argmax() in (0, 2)
    model.save_pretrained(tmp_path / "saved")
    assert MultiObjectiveRewardModel.from_pretrained(tmp_path / "saved").aspects == (
        "quality", "verbosity",
    )  # fmt: skip


def test_preference_model_is_antisymmetric_and_fits_a_cycle(tmp_path):
    path = build_tiny_model(["rock paper scissors", "play"], tmp_path / "base", SPEC)
    cycle = [("rock", "scissors"), ("scissors", "paper"), ("paper", "rock")]
    pairs = [Comparison("play", a, b) for a, b in cycle] * 4
    model = PairwisePreferenceModel.from_pretrained(path)
    config = TrainConfig(learning_rate=1e-2, batch_size=12, max_steps=120, warmup_ratio=0.0)
    train_preference_model(model, pairs, config, tmp_path / "pm", show_progress=False)
    first, second = [a for a, _ in cycle], [b for _, b in cycle]
    forward = model.probability(["play"] * 3, first, second)
    backward = model.probability(["play"] * 3, second, first)
    assert torch.allclose(forward + backward, torch.ones(3))
    # every edge of the cycle is learned: no scalar reward can order all three this way
    assert (forward > 0.8).all(), forward
