"""VPL personalized reward model vs a single BT head, on users with conflicting tastes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefloop.models.personalized import (
    VPLRewardModel,
    bag_of_words_embedder,
    personalized_scorer,
)
from prefloop.train.engine import TrainConfig
from prefloop.train.vpl import PersonalizedPairs, VPLConfig, train_vpl
from prefloop.worlds.review_shifts import corpus_sampler
from prefloop.worlds.reviews import ReviewWorld
from prefloop.worlds.users import USER_TYPES, UserWorld, label_for_users


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLPs: threading only adds overhead on a shared CPU
    yield
    torch.set_num_threads(threads)


def _triples(world: ReviewWorld, n: int, seed: int) -> list[tuple[str, str, str]]:
    prompts = world.prompts(n, seed)
    return [(p, a, b) for p, (a, b) in zip(prompts, corpus_sampler(world, seed)(prompts, 2))]


def test_users_disagree_on_length():
    world = ReviewWorld()
    prompt = world.prompt_for("kettle", "price")
    short = "the price is good ."
    long = " ".join(["the price is good . i love it . it arrived on time ."] * 3)
    concise, verbose = (UserWorld(world, u) for u in USER_TYPES)
    assert concise.gold_reward(prompt, short) > concise.gold_reward(prompt, long)
    assert verbose.gold_reward(prompt, short) < verbose.gold_reward(prompt, long)


def test_vpl_beats_single_bt_on_conflicting_users(tmp_path):
    world = ReviewWorld()
    vocabulary = sorted({w for _, r in world.corpus(2000, 0) for w in r.split()})
    embed = bag_of_words_embedder(vocabulary, prompt_feature=ReviewWorld.mentions_requested_aspect)
    train = label_for_users(world, _triples(world, 1200, 1), user_ids=20, seed=2)
    data = PersonalizedPairs(train, embed)
    test = _triples(world, 150, 3)
    # held-out pairs on which the two user types disagree: no single reward can fit both
    type_gaps = {
        u.name: np.array(
            [
                UserWorld(world, u).gold_reward(p, a) - UserWorld(world, u).gold_reward(p, b)
                for p, a, b in test
            ]
        )  # fmt: skip
        for u in USER_TYPES
    }
    concise, verbose = type_gaps["concise"], type_gaps["verbose"]
    conflict = (np.sign(concise) != np.sign(verbose)) & (
        np.minimum(abs(concise), abs(verbose)) > 0.05
    )
    assert conflict.sum() >= 30
    prompts = [p for p, _, _ in test]
    users = {c.annotator: c.metadata["user_type"] for c in train}
    accuracy = {}
    for personalized in (True, False):
        model = VPLRewardModel(data.chosen.shape[1], personalized=personalized)
        config = TrainConfig(learning_rate=1e-2, batch_size=64, epochs=30, seed=0)
        train_vpl(model, data, config, tmp_path / str(personalized), VPLConfig(kl_weight=1e-3),
                  show_progress=False)  # fmt: skip
        per_type: dict[str, list[float]] = {}
        for uid, utype in users.items():
            score = personalized_scorer(model, embed, [c for c in train if c.annotator == uid][:8])
            predicted = (
                score(prompts, [a for _, a, _ in test]) - score(prompts, [b for _, _, b in test])
            ).numpy()
            correct = (predicted > 0) == (type_gaps[utype] > 0)
            per_type.setdefault(utype, []).append(float(correct[conflict].mean()))
        accuracy[personalized] = {t: float(np.mean(v)) for t, v in per_type.items()}
    vpl, bt = accuracy[True], accuracy[False]
    # a single reward agrees with one type exactly where it disagrees with the other
    assert bt["concise"] + bt["verbose"] == pytest.approx(1.0, abs=0.05), accuracy
    assert sum(vpl.values()) / 2 > sum(bt.values()) / 2 + 0.15, accuracy
    assert min(vpl.values()) > 0.6, accuracy


@pytest.mark.parametrize("context_attention", [False, True])
def test_user_posterior_ignores_the_order_of_the_context_pairs(context_attention):
    torch.manual_seed(0)
    model = VPLRewardModel(6, context_attention=context_attention)
    chosen, rejected = torch.randn(2, 5, 6), torch.randn(2, 5, 6)
    order = torch.tensor([3, 0, 4, 1, 2])
    mu, logvar = model.posterior(chosen, rejected)
    mu_perm, logvar_perm = model.posterior(chosen[:, order], rejected[:, order])
    assert torch.allclose(mu, mu_perm, atol=1e-6) and torch.allclose(logvar, logvar_perm, atol=1e-6)
    assert not torch.allclose(mu[0], mu[1])  # but it does depend on which pairs they are
    if context_attention:  # the attention layer changes the posterior, not only its order
        plain = VPLRewardModel(6)
        plain.load_state_dict(model.state_dict(), strict=False)
        assert not torch.allclose(plain.posterior(chosen, rejected)[0], mu)
