"""K reward heads on one shared backbone: shapes, the weighted per-head BT loss, ensembles."""

from __future__ import annotations

import json

import pytest
import torch

from prefloop.data.records import Comparison
from prefloop.models.ensemble import RewardEnsemble
from prefloop.models.reward import RewardModel
from prefloop.train.engine import TrainConfig
from prefloop.train.ensemble import EnsembleConfig, train_ensemble
from prefloop.train.reward_model import train_reward_model


@pytest.fixture(scope="module")
def pairs(world) -> list[Comparison]:
    corpus = world.corpus(24, seed=4)
    return [
        Comparison(corpus[i][0], corpus[i][1], corpus[i + 1][1]) for i in range(0, len(corpus), 2)
    ]


def _first_step_loss(out_dir) -> float:
    return json.loads((out_dir / "metrics.jsonl").read_text().splitlines()[0])["loss"]


def test_heads_score_as_columns_and_differ_at_init(tiny_model_dir, pairs):
    model = RewardModel.from_pretrained(tiny_model_dir, device="cpu", seed=1, heads=3)
    prompts, chosen = [c.prompt for c in pairs], [c.chosen for c in pairs]
    scores = model.score(prompts, chosen)
    assert model.heads == 3 and scores.shape == (len(pairs), 3)
    assert not torch.allclose(scores[:, 0], scores[:, 1])
    ensemble = RewardEnsemble([model, RewardModel.from_pretrained(tiny_model_dir, device="cpu")])
    raw = ensemble.raw_scores(prompts, chosen)
    assert len(ensemble) == 4 and raw.shape == (4, len(pairs))
    assert torch.allclose(raw[:3], scores.T)


@pytest.mark.parametrize("heads", [1, 2])
def test_weighted_head_loss_matches_hand_computation(tiny_model_dir, pairs, tmp_path, heads):
    weights = torch.tensor([[float(i % 3), 1.0][:heads] for i in range(len(pairs))])
    initial = RewardModel.from_pretrained(tiny_model_dir, device="cpu", seed=2, heads=heads)
    prompts = [c.prompt for c in pairs]
    margin = initial.score(prompts, [c.chosen for c in pairs]) - initial.score(
        prompts, [c.rejected for c in pairs]
    )  # [N] or [N, 2]
    losses = -torch.nn.functional.logsigmoid(margin).reshape(weights.shape)
    expected = (losses * weights).sum() / weights.sum()

    model = RewardModel.from_pretrained(tiny_model_dir, device="cpu", seed=2, heads=heads)
    config = TrainConfig(batch_size=len(pairs), max_steps=1, log_every=1)
    train_reward_model(model, pairs, config, tmp_path, head_weights=weights, show_progress=False)
    assert _first_step_loss(tmp_path) == pytest.approx(expected.item(), rel=1e-5)


def test_a_head_with_zero_weight_is_not_trained(tiny_model_dir, pairs, tmp_path):
    model = RewardModel.from_pretrained(tiny_model_dir, device="cpu", seed=3, heads=2)
    before = model.model.score.weight.detach().clone()
    weights = torch.ones(len(pairs), 2)
    weights[:, 1] = 0.0
    config = TrainConfig(learning_rate=1e-2, batch_size=4, max_steps=5)
    train_reward_model(model, pairs, config, tmp_path, head_weights=weights, show_progress=False)
    after = model.model.score.weight.detach()
    assert not torch.allclose(after[0], before[0])
    assert torch.equal(after[1], before[1])


def test_head_weights_must_be_pairs_by_heads(tiny_model_dir, pairs, tmp_path):
    model = RewardModel.from_pretrained(tiny_model_dir, device="cpu", heads=2)
    with pytest.raises(ValueError, match=r"head_weights must be \[pairs, heads\] = \[12, 2\]"):
        train_reward_model(model, pairs, TrainConfig(), tmp_path, head_weights=torch.ones(12, 3))
    with pytest.raises(ValueError, match="at least one head"):
        RewardModel.from_pretrained(tiny_model_dir, heads=0)


def test_shared_backbone_ensemble_trains_one_model_and_reloads(tiny_model_dir, pairs, tmp_path):
    config = TrainConfig(learning_rate=1e-3, batch_size=4, epochs=1, seed=5)
    ensemble, _ = train_ensemble(
        tiny_model_dir, pairs, config, tmp_path,
        EnsembleConfig(size=3, bootstrap=True, shared_backbone=True), show_progress=False,
    )  # fmt: skip
    assert len(ensemble) == 3 and len(ensemble.models) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]
    reloaded = RewardModel.from_pretrained(tmp_path / "shared", device="cpu", heads=3)
    prompts, responses = [c.prompt for c in pairs], [c.chosen for c in pairs]
    assert torch.allclose(
        reloaded.score(prompts, responses).T, ensemble.raw_scores(prompts, responses), atol=1e-5
    )
