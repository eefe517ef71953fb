"""prefloop's side of ``benchmarks/run.py``: one job (DPO, reward model or sampling)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench_common import (
    StepTimer,
    read_pairs,
    report,
    report_online,
    report_training,
    start_job,
)

from prefloop.data.records import Comparison
from prefloop.models.policy import Policy
from prefloop.models.reward import RewardModel
from prefloop.online.generator import TransformersGenerator
from prefloop.online.methods import OnlineRun, online_task
from prefloop.online.policy_gradient import GRPOConfig
from prefloop.online.reward_functions import FunctionJudge, load_reward_function
from prefloop.online.rollout import Decoding
from prefloop.train.engine import TrainConfig, fit
from prefloop.train.preference import train_preference
from prefloop.train.reward_model import train_reward_model


def grpo(job: dict) -> None:
    """GRPO on the verifiable world: every step samples, scores with the checker, updates."""
    settings = GRPOConfig.for_loss_type(
        job["loss_type"], rollout_prompts=job["rollout_prompts"], samples_per_prompt=job["samples"],
        max_new_tokens=job["max_new_tokens"], temperature=job["temperature"], beta=job["beta"],
        eps_low=job["epsilon"], generator="transformers",
    )  # fmt: skip
    judge = FunctionJudge([load_reward_function(job["reward"])])
    config = TrainConfig(learning_rate=job["learning_rate"], max_steps=job["steps"],
                         batch_size=job["rollout_prompts"] * job["samples"], warmup_ratio=0.0,
                         log_every=1, seed=job["seed"])  # fmt: skip
    timer = StepTimer()
    records: list[dict] = []

    def on_step(step: int, record: dict[str, float]) -> None:
        timer.step()
        records.append(record)

    with tempfile.TemporaryDirectory() as tmp:
        run = OnlineRun(Path(job["model_dir"]), job["prompts"], judge)
        _, task = online_task(settings, run, config)
        fit(task, config, tmp, show_progress=False, callbacks=[on_step])
    samples = job["rollout_prompts"] * job["samples"]
    report_online(timer, [r["completion_length"] * samples for r in records],
                  [r["reward"] for r in records])  # fmt: skip


def main() -> None:
    job = start_job()
    if job["workload"] == "grpo":
        return grpo(job)
    pairs = read_pairs(job)
    if job["workload"] == "sample":  # the online methods' generator (prompt encoded once)
        policy = Policy.from_pretrained(job["model_dir"])
        prompts = [p["prompt"] for p in pairs]
        generator = TransformersGenerator(prompt_batch=job["batch_size"])
        generator.generate(policy, prompts[: job["batch_size"]], 1, Decoding(max_new_tokens=2), 0)
        started = time.perf_counter()
        decoding = Decoding(max_new_tokens=job["max_new_tokens"])
        rollout = generator.generate(policy, prompts, job["samples"], decoding, seed=0)
        seconds = time.perf_counter() - started
        tokens = sum(rollout.lengths)  # an EOS that ended a sample is one of its tokens
        report(tokens / seconds, new_tokens=tokens)
        return
    comparisons = [Comparison(p["prompt"], p["chosen"], p["rejected"]) for p in pairs]
    config = TrainConfig(learning_rate=job["learning_rate"], batch_size=job["batch_size"],
                         epochs=1, warmup_ratio=job["warmup_ratio"], log_every=1000,
                         seed=job["seed"])  # fmt: skip
    timer = StepTimer()
    losses: list[float] = []

    def on_step(step: int, record: dict[str, float]) -> None:
        timer.step()
        losses.append(record["loss"])

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if job["workload"] == "dpo":
            policy = Policy.from_pretrained(job["model_dir"])
            train_preference(policy, comparisons, config, tmp, show_progress=False,
                             callbacks=[on_step])  # fmt: skip
        else:
            reward_model = RewardModel.from_pretrained(job["model_dir"], seed=job["seed"])
            train_reward_model(reward_model, comparisons, config, tmp, show_progress=False,
                               callbacks=[on_step])  # fmt: skip
    # the whole call: reference pass, every step and the final checkpoint
    report_training(job, timer, losses, wall_seconds=time.perf_counter() - started)


if __name__ == "__main__":
    main()
