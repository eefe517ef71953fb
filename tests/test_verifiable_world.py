import math

import pytest

from prefloop.eval.pass_at_k import evaluate_pass_at_k, pass_at_k
from prefloop.lab.common import BasePolicySetup, prepare_sft_policy
from prefloop.models.factory import TinyModelSpec, train_word_tokenizer
from prefloop.models.policy import Policy
from prefloop.train.engine import TrainConfig
from prefloop.worlds import get_world
from prefloop.worlds.arithmetic import (
    ArithmeticWorld,
    correctness_reward,
    format_reward,
    parse_answer,
    parse_prompt,
    worked_solution,
)

PROMPT = "4 7 2 + 3 9 ="  # 472 + 39 = 511


def test_checker_on_hand_written_responses():
    world = ArithmeticWorld()
    worked = "2 + 9 + 0 = 1 1 , 7 + 3 + 1 = 1 1 , 4 + 0 + 1 = 5 , answer 5 1 1"
    cases = {
        worked: (1.0, 1.0),
        "answer 5 1 1": (1.0, 1.0),
        "2 + 9 + 0 = 1 1 , answer 5 1 1": (1.0, 1.0),  # steps are not checked
        "answer 5 0 1": (0.0, 1.0),  # wrong
        "answer 4 1 1 , 5 1 1": (0.0, 0.0),  # extra words after the answer
        "5 1 1": (0.0, 0.0),  # no answer word
        "answer": (0.0, 0.0),  # nothing after it
        "answer 5 1 1 answer 5 1 1": (0.0, 0.0),  # two answers
        "answer 0 5 1 1": (0.0, 0.0),  # leading zero
        "answer 511": (0.0, 0.0),  # digits must be words
        "": (0.0, 0.0),
    }
    for response, (correct, parsable) in cases.items():
        assert world.gold_aspects(PROMPT, response) == {"correct": correct, "format": parsable}
        assert world.gold_reward(PROMPT, response) == correct
    assert parse_answer("answer 0") == 0
    assert parse_prompt("9 + 1 0 0 =") == (9, 100)
    with pytest.raises(ValueError, match="not a prompt of the arithmetic world"):
        parse_prompt("write a review of the kettle .")


def test_worked_solution_carries_and_the_noisy_teacher_forgets_one():
    assert worked_solution(472, 39) == (
        "2 + 9 + 0 = 1 1 , 7 + 3 + 1 = 1 1 , 4 + 0 + 1 = 5 , answer 5 1 1"
    )
    assert worked_solution(99, 9).endswith("9 + 0 + 1 = 1 0 , answer 1 0 8")
    forgot = worked_solution(472, 39, drop_carry=1)
    assert forgot.endswith("7 + 3 + 0 = 1 0 , 4 + 0 + 1 = 5 , answer 5 0 1")
    careful = ArithmeticWorld(worked_share=1.0).corpus(300, seed=0)
    assert all(correctness_reward([p], [r]) == [1.0] for p, r in careful)
    careless = ArithmeticWorld(worked_share=1.0, teacher_error=1.0).corpus(300, seed=0)
    for prompt, response in careless:
        has_carry = " + 1 = " in worked_solution(*parse_prompt(prompt))
        assert correctness_reward([prompt], [response]) == [float(not has_carry)]


def test_splits_are_disjoint_and_the_corpus_only_uses_train_tasks():
    world = ArithmeticWorld()
    train, test = world.prompt_pool("train"), world.prompt_pool("test")
    assert len(set(train)) == len(train) == 3200 and len(set(test)) == len(test) == 800
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted(world.prompt_pool("all"))
    assert set(world.prompts(100, seed=2, split="test")) <= set(test)
    assert {p for p, _ in world.corpus(500, seed=1)} <= set(train)
    for prompt in train + test:
        a, b = parse_prompt(prompt)
        assert 10 <= a <= 999 and 10 <= b <= 999
    with pytest.raises(ValueError, match="split must be"):
        world.prompt_pool("dev")


def test_pool_prompts_and_corpus_are_deterministic_by_seed():
    assert ArithmeticWorld().prompt_pool("test") == ArithmeticWorld().prompt_pool("test")
    assert ArithmeticWorld(pool_seed=1).prompt_pool("test") != ArithmeticWorld().prompt_pool("test")
    world = ArithmeticWorld()
    assert world.corpus(200, seed=3) == world.corpus(200, seed=3) != world.corpus(200, seed=4)
    assert world.prompts(50, seed=3, split="test") == world.prompts(50, seed=3, split="test")
    worked = sum("+" in r for _, r in world.corpus(2000, seed=0)) / 2000
    assert worked == pytest.approx(world.worked_share, abs=0.04)


def test_world_is_registered():
    assert isinstance(get_world("arithmetic"), ArithmeticWorld)


def test_pass_at_k_against_hand_computations():
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 − C(3,2)/C(4,2) = 1 − 3/6
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 − C(3,2)/C(5,2)
    assert pass_at_k(4, 0, 2) == 0.0
    assert pass_at_k(4, 4, 2) == 1.0
    assert pass_at_k(4, 3, 2) == 1.0  # fewer than k wrong samples: some pick is always right
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    # large n: no overflow, agrees with exact binomials
    exact = 1 - math.comb(1000 - 7, 100) / math.comb(1000, 100)
    assert pass_at_k(1000, 7, 100) == pytest.approx(exact, rel=1e-9)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)


def test_reward_functions_lengths_and_values():
    prompts = [PROMPT, PROMPT, "1 2 + 3 4 =", "1 2 + 3 4 ="]
    completions = ["answer 5 1 1", "answer 5 1 2", "2 + 4 + 0 = 6 , answer 4 6", "4 6"]
    assert correctness_reward(prompts, completions) == [1.0, 0.0, 1.0, 0.0]
    assert format_reward(prompts, completions) == [1.0, 1.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="4 prompts but 3 completions"):
        correctness_reward(prompts, completions[:3])


class ScriptedPolicy:
    """A stand-in policy whose samples are fixed, so pass@k has hand-computable values."""

    def __init__(self, samples: list[list[str]], greedy: list[str]):
        self.samples, self.greedy = samples, greedy
        self.tokenizer = train_word_tokenizer([r for g in samples for r in g] + greedy)

    def generate(self, prompts, num_samples, temperature, max_new_tokens, seed=0):
        if temperature == 0:
            return [[g] for g in self.greedy]
        return [group[:num_samples] for group in self.samples]


def test_evaluate_pass_at_k_on_scripted_samples():
    prompts = [PROMPT, "1 2 + 3 4 ="]
    samples = [
        ["answer 5 1 1", "answer 5 1 2", "answer 5 1 2", "answer 5 1 2"],  # 1 of 4 right
        ["answer 4 6", "2 + 4 + 0 = 6 , 1 + 3 + 0 = 4 , answer 4 6", "no", "answer 4 6"],  # 3 of 4
    ]
    policy = ScriptedPolicy(samples, greedy=["answer 5 1 1", "answer 4 7"])
    result = evaluate_pass_at_k(policy, ArithmeticWorld(), prompts, 4, [1, 2], seed=0)
    assert result.correct_per_prompt == [1, 3]
    assert result.pass_at == {1: pytest.approx((1 / 4 + 3 / 4) / 2), 2: pytest.approx(0.75)}
    assert result.greedy_accuracy == 0.5
    lengths = [4, 4, 4, 4, 3, 19, 1, 3]  # tokens of each sample (EOS not counted)
    assert result.mean_length == pytest.approx(sum(lengths) / 8)
    assert result.to_dict()["pass@2"] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="each k must be in"):
        evaluate_pass_at_k(policy, ArithmeticWorld(), prompts, 4, [8], seed=0)


def test_pass_at_k_refuses_a_world_without_a_binary_reward(world):
    policy = ScriptedPolicy([["the kettle is great ."]], greedy=["the kettle is great ."])
    prompt = "write a review of the kettle that mentions the price ."
    with pytest.raises(ValueError, match="needs a 0/1 gold reward; world 'reviews'"):
        evaluate_pass_at_k(policy, world, [prompt], 1, [1], seed=0)


@pytest.mark.slow
def test_sft_leaves_the_tiny_model_at_partial_accuracy(tmp_path):
    """A short SFT on two-digit sums: some held-out samples right, most of them wrong."""
    world = ArithmeticWorld(min_digits=1, max_digits=2)
    setup = BasePolicySetup(
        corpus_size=1500,
        model=TinyModelSpec(hidden_size=128, intermediate_size=384),
        sft=TrainConfig(learning_rate=3e-3, batch_size=64, epochs=12),
    )
    policy, _ = prepare_sft_policy(world, setup, tmp_path, seed=0)
    assert isinstance(policy, Policy)
    prompts = world.prompts(100, seed=1, split="test")
    result = evaluate_pass_at_k(policy, world, prompts, 8, [1, 8], seed=0, max_new_tokens=40)
    assert 0.1 < result.pass_at[1] < 0.6
    assert result.pass_at[8] > result.pass_at[1] + 0.3
    assert 0 < result.greedy_accuracy < 1
    # direct answers are ~4 tokens, worked two-digit sums ~15: the samples mix both
    assert 6 < result.mean_length < 14
