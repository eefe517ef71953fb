import math

import pytest

from prefloop.worlds.annotators import BradleyTerryAnnotator
from prefloop.worlds.reviews import ReviewWorld

PROMPT = "write a review of the kettle that mentions the price ."


def test_gold_aspects_on_a_hand_written_review(world):
    response = "the kettle is great . the price is bad . i love it . i love it ."
    aspects = world.gold_aspects(PROMPT, response)
    # 18 words (periods count); positive: great, love, love; negative: bad; 4 sentences, one repeat
    assert aspects == {
        "request": 1.0,
        "sentiment": (3 - 1) / 4,
        "length": -abs(18 - 24) / 24,
        "repetition": -1 / 4,
        "on_topic": 0.0,
    }
    assert world.gold_reward(PROMPT, response) == pytest.approx(1 + 0.5 - 6 / 24 - 0.25)


def test_gold_of_an_empty_response_and_length_floor(world):
    assert world.gold_aspects(PROMPT, "") == {
        "request": 0.0, "sentiment": 0.0, "length": -1.0, "repetition": 0.0, "on_topic": 0.0
    }  # fmt: skip
    assert world.gold_aspects(PROMPT, "ok . " * 40)["length"] == -1.0


def test_sentences_about_another_product_are_off_topic(world):
    response = "the kettle is great . the blender is great . the lamp is nice . i love it ."
    assert world.gold_aspects(PROMPT, response)["on_topic"] == -2 / 4


def test_prompt_splits_are_disjoint_and_cover_every_combination(world):
    train, test = set(world.prompt_pool("train")), set(world.prompt_pool("test"))
    assert not train & test
    assert len(train) + len(test) == len(world.prompt_pool("all")) == 96
    assert all(p in test for p in world.prompts(50, seed=1, split="test"))
    with pytest.raises(ValueError, match="split must be"):
        world.prompt_pool("dev")


def test_corpus_is_deterministic_and_from_train_prompts(world):
    corpus = world.corpus(200, seed=3)
    assert corpus == world.corpus(200, seed=3)
    assert {p for p, _ in corpus} <= set(world.prompt_pool("train"))


def test_annotator_follows_bradley_terry_and_flip_rate():
    world = ReviewWorld()
    good = "the kettle is great . the price is nice . i love it ."
    bad = "the kettle is bad ."
    gap = world.gold_reward(PROMPT, good) - world.gold_reward(PROMPT, bad)
    annotator = BradleyTerryAnnotator(world, temperature=2.0, seed=0)
    expected = 1 / (1 + math.exp(-gap / 2.0))
    assert annotator.preference_probability(PROMPT, good, bad) == pytest.approx(expected)
    wins = sum(annotator.label(PROMPT, good, bad).chosen == good for _ in range(4000)) / 4000
    assert wins == pytest.approx(expected, abs=0.025)
    noisy = BradleyTerryAnnotator(world, temperature=0.01, flip_rate=0.25, seed=1)
    labels = [noisy.label(PROMPT, good, bad) for _ in range(4000)]
    flipped = sum(c.chosen == bad for c in labels) / 4000
    assert flipped == pytest.approx(0.25, abs=0.025)
    assert all(c.metadata["flipped"] == (c.chosen == bad) for c in labels)
    assert all(c.strength is None for c in labels)


def test_annotator_rejects_bad_settings(world):
    with pytest.raises(ValueError, match="temperature must be > 0"):
        BradleyTerryAnnotator(world, temperature=0)
    with pytest.raises(ValueError, match=r"flip_rate must be in \[0, 1\]"):
        BradleyTerryAnnotator(world, flip_rate=1.5)
