"""Shared fixtures: one tiny model directory per test session, built offline."""

from __future__ import annotations

import pytest
import torch
import transformers
from rich.console import Console

from prefloop.data.io import save_records
from prefloop.models.factory import TinyModelSpec, build_tiny_model
from prefloop.worlds.annotators import BradleyTerryAnnotator
from prefloop.worlds.reviews import ReviewWorld

torch.set_num_threads(2)
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()


@pytest.fixture(scope="session")
def world() -> ReviewWorld:
    return ReviewWorld()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, world):
    """An untrained tiny Llama + word tokenizer covering the review world's vocabulary."""
    texts = [r for _, r in world.corpus(300, 0)] + world.prompt_pool("all")
    spec = TinyModelSpec(hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    return build_tiny_model(texts, tmp_path_factory.mktemp("tiny"), spec, seed=0)


@pytest.fixture
def console() -> Console:
    """A rich console that prints nothing, for the labs' progress output."""
    return Console(quiet=True)


@pytest.fixture(scope="session")
def pair_files(tmp_path_factory, world):
    """48 labelled comparisons of corpus reviews as JSONL, Parquet and an HF dataset dir."""
    corpus = world.corpus(96, seed=5)
    annotator = BradleyTerryAnnotator(world, temperature=0.5, seed=0)
    comparisons = annotator.label_pairs(
        [(p, r, other) for (p, r), (_, other) in zip(corpus[::2], corpus[1::2])]
    )
    root = tmp_path_factory.mktemp("pairs")
    return {
        "jsonl": save_records(comparisons, root / "pairs.jsonl"),
        "parquet": save_records(comparisons, root / "pairs.parquet"),
        "hf": save_records(comparisons, root / "pairs_dataset", format="hf"),
    }
