"""What both sides of ``benchmarks/run.py`` share: the job file, step timing, the result line.

This module imports neither prefloop nor TRL, so the TRL side (run in its own virtual
environment) and the prefloop side read a job and report a result the same way.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def start_job() -> dict[str, Any]:
    """A side's start: the job file named by the first command-line argument, with the job's
    thread count set and transformers' logging quiet (the same on both sides)."""
    import torch
    import transformers

    job = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(job["threads"])
    transformers.logging.set_verbosity_error()
    return job


def read_pairs(job: dict[str, Any]) -> list[dict[str, str]]:
    return json.loads(Path(job["data"]).read_text())


class StepTimer:
    """Wall-clock time at the end of each optimisation step, and each step's loss."""

    def __init__(self) -> None:
        self.ends: list[float] = []
        self.losses: list[float] = []

    def step(self, loss: float | None = None) -> None:
        self.ends.append(time.perf_counter())
        if loss is not None:
            self.losses.append(loss)

    def steady_seconds(self) -> float:
        """Time of every step but the first (one-off warm-up) and the last (final saving)."""
        return self.ends[-2] - self.ends[0]


def report_training(
    job: dict[str, Any], timer: StepTimer, losses: list[float], **extra: Any
) -> None:
    """Steady-state tokens/s over the timed steps, and the first and last losses."""
    step_tokens = job["step_tokens"][: len(timer.ends)]
    seconds = timer.steady_seconds()
    report(sum(step_tokens[1:-1]) / seconds, first_loss=losses[0], last_loss=losses[-1],
           steps=len(timer.ends), **extra)  # fmt: skip


def report_online(timer: StepTimer, step_tokens: list[float], rewards: list[float]) -> None:
    """Completion tokens/s and steps/s over the steps but the first and the last, and the
    rewards of every step (an online step samples, judges and updates)."""
    seconds = timer.steady_seconds()
    report(sum(step_tokens[1:-1]) / seconds, steps_per_second=(len(timer.ends) - 2) / seconds,
           first_reward=rewards[0], last_reward=rewards[-1], rewards=rewards,
           steps=len(timer.ends))  # fmt: skip


def report(tokens_per_second: float, **extra: Any) -> None:
    """Print the one JSON line ``run.py`` reads, with this process's peak resident memory."""
    print(json.dumps({"tokens_per_second": tokens_per_second, "peak_rss_mib": peak_rss_mib(),
                      **extra}))  # fmt: skip


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB.

    Linux's ``VmHWM``, the high-water mark of this process's own memory: ``ru_maxrss`` is no
    good here, as a child started by fork + exec keeps its parent's high-water mark at the
    exec (the driver's memory then shows as the peak of both sides).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
