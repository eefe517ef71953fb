"""The offline preference trainer: reference-free paths, beta defaults, option plumbing, SPO."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from _tiny_sft import labelled_pairs, sft_policy_dir

from prefloop.models.policy import Policy
from prefloop.train.checkpoints import CACHE_DIR
from prefloop.train.config import ConfigError
from prefloop.train.engine import TrainConfig
from prefloop.train.preference import method_config, train_preference
from prefloop.train.spo import key_word_indices

pytestmark = pytest.mark.slow
ONE_STEP = TrainConfig(learning_rate=1e-3, batch_size=64, max_steps=1, log_every=1)


@pytest.fixture(scope="module")
def sft_dir(tiny_model_dir, tmp_path_factory, world):
    return sft_policy_dir(tiny_model_dir, tmp_path_factory.mktemp("sft"), world)


@pytest.fixture(scope="module")
def pairs(sft_dir, world):
    return labelled_pairs(Policy.from_pretrained(sft_dir, device="cpu"), world, 48)[:32]


def first_loss(out) -> float:
    return json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["loss"]


def gap(policy: Policy, pairs) -> float:
    prompts = [c.prompt for c in pairs]
    chosen, _ = policy.sequence_logps(prompts, [c.chosen for c in pairs])
    rejected, _ = policy.sequence_logps(prompts, [c.rejected for c in pairs])
    return float((chosen - rejected).mean())


@pytest.mark.parametrize("objective", ["simpo", "orpo", "cpl"])
def test_reference_free_objectives_train_without_reference(
    objective, sft_dir, pairs, tmp_path, monkeypatch
):
    policy = Policy.from_pretrained(sft_dir, device="cpu")
    before = gap(policy, pairs)

    def no_reference(*args, **kwargs):
        raise AssertionError("reference log-probs computed for a reference-free objective")

    config = TrainConfig(learning_rate=3e-3, batch_size=16, epochs=4)
    with monkeypatch.context() as patch:
        patch.setattr(Policy, "sequence_logps", no_reference)
        train_preference(policy, pairs, config, tmp_path, method_config(objective),
                         show_progress=False)  # fmt: skip
    assert not (tmp_path / CACHE_DIR).exists()
    assert gap(policy, pairs) > before + 0.5  # chosen pulled above rejected


@pytest.mark.parametrize(("objective", "default"), [("dpo", 0.1), ("simpo", 2.0)])
def test_an_unset_beta_is_the_objective_default(objective, default, sft_dir, pairs, tmp_path):
    """The Python API and the CLI read one default: the loss's (simpo's β is 2.0, not 0.1)."""
    assert method_config(objective).beta == default
    losses = {}
    for beta in (None, default, 0.5):
        policy = Policy.from_pretrained(sft_dir, device="cpu")
        out = tmp_path / str(beta)
        method = method_config(objective) if beta is None else method_config(objective, beta=beta)
        train_preference(policy, pairs, replace(ONE_STEP, max_steps=3), out, method,
                         show_progress=False)  # fmt: skip
        losses[beta] = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").open()]
    assert losses[None] == losses[default] != losses[0.5]


def test_ill_typed_or_out_of_range_options_name_the_option_and_method():
    with pytest.raises(ConfigError, match=r"method 'dpo': option 'beta' must be a number > 0"):
        method_config("dpo", beta=-1.0)
    with pytest.raises(ConfigError, match=r"method 'cdpo'.*'label_smoothing' must lie in"):
        method_config("cdpo", label_smoothing=0.7)
    with pytest.raises(ConfigError, match=r"method 'f-dpo'.*divergence"):
        method_config("f-dpo", divergence="hellinger")
    with pytest.raises(ConfigError, match=r"option 'spo_classes' must be int, got 2.5"):
        method_config("dpo", spo_classes=2.5)
    with pytest.raises(ConfigError, match=r"method 'dpo': unknown option\(s\) gamma; valid: "):
        method_config("dpo", gamma=1.0)


def test_margin_and_strength_come_from_records(sft_dir, pairs, tmp_path):
    """At step 1 the policy is its reference, so the DPO logit is just ``-margin``."""
    records = [replace(c, margin=1.0, strength=0.25) for c in pairs]
    policy = Policy.from_pretrained(sft_dir, device="cpu")
    train_preference(policy, records, ONE_STEP, tmp_path / "dpo",
                     method_config("dpo", use_margin=True), show_progress=False)  # fmt: skip
    assert first_loss(tmp_path / "dpo") == pytest.approx(math.log1p(math.e), rel=1e-5)
    policy = Policy.from_pretrained(sft_dir, device="cpu")
    train_preference(policy, records, ONE_STEP, tmp_path / "soft",
                     method_config("soft-preference", use_margin=True),
                     show_progress=False)  # fmt: skip
    expected = 0.25 * math.log1p(math.e) + 0.75 * math.log1p(math.exp(-1))
    assert first_loss(tmp_path / "soft") == pytest.approx(expected, rel=1e-5)
    policy = Policy.from_pretrained(sft_dir, device="cpu")
    records = [replace(c, strength=0.9) for c in records]  # an explicit option wins
    train_preference(policy, records, ONE_STEP, tmp_path / "opt",
                     method_config("soft-preference", use_margin=True, strength=0.25),
                     show_progress=False)  # fmt: skip
    assert first_loss(tmp_path / "opt") == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="margin"):
        train_preference(policy, pairs, ONE_STEP, tmp_path / "none",
                         method_config("dpo", use_margin=True))  # fmt: skip


def test_inpo_uses_the_previous_iterate(sft_dir, tiny_model_dir, pairs, tmp_path):
    previous = Policy.from_pretrained(tiny_model_dir, device="cpu")  # any other policy
    policy = Policy.from_pretrained(sft_dir, device="cpu")
    prompts = [c.prompt for c in pairs]
    ref = [policy.sequence_logps(prompts, [getattr(c, k) for c in pairs])[0]
           for k in ("chosen", "rejected")]  # fmt: skip
    prev = [previous.sequence_logps(prompts, [getattr(c, k) for c in pairs])[0]
            for k in ("chosen", "rejected")]  # fmt: skip
    train_preference(policy, pairs, ONE_STEP, tmp_path, method_config("inpo", ratio=0.25),
                     previous=previous, show_progress=False)  # fmt: skip
    h = 0.75 * ((ref[0] - ref[1]) - (prev[0] - prev[1]))  # policy = reference at step 1
    expected = ((h - 5.0) ** 2).mean().item()
    assert first_loss(tmp_path) == pytest.approx(expected, rel=1e-4)


def test_spo_auxiliary_learns_degrees_and_leaves_no_head(sft_dir, pairs, tmp_path):
    assert key_word_indices(["the", "camera", "is", "great", ".", "i", "love", "it", "."]) == [
        1,
        3,
        6,
    ]
    policy = Policy.from_pretrained(sft_dir, device="cpu")
    config = TrainConfig(learning_rate=1e-2, batch_size=16, epochs=12, log_every=1)
    method = method_config("dpo", spo_weight=1.0, spo_classes=3)
    train_preference(policy, pairs, config, tmp_path, method, show_progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    early = sum(r["spo_loss"] for r in records[:4]) / 4
    late = sum(r["spo_loss"] for r in records[-4:]) / 4
    assert late < early - 0.1  # the head learns to tell how much key content is missing
    assert not any("spo" in name for name in policy.model.state_dict())
    saved = Policy.from_pretrained(tmp_path, device="cpu")  # the final model: the policy alone
    assert set(saved.model.state_dict()) == set(policy.model.state_dict())
    assert torch.isfinite(torch.tensor(early))
