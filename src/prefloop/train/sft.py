"""Supervised fine-tuning: maximise the likelihood of response tokens given their prompts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from prefloop.data.records import Prompt
from prefloop.models.policy import Policy
from prefloop.train.engine import StepCallback, TrainConfig, TrainResult, run_training


def train_sft(
    policy: Policy,
    examples: Sequence[tuple[Prompt, str]],
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    show_progress: bool = True,
    callbacks: Sequence[StepCallback] = (),
) -> TrainResult:
    """Token-averaged negative log-likelihood of each batch's response tokens (prompt masked)."""

    def loss_fn(indices: Sequence[int]):
        batch = policy.encode([examples[i][0] for i in indices], [examples[i][1] for i in indices])
        token_logps = policy.token_logps(batch)
        tokens = batch.response_mask[:, 1:].sum()
        return -token_logps.sum() / tokens, {"tokens": float(tokens)}

    return run_training(
        policy.model,
        len(examples),
        loss_fn,
        config,
        out_dir,
        policy.save_pretrained,
        resume=resume,
        description="SFT",
        show_progress=show_progress,
        callbacks=callbacks,
    )
