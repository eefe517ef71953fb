"""Steps shared by the lab's experiments."""

from __future__ import annotations

from pathlib import Path

from prefloop.models.factory import TinyModelSpec, build_tiny_model
from prefloop.models.policy import Policy
from prefloop.train.engine import TrainConfig, TrainResult
from prefloop.train.sft import train_sft
from prefloop.worlds.base import World


def prepare_sft_policy(
    world: World, corpus_size: int, spec: TinyModelSpec, config: TrainConfig, out_dir: Path
) -> tuple[Policy, TrainResult]:
    """Build a tiny model for ``world`` in ``out_dir/base`` and SFT it into ``out_dir/sft``."""
    corpus = world.corpus(corpus_size, config.seed)
    vocabulary_texts = [r for _, r in corpus] + world.prompt_pool("all")
    policy = Policy.from_pretrained(
        build_tiny_model(vocabulary_texts, out_dir / "base", spec, config.seed)
    )
    result = train_sft(policy, corpus, config, out_dir / "sft")
    policy.save_pretrained(out_dir / "sft")
    return policy, result
