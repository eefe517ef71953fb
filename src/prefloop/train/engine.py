"""The one optimisation loop every method composes.

A method builds a :class:`Task` (a batch source, a loss over a micro-batch, the modules it
trains, how to save the result, and the settings its result depends on); :func:`fit` owns the
rest: accelerate underneath (device placement, data parallelism through ``accelerate launch``
or ``torchrun``, mixed precision; FSDP and DeepSpeed are refused for now), gradient
accumulation, the optimiser and schedule, checkpoints with exact resume, a settings check on
resume, stopping on a non-finite loss without touching the last good checkpoint, per-step
metrics as JSONL and a progress bar. Only the main process writes files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import get_linear_schedule_with_warmup

from prefloop.errors import RunDirectoryError, TrainingDivergedError
from prefloop.train.checkpoints import (
    CHECKPOINTS,
    METRICS_FILE,
    check_settings,
    checkpoint_name,
    latest_checkpoint,
    prepare_fresh_start,
    prune,
    write_settings,
)
from prefloop.train.config import ConfigError, setting, validate
from prefloop.train.sources import Batch, BatchSource, Shard, batch_indices

__all__ = [
    "BatchSource",
    "RunDirectoryError",
    "StepCallback",
    "Task",
    "TrainConfig",
    "TrainResult",
    "Trainable",
    "TrainingDivergedError",
    "batch_indices",
    "fit",
    "latest_checkpoint",
]

LossFn = Callable[[list[Any]], tuple[torch.Tensor, dict[str, float]]]
StepCallback = Callable[[int, dict[str, float]], None]
# accelerate warns that it drops tied weights when saving; they are restored on loading.
logging.getLogger("accelerate.utils.other").setLevel(logging.ERROR)
#: Sharded set-ups the engine refuses until its saving gathers their weights (see ``fit``).
SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED)
#: Settings that change how a run is logged or checkpointed, never its numbers.
BOOKKEEPING = ("checkpoint_every", "keep_checkpoints", "log_every")


@dataclass
class TrainConfig:
    """Optimisation settings shared by every method."""

    learning_rate: float = setting(
        1e-3, "Peak learning rate (AdamW, linear warm-up and decay).", low=0, low_open=True
    )
    batch_size: int = setting(
        32, "Examples per optimisation step, over all processes and accumulation.", low=1
    )
    gradient_accumulation: int = setting(
        1, "Micro-batches per step on each process (less memory, same result).", low=1
    )
    epochs: float = setting(1.0, "Passes over the training data.", low=0, low_open=True)
    max_steps: int | None = setting(None, "Stop after this many steps (overrides epochs).", low=1)
    warmup_ratio: float = setting(0.1, "Share of the steps spent warming up.", low=0, high=1)
    weight_decay: float = setting(0.0, "AdamW weight decay.", low=0)
    max_grad_norm: float = setting(1.0, "Gradient-norm clip.", low=0, low_open=True)
    seed: int = setting(0, "Random seed; the same seed gives the same numbers.")
    mixed_precision: str = setting(
        "auto",
        "auto (bf16 on a GPU, fp32 on a CPU), no, bf16 or fp16.",
        choices=("auto", "no", "bf16", "fp16"),
    )
    gradient_checkpointing: bool = setting(
        False, "Recompute activations during backward to save memory."
    )
    checkpoint_every: int = setting(0, "Steps between checkpoints (0: the final one only).", low=0)
    keep_checkpoints: int = setting(2, "Complete checkpoints kept.", low=1)
    log_every: int = setting(10, "Steps between metrics records.", low=1)

    def __post_init__(self) -> None:
        validate(self, "training settings")

    def total_steps(self, num_examples: int | None) -> int:
        if self.max_steps is not None:
            return self.max_steps
        if num_examples is None:
            raise ValueError("an endless batch source needs max_steps")
        return max(1, math.ceil(self.epochs * math.ceil(num_examples / self.batch_size)))

    def result_settings(self) -> dict[str, Any]:
        """The settings a run's numbers depend on (checked when resuming)."""
        return {k: v for k, v in asdict(self).items() if k not in BOOKKEEPING}


@dataclass
class Trainable:
    """A module a task trains, held at ``owner.attribute``.

    While training, the engine puts accelerate's prepared module (a DDP/FSDP wrapper when
    distributed) at that attribute, so the owner's own methods run through it; afterwards the
    plain module is put back.
    """

    owner: Any
    attribute: str = "model"

    @property
    def module(self) -> torch.nn.Module:
        return getattr(self.owner, self.attribute)


def checkpoint_activations(module: torch.nn.Module) -> None:
    """Recompute a transformers model's layer activations in backward instead of keeping them.

    transformers 5 names it activation checkpointing (the old name warns and goes in v6); a
    module that is not a transformers model (a scalar head) keeps its activations."""
    enable = getattr(module, "activation_checkpointing_enable", None) or getattr(
        module, "gradient_checkpointing_enable", None
    )
    if enable is not None:
        enable({"use_reentrant": False})


@dataclass
class Task:
    """What one training run optimises; built by a method's recipe, run by :func:`fit`."""

    name: str
    source: BatchSource
    loss: LossFn
    trainables: Sequence[Trainable]
    save: Callable[[Path], None]
    settings: dict[str, Any] = field(default_factory=dict)
    #: ``setup(out_dir, write)`` runs once the run directory is settled, before training
    #: (e.g. cached reference log-probs; ``write`` is False on all but the main process).
    setup: Callable[[Path, bool], None] | None = None


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    seconds: float
    examples_per_second: float
    checkpoint: Path | None


class _Progress:
    """The step counter, checkpointed with the model through accelerate."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.step = int(state["step"])


def resolve_precision(choice: str) -> str:
    """``auto`` is bf16 on a CUDA GPU that supports it, full precision elsewhere."""
    if choice != "auto":
        return choice
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def make_accelerator(mixed_precision: str) -> Accelerator:
    """An accelerator for one run, its settings read afresh (the process group is kept)."""
    AcceleratorState._reset_state(reset_partial_state=False)
    on_cpu = not torch.cuda.is_available()  # also makes torchrun on CPUs a gloo process group
    return Accelerator(cpu=on_cpu, mixed_precision=resolve_precision(mixed_precision))


def launch_record(accelerator: Accelerator, config: TrainConfig) -> dict[str, Any]:
    """How the run was launched, for ``run_config.json``."""
    processes = accelerator.num_processes
    return {
        "processes": processes,
        "distributed_type": str(accelerator.distributed_type).split(".")[-1],
        "backend": accelerator.state.backend,
        "device": str(accelerator.device),
        "mixed_precision": accelerator.mixed_precision,
        "global_batch": config.batch_size,
        "gradient_accumulation": config.gradient_accumulation,
        "per_device_micro_batch": math.ceil(
            config.batch_size / (processes * config.gradient_accumulation)
        ),
    }


def _micro_batches(batch: Batch, parts: int) -> list[list[Any]]:
    chunks = np.array_split(np.arange(len(batch.items)), min(parts, len(batch.items)))
    return [[batch.items[i] for i in chunk] for chunk in chunks]


def _diverged(name: str, what: str, value: torch.Tensor, step: int, out_dir: Path):
    last = latest_checkpoint(out_dir) or "none written yet"
    raise TrainingDivergedError(
        f"{name}: {what} became {value.item()} at step {step}; training stopped. "
        f"Last good checkpoint: {last}"
    )


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop records logged after ``step``, so a resumed run's log reads as one history."""
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in kept))


def fit(
    task: Task,
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    callbacks: Sequence[StepCallback] = (),
    show_progress: bool = True,
    record: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``task`` into ``out_dir``; see the module docstring.

    ``resume`` continues from the last complete checkpoint (refusing other settings);
    without it a directory that holds another run is refused unless ``overwrite``, which
    deletes that run's checkpoints, metrics and caches first. ``record`` adds caller facts
    (command, paths) to ``run_config.json``.
    """
    from prefloop.eval.report import write_run_config

    out_dir = Path(out_dir)
    accelerator = make_accelerator(config.mixed_precision)
    if accelerator.distributed_type in SHARDED:
        raise ConfigError(
            f"{accelerator.distributed_type.value} is not supported yet: saving the final model "
            "does not gather sharded weights, and it has not been run on GPUs. Use data "
            "parallelism (examples/accelerate/ddp.yaml, or torchrun) instead."
        )
    main = accelerator.is_main_process
    settings = {"task": task.name, **task.settings, "train": config.result_settings()}
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        check_settings(checkpoint, settings)
    else:
        prepare_fresh_start(out_dir, overwrite, delete=main)
        out_dir.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    if main:
        launch = launch_record(accelerator, config)
        write_run_config(out_dir, {**(record or {}), "settings": settings, "launch": launch})
    if task.setup is not None:  # the main process writes caches the others then read
        if main:
            task.setup(out_dir, True)
        accelerator.wait_for_everyone()
        if not main:
            task.setup(out_dir, False)

    total = config.total_steps(task.source.examples)
    modules = [t.module for t in task.trainables]
    if config.gradient_checkpointing:
        for module in modules:
            checkpoint_activations(module)
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    # one fused kernel over all parameters (about a third of the per-parameter loop's time on CPU)
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate,
                                  weight_decay=config.weight_decay, fused=fused)  # fmt: skip
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total), total)
    if checkpoint is None:  # a fresh start, also when --resume finds no checkpoint yet
        torch.manual_seed(config.seed)
    *prepared, optimizer = accelerator.prepare(*modules, optimizer)
    progress_state = _Progress()
    for stateful in (scheduler, progress_state, task.source):
        accelerator.register_for_checkpointing(stateful)
    for trainable, module in zip(task.trainables, prepared):
        setattr(trainable.owner, trainable.attribute, module)
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        if main:
            _truncate_metrics(out_dir / METRICS_FILE, progress_state.step)
    elif main:
        (out_dir / METRICS_FILE).unlink(missing_ok=True)
    try:
        result = _loop(task, config, out_dir, accelerator, optimizer, scheduler, prepared,
                       progress_state, total, settings, callbacks,
                       show_progress and main)  # fmt: skip
    finally:
        for trainable, module in zip(task.trainables, prepared):
            setattr(trainable.owner, trainable.attribute, accelerator.unwrap_model(module))
        accelerator.free_memory()
    if main:
        task.save(out_dir)
    accelerator.wait_for_everyone()
    return result


def _loop(
    task: Task,
    config: TrainConfig,
    out_dir: Path,
    accelerator: Accelerator,
    optimizer,
    scheduler,
    prepared: list[torch.nn.Module],
    progress_state: _Progress,
    total: int,
    settings: dict[str, Any],
    callbacks: Sequence[StepCallback],
    show_progress: bool,
) -> TrainResult:
    main = accelerator.is_main_process
    shard = Shard(accelerator.process_index, accelerator.num_processes)
    params = [p for m in prepared for p in m.parameters() if p.requires_grad]
    for module in prepared:
        module.train()
    started, seen, loss_value = time.perf_counter(), 0, float("nan")
    step, checkpoint = progress_state.step, latest_checkpoint(out_dir)  # a finished run: as is
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    log = open(out_dir / METRICS_FILE, "a") if main else contextlib.nullcontext()  # noqa: SIM115
    with Progress(*columns, disable=not show_progress, transient=True) as progress, log:
        bar = progress.add_task(task.name, total=total, completed=progress_state.step, loss=0.0)
        while progress_state.step < total:
            step = progress_state.step
            batch = task.source.batch(step, shard)
            loss_sum, metrics = _accumulate(task, batch, config, accelerator, prepared)
            loss_total = accelerator.reduce(loss_sum, reduction="sum")
            if not torch.isfinite(loss_total):
                _diverged(task.name, "loss", loss_total, step + 1, out_dir)
            grad_norm = accelerator.clip_grad_norm_(params, config.max_grad_norm)
            if not torch.isfinite(grad_norm):
                _diverged(task.name, "gradient norm", grad_norm, step + 1, out_dir)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress_state.step = step = step + 1
            seen += batch.global_size
            loss_value = loss_total.item()
            record = {"step": step, "loss": loss_value, "lr": scheduler.get_last_lr()[0],
                      "grad_norm": grad_norm.item(), **metrics}  # fmt: skip
            if main and (step % config.log_every == 0 or step == total):
                log.write(json.dumps(record) + "\n")
                log.flush()
            progress.update(bar, completed=step, loss=loss_value)
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or step == total:
                checkpoint = _save_checkpoint(accelerator, out_dir, step, settings, config)
            for callback in callbacks:
                callback(step, record)
    seconds = time.perf_counter() - started
    return TrainResult(step, loss_value, seconds, seen / seconds if seconds else 0.0, checkpoint)


def _accumulate(
    task: Task,
    batch: Batch,
    config: TrainConfig,
    accelerator: Accelerator,
    prepared: list[torch.nn.Module],
) -> tuple[torch.Tensor, dict[str, float]]:
    """Backward over this process's micro-batches; returns its share of the global mean loss.

    Each micro-batch's mean loss is weighted by its share of the global batch (times the
    number of processes, which data parallelism averages over), so any split of the same
    global batch gives the same gradient. Gradients are synchronised on the last micro-batch.
    """
    parts = _micro_batches(batch, config.gradient_accumulation)
    loss_sum = torch.zeros((), device=accelerator.device)
    totals: dict[str, float] = {}
    for i, items in enumerate(parts):
        weight = 0.0 if batch.padded else len(items) / batch.global_size
        with contextlib.ExitStack() as sync:
            if i < len(parts) - 1:
                for module in prepared:
                    sync.enter_context(accelerator.no_sync(module))
            loss, metrics = task.loss(items)
            accelerator.backward(loss * weight * accelerator.num_processes)
        loss_sum = loss_sum + loss.detach() * weight
        share = len(items) / len(batch.items)
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value * share
    return loss_sum, totals


def _save_checkpoint(
    accelerator: Accelerator,
    out_dir: Path,
    step: int,
    settings: dict[str, Any],
    config: TrainConfig,
) -> Path:
    """Write ``step-N.partial`` on every process, then rename it complete (main process)."""
    final = out_dir / CHECKPOINTS / checkpoint_name(step)
    partial = final.with_name(final.name + ".partial")
    if accelerator.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)  # left by a kill mid-write
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    if accelerator.is_main_process:
        write_settings(partial, settings)
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)  # a checkpoint exists only once it is complete
        prune(out_dir, config.keep_checkpoints)
    accelerator.wait_for_everyone()
    return final
