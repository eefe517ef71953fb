"""Supervised fine-tuning: maximise the likelihood of response tokens given their prompts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefloop.data.records import Prompt
from prefloop.models.policy import Policy
from prefloop.objectives import response_nll
from prefloop.train.caches import data_fingerprint
from prefloop.train.engine import Task, Trainable, TrainConfig, TrainResult, fit
from prefloop.train.sources import IndexSource


def sft_task(policy: Policy, examples: Sequence[tuple[Prompt, str]], config: TrainConfig) -> Task:
    """Token-averaged NLL of each batch's response tokens (prompt masked)."""

    def loss(indices: list[int]):
        batch = policy.encode([examples[i][0] for i in indices], [examples[i][1] for i in indices])
        mask = batch.response_mask[:, 1:].to(policy.device)
        return response_nll(policy.token_logps(batch), mask), {"tokens": float(mask.sum())}

    return Task(
        "sft",
        IndexSource(len(examples), config.batch_size, config.seed),
        loss,
        [Trainable(policy)],
        policy.save_pretrained,
        {"data": data_fingerprint(examples)},
    )


def train_sft(
    policy: Policy,
    examples: Sequence[tuple[Prompt, str]],
    config: TrainConfig,
    out_dir: str | Path,
    **run: Any,
) -> TrainResult:
    """SFT ``policy`` on (prompt, response) examples; ``run`` goes to :func:`fit`."""
    return fit(sft_task(policy, examples, config), config, out_dir, **run)
