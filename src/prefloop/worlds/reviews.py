"""Short product reviews: a text world with an exact, cheap, multi-aspect gold reward.

A prompt asks for a review of a product that mentions one aspect::

    write a review of the kettle that mentions the price .

A response is a few short sentences from a small grammar::

    the kettle is great . the price is good . i love it .

Gold aspects (each documented on the method that computes it):

* ``request``    1 if the requested aspect is mentioned, else 0;
* ``sentiment``  (positive − negative words) / (positive + negative words), in [-1, 1];
* ``length``     −|words − target| / target, floored at −1;
* ``repetition`` −(share of sentences that repeat an earlier sentence), in [-1, 0];
* ``on_topic``   −(share of sentences that name a product other than the requested one).

The gold reward is their sum. The base corpus mixes moods, lengths, on- and off-request
sentences and occasional repeats, so a model trained on it by SFT writes responses of widely
varying gold quality; a small model also drifts to other products, as small models drift off
topic. A proxy reward model trained on a few hundred labels learns the easy features (positive
words, more content) long before it learns to check which product a sentence is about, so
selecting hard on it favours long, gushing reviews that wander off topic: the lab's way of
showing reward over-optimization.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from prefloop.worlds.base import PromptPoolWorld

PRODUCTS = (
    "blender", "kettle", "lamp", "backpack", "chair", "tent",
    "camera", "watch", "bike", "speaker", "jacket", "mug",
)  # fmt: skip
ASPECTS = ("price", "battery", "design", "size", "quality", "sound", "comfort", "color")
POSITIVE_ADJECTIVES = ("great", "good", "excellent", "nice", "solid", "lovely")
NEGATIVE_ADJECTIVES = ("bad", "poor", "awful", "weak", "flimsy", "terrible")
NEUTRAL_ADJECTIVES = ("ok", "fine")
POSITIVE_VERBS = ("love", "like")
NEGATIVE_VERBS = ("hate", "dislike")
ADVERBS = ("really", "very", "quite")
FILLERS = (
    "it arrived on time .",
    "i bought it last week .",
    "it came in a box .",
    "my friend has one too .",
)
POSITIVE_WORDS = frozenset(POSITIVE_ADJECTIVES + POSITIVE_VERBS)
NEGATIVE_WORDS = frozenset(NEGATIVE_ADJECTIVES + NEGATIVE_VERBS)

# Corpus mixture: how many sentences a review has, and which kind each sentence is.
SENTENCE_COUNT_WEIGHTS = (0.10, 0.22, 0.22, 0.16, 0.11, 0.08, 0.06, 0.05)  # 1..8 sentences
SENTENCE_KIND_WEIGHTS = {
    "product": 0.25,
    "aspect": 0.35,
    "verb": 0.15,
    "adverb": 0.10,
    "filler": 0.15,
}
MOODS = (0.15, 0.5, 0.85)  # probability that a sentiment-bearing sentence is positive


@dataclass
class ReviewWorld(PromptPoolWorld):
    """The review world; see the module docstring for the task and the gold reward."""

    target_length: int = 24
    request_share: float = 0.35  # chance an aspect sentence names the requested aspect
    repeat_probability: float = 0.25  # chance a corpus review repeats one of its sentences
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "request": 1.0,
            "sentiment": 1.0,
            "length": 1.0,
            "repetition": 1.0,
            "on_topic": 1.0,
        }  # fmt: skip
    )
    name: str = "reviews"

    @property
    def aspects(self) -> tuple[str, ...]:
        return tuple(self.weights)

    # ---- prompts -------------------------------------------------------------------------
    @staticmethod
    def prompt_for(product: str, aspect: str) -> str:
        return f"write a review of the {product} that mentions the {aspect} ."

    @staticmethod
    def parse_prompt(prompt: str) -> tuple[str, str]:
        """(product, aspect) named by a prompt of this world."""
        words = prompt.split()
        try:
            return words[words.index("of") + 2], words[words.index("mentions") + 2]
        except (ValueError, IndexError) as error:
            raise ValueError(f"not a prompt of the review world: {prompt!r}") from error

    @staticmethod
    def product_scope(
        in_scope: tuple[str, ...], near_scope: tuple[str, ...]
    ) -> Callable[[str], str]:
        """``in``, ``near`` or ``out`` for a prompt, by the product it names (C3PO's scope)."""

        def scope(prompt: str) -> str:
            product, _ = ReviewWorld.parse_prompt(prompt)
            if product in in_scope:
                return "in"
            return "near" if product in near_scope else "out"

        return scope

    @staticmethod
    def mentions_requested_aspect(prompt: str, words: list[str]) -> float:
        """1 if the response words name the aspect the prompt asks for (a VPL feature).

        Every prompt form of this world, shifted ones included, ends "... mentions the ASPECT .".
        """
        return float(prompt.split()[-2] in words)

    @staticmethod
    def split_of(product: str, aspect: str) -> str:
        """Every fourth (product, aspect) combination is held out as the test split."""
        index = PRODUCTS.index(product) * len(ASPECTS) + ASPECTS.index(aspect)
        return "test" if index % 4 == 0 else "train"

    def prompt_pool(self, split: str = "train") -> list[str]:
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        return [
            self.prompt_for(p, a)
            for p in PRODUCTS
            for a in ASPECTS
            if split == "all" or self.split_of(p, a) == split
        ]

    # ---- base corpus ---------------------------------------------------------------------
    def sample_review(self, prompt: str, rng: random.Random) -> str:
        """One review from the corpus mixture (varied mood, length, focus and repeats)."""
        product, aspect = self.parse_prompt(prompt)
        mood = rng.choice(MOODS)
        count = rng.choices(range(1, len(SENTENCE_COUNT_WEIGHTS) + 1), SENTENCE_COUNT_WEIGHTS)[0]
        kinds = rng.choices(
            list(SENTENCE_KIND_WEIGHTS), list(SENTENCE_KIND_WEIGHTS.values()), k=count
        )
        sentences = [self._sentence(kind, product, aspect, mood, rng) for kind in kinds]
        if len(sentences) > 1 and rng.random() < self.repeat_probability:
            position = rng.randrange(len(sentences))
            sentences.insert(position + 1, sentences[position])
        return " ".join(sentences)

    def _sentence(
        self, kind: str, product: str, aspect: str, mood: float, rng: random.Random
    ) -> str:
        positive = rng.random() < mood
        adjective = rng.choice(POSITIVE_ADJECTIVES if positive else NEGATIVE_ADJECTIVES)
        if rng.random() < 0.1:
            adjective = rng.choice(NEUTRAL_ADJECTIVES)
        topic = aspect if rng.random() < self.request_share else rng.choice(ASPECTS)
        if kind == "product":
            return f"the {product} is {adjective} ."
        if kind == "aspect":
            return f"the {topic} is {adjective} ."
        if kind == "verb":
            return f"i {rng.choice(POSITIVE_VERBS if positive else NEGATIVE_VERBS)} it ."
        if kind == "adverb":
            return f"{rng.choice(ADVERBS)} {adjective} {topic} ."
        return rng.choice(FILLERS)

    def respond(self, prompt: str, rng: random.Random) -> str:
        return self.sample_review(prompt, rng)

    # ---- gold reward ---------------------------------------------------------------------
    def gold_aspects(self, prompt: str, response: str) -> dict[str, float]:
        product, aspect = self.parse_prompt(prompt)
        words = response.split()
        positive = sum(word in POSITIVE_WORDS for word in words)
        negative = sum(word in NEGATIVE_WORDS for word in words)
        sentences = [s.strip() for s in response.split(".") if s.strip()]
        repeats = len(sentences) - len(set(sentences))
        other_products = set(PRODUCTS) - {product}
        off_topic = sum(bool(other_products.intersection(s.split())) for s in sentences)
        return {
            "request": float(aspect in words),
            "sentiment": (positive - negative) / (positive + negative)
            if positive + negative
            else 0.0,
            "length": max(-1.0, -abs(len(words) - self.target_length) / self.target_length),
            "repetition": -repeats / len(sentences) if sentences else 0.0,
            "on_topic": -off_topic / len(sentences) if sentences else 0.0,
        }

    def gold_reward(self, prompt: str, response: str) -> float:
        aspects = self.gold_aspects(prompt, response)
        return sum(self.weights[name] * value for name, value in aspects.items())
