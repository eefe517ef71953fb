"""The one optimisation loop every trainer composes.

A trainer supplies ``loss_fn(example_indices) -> (loss, metrics)``; the engine owns batching,
the optimiser and schedule, periodic checkpoints (model + optimiser + scheduler + step + RNG),
resuming from the last checkpoint with results identical to an uninterrupted run, stopping on a
non-finite loss without overwriting the last good checkpoint, per-step metrics as JSONL, and a
progress bar.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from safetensors.torch import load_model
from transformers import get_linear_schedule_with_warmup

LossFn = Callable[[Sequence[int]], tuple[torch.Tensor, dict[str, float]]]
StepCallback = Callable[[int, dict[str, float]], None]
CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"


class TrainingDivergedError(RuntimeError):
    """The loss or gradient became NaN/inf; the last good checkpoint is left untouched."""


@dataclass
class TrainConfig:
    """Optimisation settings shared by all trainers."""

    learning_rate: float = 1e-3
    batch_size: int = 32
    epochs: float = 1.0
    max_steps: int | None = None
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    checkpoint_every: int = 0  # steps between checkpoints; 0 = only the final one
    keep_checkpoints: int = 2
    log_every: int = 10

    def total_steps(self, num_examples: int) -> int:
        if self.max_steps is not None:
            return self.max_steps
        return max(1, math.ceil(self.epochs * math.ceil(num_examples / self.batch_size)))


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    seconds: float
    examples_per_second: float
    checkpoint: Path | None


def batch_indices(num_examples: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Example indices of ``step``: a fresh seeded permutation per epoch, so resuming is exact."""
    per_epoch = math.ceil(num_examples / batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return order[position * batch_size : (position + 1) * batch_size].tolist()


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = sorted(Path(out_dir, CHECKPOINTS).glob("step-*"))
    return found[-1] if found else None


def _save_checkpoint(
    out_dir: Path,
    step: int,
    save_model: Callable[[Path], None],
    optimizer: torch.optim.Optimizer,
    scheduler,
    keep: int,
) -> Path:
    final = out_dir / CHECKPOINTS / f"step-{step:07d}"
    partial = final.with_name(final.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_model(partial)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    torch.save(state, partial / STATE_FILE)
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)  # a checkpoint exists only once it is complete
    for old in sorted((out_dir / CHECKPOINTS).glob("step-*"))[:-keep]:
        if old.suffix != ".partial":
            shutil.rmtree(old)
    return final


def _restore_checkpoint(checkpoint: Path, model: torch.nn.Module, optimizer, scheduler) -> int:
    missing, unexpected = load_model(model, checkpoint / "model.safetensors", strict=False)
    tied = {name for name, p in model.named_parameters(remove_duplicate=False)} - {
        name for name, _ in model.named_parameters()
    }
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"checkpoint {checkpoint} does not match the model: missing {missing}")
    state = torch.load(checkpoint / STATE_FILE, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after ``step``, so a resumed run's log reads as one history."""
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


def _diverged(description: str, what: str, value: torch.Tensor, step: int, out_dir: Path):
    last = latest_checkpoint(out_dir) or "none written yet"
    raise TrainingDivergedError(
        f"{description}: {what} became {value.item()} at step {step}; training stopped. "
        f"Last good checkpoint: {last}"
    )


def run_training(
    model: torch.nn.Module,
    num_examples: int,
    loss_fn: LossFn,
    config: TrainConfig,
    out_dir: str | Path,
    save_model: Callable[[Path], None],
    resume: bool = False,
    description: str = "train",
    callbacks: Sequence[StepCallback] = (),
    show_progress: bool = True,
) -> TrainResult:
    """Optimise ``model`` with ``loss_fn`` over ``num_examples`` examples; see module docstring."""
    if num_examples == 0:
        raise ValueError("no training examples")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = config.total_steps(num_examples)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    step = 0
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        step = _restore_checkpoint(checkpoint, model, optimizer, scheduler)
        _truncate_metrics(out_dir / "metrics.jsonl", step)
    else:  # a fresh start, also when --resume finds no checkpoint yet
        torch.manual_seed(config.seed)
        (out_dir / "metrics.jsonl").unlink(missing_ok=True)
    model.train()
    started, seen, loss_value = time.perf_counter(), 0, float("nan")
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with (
        Progress(*columns, disable=not show_progress, transient=True) as progress,
        open(out_dir / "metrics.jsonl", "a") as log,
    ):
        task = progress.add_task(description, total=total, completed=step, loss=float("nan"))
        while step < total:
            indices = batch_indices(num_examples, config.batch_size, step, config.seed)
            loss, metrics = loss_fn(indices)
            if not torch.isfinite(loss):
                _diverged(description, "loss", loss, step + 1, out_dir)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            if not torch.isfinite(grad_norm):
                _diverged(description, "gradient norm", grad_norm, step + 1, out_dir)
            optimizer.step()
            scheduler.step()
            step += 1
            seen += len(indices)
            loss_value = loss.item()
            record = {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                      "grad_norm": grad_norm.item(), **metrics}  # fmt: skip
            if step % config.log_every == 0 or step == total:
                log.write(json.dumps(record) + "\n")
                log.flush()
            progress.update(task, completed=step, loss=loss_value)
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == total:
                checkpoint = _save_checkpoint(
                    out_dir, step, save_model, optimizer, scheduler, config.keep_checkpoints
                )
            for callback in callbacks:
                callback(step, record)
    seconds = time.perf_counter() - started
    return TrainResult(step, loss_value, seconds, seen / seconds if seconds else 0.0, checkpoint)
