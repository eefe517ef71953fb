"""Steps shared by the lab's experiments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from rich.console import Console

from prefloop.eval.report import write_run_config
from prefloop.models.factory import TinyModelSpec, build_tiny_model
from prefloop.models.policy import Policy
from prefloop.train.engine import TrainConfig, TrainResult
from prefloop.train.sft import train_sft
from prefloop.worlds.base import World
from prefloop.worlds.reviews import ReviewWorld


@dataclass
class BasePolicySetup:
    """The start of every lab experiment: a tiny model SFT-trained on the world's corpus.

    The defaults learn the review world's corpus in well under a minute on 2 CPU cores;
    ``fast`` halves the corpus.
    """

    corpus_size: int = 4000
    model: TinyModelSpec = field(default_factory=TinyModelSpec)
    sft: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-2, batch_size=64, epochs=8)
    )

    @classmethod
    def fast(cls) -> BasePolicySetup:
        return cls(corpus_size=2000)


def prepare_sft_policy(
    world: World, setup: BasePolicySetup, out_dir: Path, seed: int, extra_texts: Sequence[str] = ()
) -> tuple[Policy, TrainResult]:
    """Build a tiny model for ``world`` in ``out_dir/base`` and SFT it into ``out_dir/sft``;
    ``extra_texts`` only add words to the tokenizer's vocabulary."""
    config = replace(setup.sft, seed=seed)
    corpus = world.corpus(setup.corpus_size, seed)
    vocabulary_texts = [r for _, r in corpus] + world.prompt_pool("all") + list(extra_texts)
    base_dir = build_tiny_model(vocabulary_texts, out_dir / "base", setup.model, seed)
    policy = Policy.from_pretrained(base_dir)
    result = train_sft(policy, corpus, config, out_dir / "sft", overwrite=True)
    return policy, result


def start_review_lab(config, out: Path, console: Console, step: str) -> tuple[ReviewWorld, Policy]:
    """A review-world lab's first step: two threads, ``run_config.json``, the SFT policy.

    ``config`` is the lab's dataclass (with ``base`` and ``seed``); ``step`` labels the
    progress rule, e.g. "1/3".
    """
    torch.set_num_threads(min(2, torch.get_num_threads()))
    world = ReviewWorld()
    write_run_config(out, asdict(config))
    console.rule(f"{step} tiny model + SFT")
    policy, _ = prepare_sft_policy(world, config.base, out, config.seed)
    return world, policy
