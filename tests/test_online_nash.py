"""Game-theoretic online methods on the tiny text model, their opponents, judges and world."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from _tiny_sft import sft_policy_dir
from typer.testing import CliRunner

from prefloop.cli import app
from prefloop.models.factory import TinyModelSpec, build_tiny_model
from prefloop.models.policy import Policy
from prefloop.online.generator import TransformersGenerator
from prefloop.online.judges import GroupAnnotatorJudge
from prefloop.online.logps import join_ids
from prefloop.online.methods import ONLINE_METHODS, OnlineRun, train_online
from prefloop.online.mixture import GeometricMixtureModel, mixture_opponents, mixture_policy
from prefloop.online.nash import INPOConfig
from prefloop.online.rollout import Decoding
from prefloop.online.self_judge import PolicyJudge, judge_vocabulary
from prefloop.train.config import ConfigError
from prefloop.train.engine import TrainConfig
from prefloop.worlds.review_groups import GROUPS, GroupWorld, cyclic_share, group_worlds


@pytest.fixture(scope="module")
def judging_sft_dir(world, tmp_path_factory):
    """A tiny SFT model whose word tokenizer also knows the self-judge's question and verdicts."""
    out = tmp_path_factory.mktemp("nash")
    texts = [r for _, r in world.corpus(300, 0)] + world.prompt_pool("all") + [judge_vocabulary()]
    spec = TinyModelSpec(hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    return sft_policy_dir(build_tiny_model(texts, out / "base", spec, seed=0), out, world)


# ---- the world: transitive groups, intransitive pool ---------------------------------------
def test_cyclic_share_counts_cycles_by_hand():
    rock_paper_scissors = np.array([[0.5, 0.9, 0.1], [0.1, 0.5, 0.9], [0.9, 0.1, 0.5]])
    assert cyclic_share(rock_paper_scissors) == 1.0
    transitive = np.array([[0.5, 0.9, 0.8], [0.1, 0.5, 0.7], [0.2, 0.3, 0.5]])
    assert cyclic_share(transitive) == 0.0


def test_each_group_is_transitive_and_the_pool_is_not(world):
    rng = random.Random(0)
    judge = GroupAnnotatorJudge(group_worlds(world), temperature=0.5)
    single = [GroupAnnotatorJudge([g], temperature=0.5) for g in group_worlds(world)]
    pooled, alone = [], []
    for prompt in world.prompts(30, 1):
        texts = [world.respond(prompt, rng) for _ in range(6)]

        pooled.append(cyclic_share(judge.preference_matrix(prompt, texts)))
        alone += [cyclic_share(j.preference_matrix(prompt, texts)) for j in single]
    assert max(alone) == 0.0  # a Bradley–Terry rater of one utility never cycles
    assert np.mean(pooled) > 0.05  # measured 0.12 on 60 prompts; cycles are common


def test_group_annotators_answer_with_the_pooled_probability(world):
    prompt = world.prompts(1, 0)[0]
    a, b = "the kettle is great . i love it .", "the price is ok . the design is fine ."
    judge = GroupAnnotatorJudge(group_worlds(world), temperature=0.5)
    p = float(judge.probability([prompt], [a], [b])[0])
    by_hand = np.mean([1 / (1 + math.exp(-(g.gold_reward(prompt, a) - g.gold_reward(prompt, b))
                                         / 0.5)) for g in group_worlds(world)])  # fmt: skip
    assert p == pytest.approx(by_hand)
    answers = judge.prefer([prompt] * 4000, [a] * 4000, [b] * 4000, seed=3)
    assert abs(np.mean(answers) - p) < 4 * math.sqrt(p * (1 - p) / 4000)  # 4 standard errors
    assert judge.prefer([prompt] * 50, [a] * 50, [b] * 50, seed=3) == answers[:50]
    assert judge.labels_used == 4050
    with pytest.raises(ValueError, match="one non-negative number per group"):
        GroupAnnotatorJudge(group_worlds(world), weights=[1, 2])


def test_group_world_adds_its_taste_to_the_gold_reward(world):
    prompt = world.prompts(1, 0)[0]
    response = "the kettle is great . i love it ."
    enthusiasts = GroupWorld(world, GROUPS[0])  # likes warmth, dislikes coverage
    # sentiment 1 (warmth 1); no aspect named, so coverage clips to -1: taste 3 · (1 − (−1))
    assert enthusiasts.gold_reward(prompt, response) == pytest.approx(
        world.gold_reward(prompt, response) + 6.0
    )


# ---- opponents from the geometric mixture ---------------------------------------------------
def test_sequence_mixture_opponents_are_importance_resampled_others():
    previous = torch.tensor([[-10.0, -10.0, -10.0, -10.0]])
    reference = torch.tensor([[-10.0, -10.0, -10.0, 0.0]])  # μ likes sample 3 e^10 more
    picks = torch.stack([mixture_opponents(previous, reference, 0.5, seed)[0]
                         for seed in range(200)])  # fmt: skip
    assert (picks != torch.arange(4)).all()  # never its own opponent
    assert (picks[:, :3] == 3).float().mean() > 0.98  # weight e^5 against 1 + 1
    uniform = torch.stack([mixture_opponents(previous, reference, 0.0, s)[0] for s in range(600)])
    counts = np.bincount(uniform[:, 0].numpy(), minlength=4)  # c = 0: the other three, evenly
    assert counts[0] == 0 and all(abs(c - 200) < 50 for c in counts[1:])


def test_token_mixture_samples_from_the_mixed_next_token_distribution(judging_sft_dir, world):
    policy = Policy.from_pretrained(judging_sft_dir, device="cpu")
    base = Policy.from_pretrained(judging_sft_dir.parent / "base", device="cpu")
    prompts = world.prompts(3, 0)
    ids, mask = join_ids(policy.prompt_ids(prompts), [[]] * 3, policy.tokenizer.pad_token_id)
    coef = 0.3
    with torch.no_grad():
        mixed = GeometricMixtureModel(policy.model, base.model, coef)(
            input_ids=ids, attention_mask=mask).logits  # fmt: skip
        expected = torch.log_softmax(
            0.7 * torch.log_softmax(policy.model(input_ids=ids, attention_mask=mask).logits, -1)
            + 0.3 * torch.log_softmax(base.model(input_ids=ids, attention_mask=mask).logits, -1),
            -1,
        )
    torch.testing.assert_close(mixed, expected)
    mixture = mixture_policy(policy, base, coef)
    rollout = TransformersGenerator().generate(mixture, prompts, 2, Decoding(max_new_tokens=8), 0)
    # the behaviour log-probs the KV-cached loop returns equal a full forward of the mixture
    rows = [p for p in rollout.prompt_ids for _ in range(2)]
    full_ids, full_mask = join_ids(rows, rollout.completion_ids, policy.tokenizer.pad_token_id)
    with torch.no_grad():
        logits = GeometricMixtureModel(policy.model, base.model, coef)(
            input_ids=full_ids, attention_mask=full_mask).logits  # fmt: skip
    for i, (prompt, completion) in enumerate(zip(rows, rollout.completion_ids)):
        start = len(prompt) - 1
        picked = logits[i, start : start + len(completion)].gather(
            -1, torch.tensor(completion)[:, None]).squeeze(-1)  # fmt: skip
        torch.testing.assert_close(rollout.behaviour_logps[i], picked, atol=1e-4, rtol=1e-4)


# ---- the self-judge -------------------------------------------------------------------------
def test_self_judge_averages_both_orders_and_needs_its_words(
    judging_sft_dir, tiny_model_dir, world
):
    judge = PolicyJudge(Policy.from_pretrained(judging_sft_dir, device="cpu"))
    prompts = world.prompts(4, 0)
    a = ["the kettle is great ."] * 4
    b = ["the price is bad . i hate it . the design is awful ."] * 4
    ab, ba = judge.prefer(prompts, a, b), judge.prefer(prompts, b, a)
    np.testing.assert_allclose(np.add(ab, ba), 1.0, atol=1e-6)
    forward = judge.first_probability(prompts, a, b)
    backward = judge.first_probability(prompts, b, a)
    np.testing.assert_allclose(ab, ((forward + 1 - backward) / 2).numpy(), atol=1e-6)
    assert judge.labels_used == 0 and judge.judgments == 16
    with pytest.raises(ValueError, match="encode the verdicts"):
        PolicyJudge(Policy.from_pretrained(tiny_model_dir, device="cpu"))


# ---- each method, one short iteration -------------------------------------------------------
CASES = {  # method, its options, labels per rollout of 4 prompts (4 samples each; inpo 2)
    "nash-md (sequence)": ("nash-md", {"mixture": "sequence"}, 4 * 4),
    "nash-md (token)": ("nash-md", {"mixture": "token"}, 4 * 4),
    "spo": ("spo", {}, 4 * 6),
    "inpo": ("inpo", {}, 4 * 1),
    "dno": ("dno", {}, 4 * 6),
    "osp": ("osp", {}, 0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_nash_method_runs_a_short_iteration(case, judging_sft_dir, world, tmp_path):
    name, options, per_rollout = CASES[case]
    config = ONLINE_METHODS[name](rollout_prompts=4, max_new_tokens=12, **options)
    judge = None if name == "osp" else GroupAnnotatorJudge(group_worlds(world))
    train = TrainConfig(learning_rate=1e-3, batch_size=8, max_steps=2, log_every=1)
    run = OnlineRun(judging_sft_dir, world.prompts(16, 0), judge)
    before = Policy.from_pretrained(judging_sft_dir).model.state_dict()
    result = train_online(config, run, train, tmp_path / name, show_progress=False)
    after = Policy.from_pretrained(tmp_path / name).model.state_dict()
    assert result.steps == 2 and math.isfinite(result.final_loss)
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the policy moved
    records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").open()]
    assert records[-1]["labels_used"] == per_rollout  # two steps of 8 spend one rollout
    if name == "osp":  # it asked itself: 4 prompts × 6 round-robin pairs + 2 ranked pairs, ×2
        assert records[-1]["self_judgments"] == 4 * (6 + 2) * 2


def test_inpo_refuses_a_step_past_the_reference():
    with pytest.raises(ConfigError, match="eta·tau must be at most 1"):
        INPOConfig(eta=10.0, tau=0.2)


def test_cli_osp_judges_itself_and_refuses_a_judge(judging_sft_dir, world, tmp_path):
    (tmp_path / "p.txt").write_text("\n".join(world.prompts(8, 0)) + "\n")
    base = ["train-online", "--method", "osp", str(judging_sft_dir), str(tmp_path / "p.txt"),
            "--out", str(tmp_path / "osp")]  # fmt: skip
    judged = CliRunner().invoke(app, base + ["--world", "reviews"])
    assert judged.exit_code == 2 and "judges its own samples with the policy; drop --world" in (
        judged.output
    )
    small = ["--max-steps", "1", "--rollout-prompts", "2", "--max-new-tokens", "8",
             "--batch-size", "2"]  # fmt: skip
    ran = CliRunner().invoke(app, base + small)
    assert ran.exit_code == 0, ran.output
    assert "osp: saved to" in ran.output and "(1 steps, 0 labels" in ran.output
    assert (tmp_path / "osp" / "model.safetensors").exists()
