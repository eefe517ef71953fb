"""The demo slice end to end on reduced settings, and the world's over-optimization property."""

import json

import numpy as np
import pytest
from rich.console import Console

from prefloop.eval.best_of_n import best_of_n_curve
from prefloop.eval.policy import Samples, gold_scores
from prefloop.lab.demo import DemoConfig, label_policy_pairs, run_demo
from prefloop.models.policy import Policy
from prefloop.models.reward import RewardModel
from prefloop.train.engine import TrainConfig
from prefloop.train.reward_model import train_reward_model
from prefloop.worlds.annotators import BradleyTerryAnnotator

SEEDS = (0, 1)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    runs = {}
    for seed in SEEDS:
        out = tmp_path_factory.mktemp(f"demo{seed}")
        runs[seed] = (run_demo(DemoConfig.fast(seed), out, Console(quiet=True)), out)
    return runs


def test_demo_writes_the_promised_reports(demo_runs):
    report, out = demo_runs[0]
    saved = json.loads((out / "report.json").read_text())
    assert saved["sft"].keys() >= {"gold_reward", "kl"}
    assert saved["dpo"].keys() >= {"gold_reward", "kl", "win_rate_vs_sft"}
    assert "heldout_accuracy" in saved["reward_model"]
    assert saved["dpo"]["gold_reward"] == pytest.approx(report["dpo"]["gold_reward"])
    assert (out / "gold_by_aspect.png").read_bytes()[:4] == b"\x89PNG"
    assert "| dpo |" in (out / "report.md").read_text()
    config = json.loads((out / "run_config.json").read_text())
    assert config["config"]["seed"] == 0 and "torch" in config["environment"]
    assert (out / "dpo" / "metrics.jsonl").read_text().count("\n") >= 5
    assert saved["sft"]["kl"] == pytest.approx(0.0, abs=1e-6)  # SFT measured against itself


@pytest.mark.parametrize("seed", SEEDS)
def test_dpo_raises_gold_reward_clearly_above_sft(demo_runs, seed):
    report, _ = demo_runs[seed]
    assert report["dpo"]["gold_reward"] - report["sft"]["gold_reward"] > 0.3
    assert report["dpo"]["win_rate_vs_sft"] > 0.6
    assert report["dpo"]["kl"] > 0.5  # it moved away from SFT to get there


def test_reward_model_orders_heldout_pairs_well_above_chance(demo_runs):
    """Chance is 0.5. Measured over demo seeds 0-5: held-out accuracy 0.57-0.82 (mean 0.71),
    and a change in float summation order alone moves one seed's by up to 0.2, so the bar is
    on the mean of the two seeds, with a floor for each."""
    models = [demo_runs[seed][0]["reward_model"] for seed in SEEDS]
    assert np.mean([m["heldout_accuracy"] for m in models]) > 0.6
    assert all(m["heldout_accuracy"] > 0.55 and m["gold_spearman"] > 0.15 for m in models)


def test_best_of_n_over_optimizes_proxies_trained_on_few_labels(demo_runs, world, tmp_path):
    """Selecting ever harder on a proxy RM from 300 labels can lower the gold reward.

    Measured on this world: a proxy is over-optimized when its gold falls by more than 0.1 from
    its peak by n = 256 while its proxy keeps rising. With the padding-free code one of six
    proxies (label seeds 0-5; seed 3) is; with the packed-pair code one of the first three was,
    before it two of three: which proxy over-optimizes moves with the float summation order.
    Whether a proxy over-optimizes depends on its seed (the over-optimization lab measures how
    often), so the test asks for the phenomenon, not for a majority.
    """
    _, out = demo_runs[0]
    policy = Policy.from_pretrained(out / "sft", device="cpu")
    prompts, per_prompt = world.prompts(32, seed=99, split="test"), 256
    samples = Samples.draw(policy, prompts, per_prompt, seed=5)
    gold = gold_scores(world, samples.prompts, samples.responses).reshape(len(prompts), per_prompt)
    over_optimized = 0
    for seed in range(6):
        annotator = BradleyTerryAnnotator(world, temperature=0.5, seed=seed)
        pairs = label_policy_pairs(policy, world, annotator, world.prompts(300, seed + 1), seed + 1)
        proxy_model = RewardModel.from_pretrained(out / "sft", device="cpu", seed=seed)
        config = TrainConfig(learning_rate=1e-3, batch_size=32, epochs=2, seed=seed)
        train_reward_model(
            proxy_model, pairs, config, tmp_path / f"proxy{seed}", show_progress=False
        )
        proxy = proxy_model.score(samples.prompts, samples.responses).numpy()
        curve = best_of_n_curve(proxy.reshape(gold.shape), gold, [2**k for k in range(9)])
        golds = np.array([point["gold"] for point in curve])
        proxies = np.array([point["proxy"] for point in curve])
        assert np.all(np.diff(proxies) > 0)  # selection always raises the proxy
        peak = int(golds.argmax())
        if golds[-1] < golds[peak] - 0.1 and proxies[-1] > proxies[peak] + 0.05:
            over_optimized += 1
    assert over_optimized >= 1
