"""The online loop: generator, judges, rollout building, every method, exact resume, CLI."""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch
from _tiny_sft import sft_policy_dir
from typer.testing import CliRunner

from prefloop.cli import app
from prefloop.models.policy import Policy
from prefloop.objectives.policy_gradient import group_advantages
from prefloop.online.generator import TransformersGenerator, filter_logits, sample_categorical
from prefloop.online.judges import AnnotatorJudge, GoldAspectsJudge, GoldJudge, ScoreComparison
from prefloop.online.logps import completion_logps
from prefloop.online.loop import Loop
from prefloop.online.methods import ONLINE_METHODS, OnlineRun, online_task, train_online
from prefloop.online.nash import NASH_CONFIGS
from prefloop.online.policy_gradient import GRPOConfig, RLOOConfig, build_group_rollout
from prefloop.online.preference import IterativeDPOConfig, _extremes
from prefloop.online.reward_functions import (
    FunctionJudge,
    RewardFunction,
    RewardFunctionError,
    load_reward_function,
)
from prefloop.online.rollout import Decoding, Rollout
from prefloop.train.config import ConfigError
from prefloop.train.engine import TrainConfig, fit
from prefloop.train.sources import Shard


@pytest.fixture(scope="module")
def sft_dir(tiny_model_dir, tmp_path_factory, world):
    return sft_policy_dir(tiny_model_dir, tmp_path_factory.mktemp("online"), world)


@pytest.fixture
def policy(sft_dir) -> Policy:
    return Policy.from_pretrained(sft_dir, device="cpu")


# ---- generator -----------------------------------------------------------------------------
@pytest.mark.parametrize("prompt_batch", [2, 5])  # finished rows leave at once / stay a while
def test_generator_returns_the_logps_a_full_forward_pass_gives(policy, world, prompt_batch):
    prompts = world.prompts(5, 0)
    rollout = TransformersGenerator(prompt_batch=prompt_batch).generate(
        policy, prompts, 3, Decoding(max_new_tokens=10), seed=4
    )
    assert len(rollout.prompt_ids) == 5 and len(rollout.completion_ids) == 15  # prompt once
    prompt_ids = [ids for ids in rollout.prompt_ids for _ in range(3)]
    logps, mask = completion_logps(policy.model, prompt_ids, rollout.completion_ids,
                                   policy.tokenizer.pad_token_id)  # fmt: skip
    for i, (ids, behaviour) in enumerate(zip(rollout.completion_ids, rollout.behaviour_logps)):
        assert len(behaviour) == len(ids) == int(mask[i].sum())
        torch.testing.assert_close(logps[i, : len(ids)], behaviour, atol=1e-4, rtol=0)
        ended = bool(ids) and ids[-1] == policy.tokenizer.eos_token_id
        assert rollout.finished[i] == ended and (ended or len(ids) == 10)
    again = TransformersGenerator(prompt_batch).generate(
        policy, prompts, 3, Decoding(max_new_tokens=10), 4
    )
    assert again.completion_ids == rollout.completion_ids  # the seed fixes every choice
    assert rollout.metrics["generation_tokens_per_second"] > 0


def test_top_k_one_is_greedy_and_stop_strings_end_completions(policy, world):
    prompts = world.prompts(4, 1)
    generator = TransformersGenerator()
    greedy = generator.generate(policy, prompts, 1, Decoding(temperature=0, max_new_tokens=8), 0)
    top1 = generator.generate(policy, prompts, 1, Decoding(top_k=1, max_new_tokens=8), 9)
    assert greedy.completion_ids == top1.completion_ids
    stopped = generator.generate(policy, prompts, 2, Decoding(max_new_tokens=30, stop=(".",)), 3)
    for text, finished in zip(stopped.texts, stopped.finished):
        assert finished == text.endswith(".") or text.count(".") <= 1
        assert text.count(".") <= 1  # nothing is generated after the first stop string


def test_categorical_draws_follow_the_weights_and_never_a_zero_weight():
    weights = torch.tensor([[0.0, 1.0, 3.0, 0.0, 4.0]]).expand(20000, 5)
    drawn = sample_categorical(weights, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(drawn, minlength=5) / len(drawn)
    torch.testing.assert_close(frequencies, torch.tensor([0, 1 / 8, 3 / 8, 0, 4 / 8]),
                               atol=0.015, rtol=0)  # fmt: skip
    assert frequencies[0] == frequencies[3] == 0
    again = sample_categorical(weights, torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again)


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, 0, 0.75))
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 + 0.3 ≥ 0.75
    assert torch.isfinite(filter_logits(logits, 3, 1.0)).tolist() == [[True, True, True, False]]


# ---- the plug points, with a fake generator and judge -------------------------------------
class FixedGenerator:
    """Completions of given token ids, whatever the policy."""

    def __init__(self, completions: list[list[int]]) -> None:
        self.completions = completions

    def sync(self, policy) -> None:
        pass

    def generate(self, policy, prompts, k, decoding, seed):
        ids = policy.prompt_ids(prompts)
        completions = self.completions[: len(prompts) * k]
        return Rollout(list(prompts), ids, k, completions,
                       [torch.full((len(c),), -1.0) for c in completions],
                       [True] * len(completions), [str(len(c)) for c in completions])  # fmt: skip


class LengthJudge:
    """Scores a completion by its number of tokens (its text is that number)."""

    labels_used = 0

    def score(self, prompts, completions, seed=0):
        self.labels_used += len(completions)
        return [float(c) for c in completions]


def test_grpo_rollout_items_carry_group_advantages_and_sequence_weights(policy, world):
    completions = [[5] * n for n in (1, 2, 3, 6)]
    config = GRPOConfig(samples_per_prompt=4, rollout_prompts=1, beta=0.0)
    loop = Loop(policy, LengthJudge(), world.prompts(3, 0), config, seed=0,
                generator=FixedGenerator(completions))  # fmt: skip
    items, metrics = build_group_rollout(loop, config)(0, Shard())
    expected = group_advantages(torch.tensor([[1.0, 2.0, 3.0, 6.0]]))[0]
    assert [float(i["advantages"]) for i in items] == pytest.approx(expected.tolist())
    assert [i["weights"].tolist() for i in items][1] == [0.5, 0.5]  # 1/|y| per token
    assert metrics["reward"] == pytest.approx(3.0) and loop.judge.labels_used == 4

    rloo = RLOOConfig(samples_per_prompt=4, rollout_prompts=1, beta=0.0)
    loop = Loop(policy, LengthJudge(), world.prompts(3, 0), rloo, 0,
                generator=FixedGenerator(completions))  # fmt: skip
    items, _ = build_group_rollout(loop, rloo)(0, Shard())
    assert [float(i["advantages"]) for i in items] == pytest.approx([1 - 11 / 3, 2 - 10 / 3, 0, 4])
    assert items[3]["weights"].tolist() == [1.0] * 6  # REINFORCE sums token log-probs


def test_best_vs_worst_pairs_and_scalar_judges_answering_pairs(policy, world):
    completions = [[5] * n for n in (2, 4, 1, 3, 2, 2, 2, 2)]
    config = IterativeDPOConfig(samples_per_prompt=4, rollout_prompts=2)
    loop = Loop(policy, LengthJudge(), world.prompts(2, 0), config, 0,
                generator=FixedGenerator(completions))  # fmt: skip
    rollout = loop.sample(world.prompts(2, 0), seed=0)
    assert _extremes(loop, rollout, 0) == [(1, 2)]  # the all-tied second group gives no pair
    pairwise = ScoreComparison(LengthJudge())
    assert pairwise.prefer(["p"] * 3, ["1", "5", "2"], ["3", "2", "2"]) == [0.0, 1.0, 0.5]
    assert pairwise.labels_used == 6  # two scores per comparison


def test_annotator_judge_answers_are_a_function_of_the_seed(world):
    prompt = world.prompts(1, 0)[0]
    good, bad = "the kettle is great . the price is good .", "bad bad bad"
    judge = AnnotatorJudge(world, temperature=0.5)
    first = judge.prefer([prompt] * 50, [good] * 50, [bad] * 50, seed=3)
    assert first == judge.prefer([prompt] * 50, [good] * 50, [bad] * 50, seed=3)
    assert sum(first) > 45 and judge.labels_used == 100


# ---- every method, one short run on the tiny model ------------------------------------------
@pytest.mark.parametrize(
    "name", [n for n, c in ONLINE_METHODS.items() if c not in NASH_CONFIGS]
)  # the game-theoretic ones: tests/test_online_nash.py
def test_each_method_runs_a_short_iteration(name, sft_dir, world, tmp_path):
    options = {"aspects": ("sentiment", "length")} if name == "dpa" else {}
    config = ONLINE_METHODS[name](rollout_prompts=4, max_new_tokens=12, **options)
    judge = AnnotatorJudge(world) if "dpo" in name else GoldJudge(world)
    judge = GoldAspectsJudge(world) if name == "dpa" else judge
    train = TrainConfig(learning_rate=1e-3, batch_size=16, max_steps=2, log_every=1)
    run = OnlineRun(sft_dir, world.prompts(16, 0), judge)
    before = Policy.from_pretrained(sft_dir).model.state_dict()
    result = train_online(config, run, train, tmp_path / name, show_progress=False)
    after = Policy.from_pretrained(tmp_path / name).model.state_dict()
    assert result.steps == 2 and math.isfinite(result.final_loss)
    assert judge.labels_used > 0
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the policy moved
    records = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").open()]
    assert records[-1]["labels_used"] == judge.labels_used


def test_an_online_run_interrupted_mid_rollout_resumes_exactly(sft_dir, world, tmp_path):
    # 8 pairs per iteration, 2 passes, batch 4: four steps per rollout; stop after step 3
    config = IterativeDPOConfig(rollout_prompts=8, rollout_epochs=2, max_new_tokens=12)
    train = TrainConfig(learning_rate=1e-3, batch_size=4, max_steps=6, checkpoint_every=1,
                        keep_checkpoints=1, log_every=1)  # fmt: skip

    def run(out, **options):
        run = OnlineRun(sft_dir, world.prompts(16, 0), AnnotatorJudge(world))
        policy, task = online_task(config, run, train)
        fit(task, train, out, show_progress=False, **options)
        return Policy.from_pretrained(out).model.state_dict(), run.judge.labels_used

    whole, labels = run(tmp_path / "whole")

    class Interrupt(Exception):
        pass

    def stop_at_3(step, record):
        if step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(tmp_path / "cut", callbacks=[stop_at_3])
    resumed, resumed_labels = run(tmp_path / "cut", resume=True)
    assert resumed_labels == labels  # the count came back with the checkpoint
    for key in whole:
        torch.testing.assert_close(resumed[key], whole[key], atol=0, rtol=0)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4, 5, 6]


# ---- reward functions -----------------------------------------------------------------------
def _function(fn) -> FunctionJudge:
    return FunctionJudge([RewardFunction("mod:fn", fn)])


def test_reward_function_failures_name_the_function_and_the_sample():
    with pytest.raises(RewardFunctionError, match="mod:fn raised ZeroDivisionError"):
        _function(lambda p, c: [1 / 0]).score(["p"], ["c"])
    with pytest.raises(RewardFunctionError, match=r"returned nan for sample 1 \(prompt 'q'"):
        _function(lambda p, c: [1.0, float("nan")]).score(["q", "q"], ["a", "b"])
    with pytest.raises(RewardFunctionError, match="returned 1 values for 2 completions"):
        _function(lambda p, c: [1.0]).score(["q", "q"], ["a", "b"])
    constant = RewardFunction("a", lambda p, c: [1.0] * len(c), 2.0)
    weighted = FunctionJudge([constant, RewardFunction("b", lambda p, c: [len(x) for x in c], -1)])
    assert weighted.score(["q", "q"], ["ab", "abcd"]) == [0.0, -2.0]
    with pytest.raises(RewardFunctionError, match="expected module:function"):
        load_reward_function("nocolon")
    with pytest.raises(RewardFunctionError, match="has no callable 'missing'"):
        load_reward_function("math:missing")
    assert load_reward_function("math:fsum=0.5").weight == 0.5


REWARDS_MODULE = """
calls = {"n": 0}

def longer(prompts, completions):
    return [float(len(c.split())) for c in completions]

def breaks_on_third_call(prompts, completions):
    calls["n"] += 1
    if calls["n"] == 3:
        return [float("nan")] * len(completions)
    return [1.0 + (i % 2) for i in range(len(completions))]
"""


def test_cli_reward_function_and_a_failing_one_keeps_the_last_checkpoint(
    sft_dir, world, tmp_path, monkeypatch
):
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent(REWARDS_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in world.prompts(8, 0)))
    common = ["train-online", "--method", "rloo", str(sft_dir), str(prompts),
              "--rollout-prompts", "2", "--max-new-tokens", "8", "--batch-size", "8"]  # fmt: skip
    ok = CliRunner().invoke(app, common + ["--reward-function", "my_rewards:longer", "--out",
                                           str(tmp_path / "ok"), "--max-steps", "2"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "2 steps, 16 labels" in ok.output
    bad = CliRunner().invoke(app, common + [
        "--reward-function", "my_rewards:breaks_on_third_call", "--out", str(tmp_path / "bad"),
        "--max-steps", "4", "--checkpoint-every", "1"])  # fmt: skip
    assert bad.exit_code == 2
    assert "reward function my_rewards:breaks_on_third_call returned nan for sample 0" in (
        bad.output)  # fmt: skip
    assert "Traceback" not in bad.output
    checkpoints = sorted(p.name for p in (tmp_path / "bad" / "checkpoints").iterdir())
    assert checkpoints == ["step-0000001", "step-0000002"]  # the failed step wrote nothing


def test_cli_refuses_no_judge_or_two(sft_dir, tmp_path):
    (tmp_path / "p.txt").write_text("write a review of the mug that mentions the price .\n")
    base = ["train-online", "--method", "grpo", str(sft_dir), str(tmp_path / "p.txt")]
    none = CliRunner().invoke(app, base)
    assert none.exit_code == 2 and "choose exactly one judge" in none.output
    two = CliRunner().invoke(app, base + ["--world", "reviews", "--reward-function", "m:f"])
    assert two.exit_code == 2 and "(got --world, --reward-function)" in two.output
    unknown = CliRunner().invoke(app, ["train-online", "--method", "nope"])
    assert unknown.exit_code == 2 and "unknown online method 'nope'" in unknown.output


# ---- dense, multi-reward feedback ------------------------------------------------------------
def sentence_length(prompts, segments):
    return [[float(len(s.split())) for s in row] for row in segments]


def positive_sentence(prompts, segments):
    return [[1.0 if "great" in s else 0.0 for s in row] for row in segments]


def test_dense_rewards_land_on_segment_ends_and_train_ppo_and_reinforce_pp(
    policy, sft_dir, world, tmp_path
):
    from prefloop.online.dense import DenseJudge, SegmentRewardFunction

    judge = DenseJudge([SegmentRewardFunction("length", sentence_length, 0.5),
                        SegmentRewardFunction("positive", positive_sentence, 2.0)],
                       policy.tokenizer)  # fmt: skip
    text = ["the kettle is great . it came in a box ."]
    ids = policy.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = [ids[0] + [policy.tokenizer.eos_token_id]]
    rewards = judge.token_rewards(["p"], ids, torch.ones(1, len(ids[0])))
    # sentence 1 ends at token 4 (".": 5 words → 2.5, "great" → +2); sentence 2 at token 10
    expected = torch.zeros(1, 12)
    expected[0, 4], expected[0, 10] = 0.5 * 5 + 2.0, 0.5 * 6
    torch.testing.assert_close(rewards, expected)
    assert judge.labels_used == 2
    assert judge.score(["p"], text) == [pytest.approx(7.5)]
    for name in ("ppo", "reinforce++"):
        dense = DenseJudge(judge.functions, policy.tokenizer)
        config = ONLINE_METHODS[name](rollout_prompts=4, max_new_tokens=12)
        train = TrainConfig(learning_rate=1e-3, batch_size=16, max_steps=2, log_every=1)
        result = train_online(config, OnlineRun(sft_dir, world.prompts(16, 0), dense), train,
                              tmp_path / name, show_progress=False)  # fmt: skip
        assert result.steps == 2 and math.isfinite(result.final_loss)
        assert dense.labels_used > 0


def test_dpa_writes_the_direction_into_the_prompt_and_keeps_the_directed_best(policy, world):
    from prefloop.online.preference import DPAConfig, build_directed_best, direction_prompt

    assert direction_prompt("q", ("help", "verbose"), (0.8, 0.6)) == (
        "q your response should maximize weighted rating = help*80 + verbose*60"
    )
    chat = direction_prompt([{"role": "user", "content": "q"}], ("a", "b"), (1.0, 0.0))
    assert chat[0] == {"role": "system", "content": "your response should maximize weighted "
                       "rating = a*100 + b*0"}  # fmt: skip
    with pytest.raises(ConfigError, match="two aspects are needed"):
        DPAConfig(aspects=("sentiment",))
    completions = [[5] * n for n in (3, 9, 6, 1)]
    config = DPAConfig(
        aspects=("long", "short"),
        samples_per_prompt=4,
        rollout_prompts=1,
        angle_low=90.0,
        angle_high=90.0,
    )  # v = (0, 1): vᵀr = −n
    loop = Loop(policy, LengthAspects(), world.prompts(2, 0), config, 0,
                generator=FixedGenerator(completions))  # fmt: skip
    items, metrics = build_directed_best(loop, config)(0, Shard())
    assert items[0]["completion_ids"] == [5] * 1  # the shortest is the directed best
    assert metrics["kept_directional_reward"] == pytest.approx(-1.0)
    assert loop.judge.labels_used == 4


class LengthAspects:
    """Two aspects of a completion whose text is its length n: (n, −n)."""

    labels_used = 0

    def aspect_scores(self, prompts, completions, aspects):
        self.labels_used += len(completions)
        return torch.tensor([[float(c), -float(c)] for c in completions])


def test_reference_schedules_move_the_reference_when_they_should(policy):
    import copy

    from prefloop.online.source import ReferenceSchedule

    def schedule(kind, every=0):
        reference = Policy(copy.deepcopy(policy.model), policy.tokenizer)
        return ReferenceSchedule(policy, reference, kind, every), reference

    def nudge():
        with torch.no_grad():
            next(policy.model.parameters()).add_(1.0)

    def same(reference) -> bool:
        return torch.equal(next(reference.model.parameters()), next(policy.model.parameters()))

    fixed, fixed_ref = schedule("fixed")
    every, every_ref = schedule("every", 2)
    previous, previous_ref = schedule("previous")
    for step in (0, 1, 2, 3):
        nudge()
        for s in (fixed, every, previous):
            s.before_rollout(step)
        assert same(previous_ref) == (step > 0)  # refreshed at every rollout after the first
        assert same(every_ref) == (step == 2)  # refreshed once 2 steps have passed
        assert not same(fixed_ref)
    restored, restored_ref = schedule("every", 2)
    restored.load_state_dict(every.state_dict())
    assert restored.updated_at == 2 and torch.equal(
        next(restored_ref.model.parameters()), next(every_ref.model.parameters()))  # fmt: skip
    with pytest.raises(ConfigError, match="reference_every >= 1"):
        schedule("every", 0)
