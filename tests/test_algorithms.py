"""KTO, Curry-DPO, C3PO, token-level rewards and beam search, and their CLI entry points."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from _tiny_sft import labelled_pairs, sft_policy_dir
from safetensors.torch import load_file
from typer.testing import CliRunner

from prefloop.algorithms.c3po import (
    C3POConfig,
    build_c3po_data,
    keep_records,
    logp_shift,
    revise,
    train_c3po,
)
from prefloop.algorithms.curry_dpo import CurryDPOConfig, stages_from_ratings, train_curry_dpo
from prefloop.algorithms.token_level import beam_search, token_implicit_rewards
from prefloop.cli import app
from prefloop.data import Rating, comparisons_to_unpaired, save_records
from prefloop.lab.objectives import CAMERA_BATTERY as FEEDBACK
from prefloop.models.factory import TinyModelSpec, create_tiny_model, train_word_tokenizer
from prefloop.models.policy import Policy
from prefloop.train.checkpoints import CACHE_DIR
from prefloop.train.engine import TrainConfig
from prefloop.train.unpaired import KTOConfig, mismatched_partners, train_kto

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sft_dir(tiny_model_dir, tmp_path_factory, world):
    return sft_policy_dir(tiny_model_dir, tmp_path_factory.mktemp("sft"), world)


@pytest.fixture(scope="module")
def pairs(sft_dir, world):
    return labelled_pairs(Policy.from_pretrained(sft_dir, device="cpu"), world, 48)[:32]


def mean_logp(policy: Policy, examples) -> float:
    logps, _ = policy.sequence_logps([e.prompt for e in examples], [e.completion for e in examples])
    return float(logps.mean())


# ---- KTO ------------------------------------------------------------------------------------
def test_mismatched_partners_are_a_derangement():
    partners = mismatched_partners(50, seed=3)
    assert sorted(partners) == list(range(50))
    assert all(p != i for i, p in enumerate(partners))
    with pytest.raises(ValueError):
        mismatched_partners(1, 0)


def test_kto_raises_desirable_relative_to_undesirable(sft_dir, pairs, tmp_path):
    examples = comparisons_to_unpaired(pairs)
    good = [e for e in examples if e.label]
    bad = [e for e in examples if not e.label]
    policy = Policy.from_pretrained(sft_dir, device="cpu")
    before = mean_logp(policy, good) - mean_logp(policy, bad)
    config = TrainConfig(learning_rate=3e-3, batch_size=16, epochs=3, log_every=1)
    train_kto(policy, examples, config, tmp_path, KTOConfig(beta=0.1), show_progress=False)
    assert mean_logp(policy, good) - mean_logp(policy, bad) > before + 1.0
    assert "kl_estimate" in (tmp_path / "metrics.jsonl").read_text()


# ---- Curry-DPO ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ratings(sft_dir, world):
    policy = Policy.from_pretrained(sft_dir, device="cpu")
    prompts = world.prompt_pool("train")[:12]  # distinct prompts
    samples = policy.generate(prompts, num_samples=4, seed=5, max_new_tokens=24)
    samples = [[r or "i like it ." for r in group] for group in samples]  # records need text
    return [Rating(p, group, [world.gold_reward(p, r) for r in group])
            for p, group in zip(prompts, samples)]  # fmt: skip


def test_curry_stages_go_from_easy_to_hard(ratings):
    stages = stages_from_ratings(ratings)
    assert len(stages) == 3  # best vs each of the three others
    for rating in ratings:
        margins = [c.margin for stage in stages for c in stage if c.prompt == rating.prompt]
        assert margins == sorted(margins, reverse=True)
        assert all(c.chosen == rating.responses[max(range(4), key=rating.scores.__getitem__)]
                   for stage in stages for c in stage if c.prompt == rating.prompt)  # fmt: skip


@pytest.mark.parametrize("refresh", [True, False])
def test_curry_dpo_refreshes_the_reference_between_stages(
    refresh, ratings, sft_dir, tmp_path
):  # fmt: skip
    stages = stages_from_ratings(ratings)[:2]
    policy = Policy.from_pretrained(sft_dir, device="cpu")
    config = TrainConfig(learning_rate=1e-2, batch_size=8, epochs=2)
    train_curry_dpo(policy, stages, config, tmp_path, CurryDPOConfig(refresh_reference=refresh),
                    show_progress=False)  # fmt: skip
    stage_one = Policy.from_pretrained(tmp_path / "stage-1", device="cpu")
    expected_from = stage_one if refresh else Policy.from_pretrained(sft_dir, device="cpu")
    other = Policy.from_pretrained(sft_dir, device="cpu") if refresh else stage_one
    prompts = [c.prompt for c in stages[1]]
    expected, _ = expected_from.sequence_logps(prompts, [c.chosen for c in stages[1]])
    unexpected, _ = other.sequence_logps(prompts, [c.chosen for c in stages[1]])
    cached = load_file(tmp_path / "stage-2" / CACHE_DIR / "reference_logps.safetensors")["chosen"]
    assert torch.allclose(cached, expected, atol=1e-5)
    assert not torch.allclose(cached, unexpected, atol=1e-2)  # stage 1 really moved the policy


# ---- C3PO -----------------------------------------------------------------------------------
def test_revision_follows_the_feedback():
    assert revise("the camera is good . i love it .", FEEDBACK) == (
        "the camera is good . the battery is good . i love it ."
    )
    assert revise("the battery is bad .", FEEDBACK) == "the battery is bad ."


def test_c3po_constraint_limits_out_of_scope_drift(sft_dir, world, tmp_path):
    baseline = Policy.from_pretrained(sft_dir, device="cpu")
    data = build_c3po_data(baseline, world, FEEDBACK, samples_per_prompt=2, seed=0)
    assert data.in_scope and all("camera" in c.prompt for c in data.in_scope)
    assert not any("camera" in p for p, _ in data.near_scope + data.out_of_scope)
    config = TrainConfig(learning_rate=3e-3, batch_size=8, epochs=4)
    shifts = {}
    for name, sigma in (("dpo", 0.0), ("c3po", 0.2)):
        policy = Policy.from_pretrained(sft_dir, device="cpu")
        method = C3POConfig(sigma_soft=sigma, sigma_hard=sigma / 2)
        train_c3po(policy, data, config, tmp_path / name, method, show_progress=False)
        shifts[name] = logp_shift(policy, baseline, data.out_of_scope)
    assert shifts["c3po"] < 0.8 * shifts["dpo"]


# ---- token level ----------------------------------------------------------------------------
def test_token_rewards_sum_to_the_sequence_implicit_reward(sft_dir, tiny_model_dir, pairs):
    policy = Policy.from_pretrained(sft_dir, device="cpu")
    reference = Policy.from_pretrained(tiny_model_dir, device="cpu")
    prompts, responses = [c.prompt for c in pairs[:6]], [c.chosen for c in pairs[:6]]
    rewards = token_implicit_rewards(policy, reference, prompts, responses, beta=0.3)
    sequence = 0.3 * (policy.sequence_logps(prompts, responses)[0]
                      - reference.sequence_logps(prompts, responses)[0])  # fmt: skip
    assert torch.allclose(torch.tensor([r.total for r in rewards]), sequence, atol=1e-4)
    assert [len(r.tokens) for r in rewards] == [len(s.split()) + 1 for s in responses]
    assert rewards[0].tokens[-1] == "</s>"


def tiny_vocab_policy(seed: int, tokenizer=None) -> Policy:
    tokenizer = tokenizer or train_word_tokenizer(["a b c"])
    spec = TinyModelSpec(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2)  # fmt: skip
    return Policy(create_tiny_model(tokenizer, spec, seed), tokenizer)


def enumerate_scores(policy, reference, prompt_ids, beta) -> dict[tuple[int, ...], float]:
    """Score of every continuation of at most two tokens, each from one full forward pass."""
    tok = policy.tokenizer
    words = tok.convert_tokens_to_ids(["a", "b", "c"])
    eos = tok.eos_token_id
    sequences = [(eos,)] + [(w, eos) for w in words] + list(itertools.product(words, repeat=2))
    scores = {}
    for seq in sequences:
        ids = torch.tensor([prompt_ids + list(seq)])
        with torch.no_grad():
            steps = range(len(prompt_ids) - 1, len(prompt_ids) - 1 + len(seq))
            mine = torch.log_softmax(policy.model(ids).logits[0], -1)
            score = sum(mine[t, ids[0, t + 1]].item() for t in steps)
            if reference is not None:
                theirs = torch.log_softmax(reference.model(ids).logits[0], -1)
                score = beta * (score - sum(theirs[t, ids[0, t + 1]].item() for t in steps))
        scores[seq] = score
    return scores


@pytest.mark.parametrize("guided", [True, False])
def test_beam_search_finds_the_best_continuation_when_wide_enough(guided):
    policy = tiny_vocab_policy(0)
    reference = tiny_vocab_policy(1, policy.tokenizer) if guided else None
    scores = enumerate_scores(policy, reference, policy.prompt_ids(["a"])[0], beta=0.5)
    best = max(scores, key=scores.get)
    beams = beam_search(policy, "a", beam_width=3, max_new_tokens=2, reference=reference, beta=0.5)
    assert tuple(beams[0].token_ids) == best
    assert beams[0].score == pytest.approx(scores[best], abs=1e-5)
    assert [b.score for b in beams] == sorted((b.score for b in beams), reverse=True)
    narrow = beam_search(policy, "a", beam_width=1, max_new_tokens=2, reference=reference, beta=0.5)
    assert narrow[0].score <= beams[0].score + 1e-6


# ---- CLI ------------------------------------------------------------------------------------
def run_cli(*args: str) -> None:
    result = CliRunner().invoke(app, ["train", *args, "--epochs", "1", "--lr", "1e-3",
                                      "--batch-size", "8"])  # fmt: skip
    assert result.exit_code == 0, result.output


def test_cli_reaches_kto_curry_and_c3po(sft_dir, pairs, ratings, world, tmp_path: Path):
    save_records(pairs[:16], tmp_path / "pairs.jsonl")
    save_records(ratings[:4], tmp_path / "ratings.jsonl")
    run_cli("kto", str(sft_dir), str(tmp_path / "pairs.jsonl"), "--out", str(tmp_path / "kto"))
    run_cli("curry-dpo", str(sft_dir), str(tmp_path / "ratings.jsonl"),
            "--out", str(tmp_path / "curry"))  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "curry").glob("stage-*")) == [
        "stage-1", "stage-2", "stage-3"
    ]  # fmt: skip
    data = build_c3po_data(Policy.from_pretrained(sft_dir, device="cpu"), world, FEEDBACK, 1)
    save_records(data.in_scope, tmp_path / "in_scope.jsonl")
    save_records(keep_records(data), tmp_path / "keep.jsonl")
    keep = str(tmp_path / "keep.jsonl")
    run_cli("c3po", str(sft_dir), str(tmp_path / "in_scope.jsonl"), "--keep-data", keep,
            "--out", str(tmp_path / "c3po"))  # fmt: skip
    assert "near_scope_nll" in (tmp_path / "c3po" / "metrics.jsonl").read_text()
    for name in ("kto", "curry", "c3po"):
        assert (tmp_path / name / "model.safetensors").exists()
    result = CliRunner().invoke(
        app, ["train", "dpo", str(sft_dir), str(tmp_path / "ratings.jsonl"),
              "--out", str(tmp_path / "bad")]
    )  # fmt: skip
    assert result.exit_code == 2
    assert "method 'dpo' trains on Comparison records, got Rating" in result.output
