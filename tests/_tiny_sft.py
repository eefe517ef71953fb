"""A briefly supervised tiny policy and labelled pairs, shared by the trainer and lab tests."""

from __future__ import annotations

from pathlib import Path

from prefloop.data.records import Comparison
from prefloop.models.policy import Policy
from prefloop.train.engine import TrainConfig
from prefloop.train.sft import train_sft
from prefloop.worlds.annotators import BradleyTerryAnnotator
from prefloop.worlds.reviews import ReviewWorld


def sft_policy_dir(model_dir: Path, out: Path, world: ReviewWorld) -> Path:
    """SFT the untrained tiny model for a few dozen steps, so its samples look like reviews."""
    policy = Policy.from_pretrained(model_dir, device="cpu")
    config = TrainConfig(learning_rate=1e-2, batch_size=32, epochs=4)
    train_sft(policy, world.corpus(300, 0), config, out / "sft", show_progress=False)
    return out / "sft"


def labelled_pairs(policy: Policy, world: ReviewWorld, n: int, seed: int = 0) -> list[Comparison]:
    """Two samples per prompt, labelled by a Bradley–Terry annotator that reports strength."""
    prompts = world.prompts(n, seed)
    samples = policy.generate(prompts, num_samples=2, seed=seed, max_new_tokens=24)
    annotator = BradleyTerryAnnotator(world, seed=seed, report_strength=True)
    pairs = annotator.label_pairs([(p, a, b) for p, (a, b) in zip(prompts, samples)])
    return [c for c in pairs if c.chosen and c.rejected]  # saved records need non-empty text
