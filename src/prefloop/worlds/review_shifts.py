"""Evaluation data for reward models on the review world: in-distribution pairs, two shifts,
one-to-many groups and contrast pairs, all labelled exactly by the gold reward.

Every text uses only words of the review world's vocabulary, so the tiny word tokenizer covers
it (no ``<unk>``):

* **prompt-family shift**: ``i bought the {product} . write a review that mentions the
  {aspect} .`` instead of ``write a review of the {product} that mentions the {aspect} .``;
  the gold reward is that of the canonical prompt with the same product and aspect;
* **response-style shift**: the same facts in another template and order: ``the X is good .``
  becomes ``good X .`` and the sentences are reversed (gold is computed on the new text);
* **one-to-many** (RewardMATH): one response that beats several others by a clear gold margin;
* **contrast pairs** (Shen et al.): two prompts that differ in the requested aspect only, and two
  responses that differ only in which of the two aspects they mention; each response is correct
  for its own prompt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from prefloop.data.records import Comparison
from prefloop.worlds.annotators import BradleyTerryAnnotator
from prefloop.worlds.reviews import ASPECTS, POSITIVE_ADJECTIVES, ReviewWorld

Sampler = Callable[[list[str], int], list[list[str]]]  # (prompts, k) -> k responses per prompt


def shifted_prompt(prompt: str) -> str:
    """The same request in another prompt family."""
    product, aspect = ReviewWorld.parse_prompt(prompt)
    return f"i bought the {product} . write a review that mentions the {aspect} ."


def restyle_response(response: str) -> str:
    """Same facts, other template: ``the X is ADJ .`` → ``ADJ X .``, sentences reversed."""
    sentences = [s.strip() for s in response.split(".") if s.strip()]
    restyled = []
    for sentence in reversed(sentences):
        words = sentence.split()
        if len(words) == 4 and words[0] == "the" and words[2] == "is":
            words = [words[3], words[1]]
        restyled.append(" ".join(words) + " .")
    return " ".join(restyled)


@dataclass
class ContrastPair:
    """Prompts I1, I2 and responses r1, r2 where r_i is the correct response to I_i."""

    prompt_1: str
    prompt_2: str
    response_1: str
    response_2: str


@dataclass
class OneToMany:
    prompt: str
    chosen: str
    rejected: list[str]


@dataclass
class RMEvalSuite:
    """Everything ``evaluate_rm_suite`` measures, labelled by the gold reward."""

    pairs: list[Comparison]
    ood: dict[str, list[Comparison]]
    one_to_many: list[OneToMany]
    contrast: list[ContrastPair]
    calibration: list[Comparison]


def gold_pairs(
    world: ReviewWorld, prompts: list[str], responses: list[list[str]], min_gap: float
) -> list[Comparison]:
    """Consecutive samples of each prompt as pairs, ordered by gold; near ties are dropped."""
    pairs = []
    for prompt, samples in zip(prompts, responses):
        for a, b in zip(samples[::2], samples[1::2]):
            gap = world.gold_reward(prompt, a) - world.gold_reward(prompt, b)
            if abs(gap) >= min_gap:
                chosen, rejected = (a, b) if gap > 0 else (b, a)
                pairs.append(Comparison(prompt, chosen, rejected, margin=abs(gap)))
    return pairs


def contrast_pairs(world: ReviewWorld, n: int, seed: int) -> list[ContrastPair]:
    """``n`` contrast pairs: same product and response template, two different aspects."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt_1 = rng.choice(world.prompt_pool("test"))
        product, aspect_1 = world.parse_prompt(prompt_1)
        aspect_2 = rng.choice([a for a in ASPECTS if a != aspect_1])
        adjective, other = rng.choice(POSITIVE_ADJECTIVES), rng.choice(POSITIVE_ADJECTIVES)
        template = f"the {product} is {adjective} . the {{}} is {other} . i like it ."
        out.append(ContrastPair(prompt_1, world.prompt_for(product, aspect_2),
                                template.format(aspect_1), template.format(aspect_2)))  # fmt: skip
    return out


def one_to_many_groups(
    world: ReviewWorld, prompts: list[str], responses: list[list[str]], margin: float
) -> list[OneToMany]:
    """The gold-best sample against every sample at least ``margin`` below it (≥ 2 of them)."""
    groups = []
    for prompt, samples in zip(prompts, responses):
        golds = [world.gold_reward(prompt, r) for r in samples]
        best = max(range(len(samples)), key=golds.__getitem__)
        rejected = [r for r, g in zip(samples, golds) if g <= golds[best] - margin]
        if len(rejected) >= 2:
            groups.append(OneToMany(prompt, samples[best], rejected))
    return groups


def corpus_sampler(world: ReviewWorld, seed: int) -> Sampler:
    """Responses from the world's base corpus mixture (what an SFT policy imitates)."""
    rng = random.Random(seed)
    return lambda prompts, k: [[world.sample_review(p, rng) for _ in range(k)] for p in prompts]


def build_review_suite(
    world: ReviewWorld,
    sampler: Sampler | None = None,
    prompts: int = 200,
    seed: int = 0,
    min_gap: float = 0.1,
    group_size: int = 8,
    temperature: float = 0.5,
) -> RMEvalSuite:
    """The review world's RM evaluation suite on held-out (test-split) prompts.

    ``sampler`` draws the responses (default: the base corpus); OOD splits use fresh samples of
    the same prompts. Calibration pairs are labelled by a Bradley–Terry annotator at
    ``temperature`` (the lab's default teacher), so σ(r_a − r_b) has a true frequency to match.
    """
    sampler = sampler or corpus_sampler(world, seed)
    shown = world.prompts(prompts, seed, split="test")
    in_dist = gold_pairs(world, shown, sampler(shown, 2), min_gap)
    fresh = gold_pairs(world, shown, sampler(shown, 2), min_gap)
    prompt_shift = [
        Comparison(shifted_prompt(c.prompt), c.chosen, c.rejected, margin=c.margin) for c in fresh
    ]
    styled = [[restyle_response(r) for r in pair] for pair in sampler(shown, 2)]
    response_shift = gold_pairs(world, shown, styled, min_gap)
    group_prompts = shown[: max(1, prompts // 4)]
    groups = one_to_many_groups(world, group_prompts, sampler(group_prompts, group_size), min_gap)
    annotator = BradleyTerryAnnotator(world, temperature, seed=seed + 2)
    calibration = annotator.label_pairs([(p, a, b) for p, (a, b) in zip(shown, sampler(shown, 2))])
    return RMEvalSuite(
        pairs=in_dist,
        ood={"prompt_family": prompt_shift, "response_style": response_shift},
        one_to_many=groups,
        contrast=contrast_pairs(world, max(1, prompts // 4), seed + 1),
        calibration=calibration,
    )
