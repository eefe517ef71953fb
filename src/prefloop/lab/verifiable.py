"""GRPO and its relatives on the verifiable-reward world: pass@k, length and KL, measured.

From one SFT model on column addition (prefloop.worlds.arithmetic), ``grpo``, ``dr_grpo``,
``dapo``, ``rloo`` and ``reinforce++`` train on the exact checker's reward (the TRL-style
``correctness_reward`` function). Each is evaluated on held-out tasks: pass@1 and pass@k, the
completions' mean length (Dr. GRPO's claim is that GRPO's per-sequence normalisation biases
length; the trend along training is read off each run's metrics) and the KL from SFT.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console

from prefloop.eval.pass_at_k import evaluate_pass_at_k
from prefloop.eval.policy import evaluate_policy
from prefloop.eval.report import write_run_config
from prefloop.lab import report as lr
from prefloop.lab.common import BasePolicySetup, prepare_sft_policy
from prefloop.models.policy import Policy
from prefloop.online.methods import OnlineRun, online_task
from prefloop.online.policy_gradient import (
    GRPOConfig,
    PolicyGradientSettings,
    ReinforcePPConfig,
    RLOOConfig,
)
from prefloop.online.reward_functions import FunctionJudge, RewardFunction
from prefloop.train.engine import TrainConfig, fit
from prefloop.worlds.arithmetic import ArithmeticWorld, correctness_reward

METHODS = ("grpo", "dr_grpo", "dapo", "rloo", "reinforce++")


def method_settings(name: str, **options) -> PolicyGradientSettings:
    if name in ("grpo", "dr_grpo", "dapo"):
        return GRPOConfig.for_loss_type(name, **options)
    return (RLOOConfig if name == "rloo" else ReinforcePPConfig)(**options)


@dataclass
class VerifiableLabConfig:
    seed: int = 0
    base: BasePolicySetup = field(default_factory=ArithmeticWorld.sft_setup)
    steps: int = 120
    rollout_prompts: int = 16
    samples_per_prompt: int = 4
    learning_rate: float = 2e-4  # 1e-3 collapsed every method (measured); 1e-4..3e-4 learn
    max_new_tokens: int = 48
    eval_prompts: int = 200
    eval_samples: int = 8

    @classmethod
    def fast(cls) -> VerifiableLabConfig:
        return cls(base=ArithmeticWorld.sft_setup(fast=True), steps=60, eval_prompts=100)


def run_lab(out: Path, fast: bool = False, seed: int = 0, seeds: int | None = None,
            console: Console | None = None) -> dict:  # fmt: skip
    """Run every method at each seed into ``out``; writes verifiable.json, .md and a plot."""
    config = VerifiableLabConfig.fast() if fast else VerifiableLabConfig()
    return run_verifiable(config, lr.seed_list(seed, seeds, fast), Path(out),
                          console or Console(), fast)  # fmt: skip


def run_verifiable(config: VerifiableLabConfig, seeds: list[int], out: Path, console: Console,
                   fast: bool = False) -> dict:  # fmt: skip
    """Configure per seed, run, and report through the shared lab report."""
    started = time.perf_counter()
    per_seed = lr.run_seeds(lambda s, d: _run_seed(replace(config, seed=s), d, console), seeds,
                            out)  # fmt: skip
    k = f"pass@{config.eval_samples}"
    keys = ("pass@1", k, "mean_length", "kl", "wall_seconds", "length_change")
    aggregate = {name: {key: lr.interval([lr.method_run(s, name)[key] for s in per_seed])
                        for key in keys}
                 for name in METHODS}  # fmt: skip
    aggregate["sft"] = {key: lr.interval([s["sft"][key] for s in per_seed])
                        for key in ("pass@1", k, "mean_length")}  # fmt: skip
    comparisons = [lr.compare(f"{name} − sft, pass@1",
                              [lr.method_run(s, name)["pass@1"] for s in per_seed],
                              [s["sft"]["pass@1"] for s in per_seed],
                              claim=f"{name} raises held-out pass@1 above SFT",
                              reverse=f"{name} lowers held-out pass@1 below SFT")
                   for name in METHODS]  # fmt: skip
    comparisons.append(lr.compare(
        "dr_grpo − grpo, change in completion length",
        [lr.method_run(s, "dr_grpo")["length_change"] for s in per_seed],
        [lr.method_run(s, "grpo")["length_change"] for s in per_seed],
        claim="completions grow more under Dr. GRPO than GRPO",
        reverse="completions grow more under GRPO than Dr. GRPO"))  # fmt: skip
    report = lr.lab_report("verifiable", per_seed, aggregate, comparisons, fast,
                           time.perf_counter() - started, k=config.eval_samples)  # fmt: skip
    report["sft"] = {key: lr.as_interval(v).mean for key, v in aggregate["sft"].items()}
    report["runs"] = [{"method": name, **{key: lr.as_interval(v).mean
                                          for key, v in aggregate[name].items()}}
                      for name in METHODS]  # fmt: skip
    _plot(out / "verifiable_length.png", per_seed)
    lr.write_lab_report(out, "verifiable", report, verifiable_markdown(report))
    console.print(f"wrote {out / 'verifiable.json'} in {report['seconds']:.0f} s")
    return report


def _run_seed(config: VerifiableLabConfig, out: Path, console: Console) -> dict:
    world = ArithmeticWorld()
    write_run_config(out, asdict(config))
    console.rule("1/3 tiny model + SFT on the arithmetic corpus")
    sft, _ = prepare_sft_policy(world, config.base, out, config.seed)
    prompts = world.prompts(config.eval_prompts, config.seed + 7, split="test")
    k = config.eval_samples

    def measure(policy: Policy) -> dict:
        scores = evaluate_pass_at_k(policy, world, prompts, k, (1, k), config.seed + 11,
                                    max_new_tokens=config.max_new_tokens)  # fmt: skip
        return scores.to_dict()

    base = measure(sft)
    console.print(f"SFT: pass@1 {base['pass@1']:.3f}, pass@{k} {base[f'pass@{k}']:.3f}")
    runs = []
    console.rule("2/3 policy-gradient methods")
    for name in METHODS:
        settings = method_settings(name, rollout_prompts=config.rollout_prompts,
                                   samples_per_prompt=config.samples_per_prompt,
                                   max_new_tokens=config.max_new_tokens)  # fmt: skip
        judge = FunctionJudge([RewardFunction("correctness_reward", correctness_reward)])
        train = TrainConfig(learning_rate=config.learning_rate, max_steps=config.steps,
                            batch_size=config.rollout_prompts * config.samples_per_prompt,
                            warmup_ratio=0.0, log_every=1, seed=config.seed + 5)  # fmt: skip
        run = OnlineRun(out / "sft", world.prompts(4096, config.seed + 3), judge)
        policy, task = online_task(settings, run, train)
        started = time.perf_counter()
        fit(task, train, out / name, overwrite=True)
        seconds = time.perf_counter() - started
        scores = measure(policy)
        kl = evaluate_policy(policy, world, prompts[:64], sft, None, 2, config.seed + 13,
                             config.max_new_tokens).kl  # fmt: skip
        lengths = [json.loads(line)["completion_length"]
                   for line in (out / name / "metrics.jsonl").open()]  # fmt: skip
        window = max(1, len(lengths) // 5)
        change = sum(lengths[-window:]) / window - sum(lengths[:window]) / window
        console.print(f"{name}: pass@1 {scores['pass@1']:.3f}, length {scores['mean_length']:.1f}"
                      f" ({change:+.1f} along training), KL {kl:.3f}, {seconds:.0f} s")  # fmt: skip
        runs.append({"method": name, **scores, "kl": kl, "wall_seconds": seconds,
                     "length_change": change, "length_curve": lengths,
                     "labels_used": judge.labels_used})  # fmt: skip
    console.rule("3/3 report")
    return {"seed": config.seed, "world": world.name, "sft": base, "runs": runs,
            "config": asdict(config)}  # fmt: skip


def _plot(path: Path, per_seed: list[dict]) -> None:
    """Mean completion length of each rollout along training, per method (mean over seeds)."""
    series = {}
    for name in METHODS:
        curves = [lr.method_run(s, name)["length_curve"] for s in per_seed]
        steps = min(len(c) for c in curves)
        series[name] = (list(range(1, steps + 1)),
                        [lr.interval([c[i] for c in curves]) for i in range(steps)])  # fmt: skip
    lr.plot_curves(path, {"completion length along training": series}, "step",
                   "mean completion tokens", {n: "-" for n in METHODS}, columns=1)  # fmt: skip


def verifiable_markdown(report: dict) -> str:
    aggregate, k = report["aggregate"], report["k"]
    sft = aggregate["sft"]
    rows = [("sft", sft["pass@1"], sft[f"pass@{k}"], sft["mean_length"], "", "", "")]
    rows += [(name, a["pass@1"], a[f"pass@{k}"], a["mean_length"], a["length_change"], a["kl"],
              a["wall_seconds"]) for name, a in ((n, aggregate[n]) for n in METHODS)]  # fmt: skip
    return "\n\n".join([
        "# Policy-gradient methods on the verifiable world (column addition)",
        lr.seeds_note(report),
        f"Held-out tasks; pass@1 and pass@{k} from {k} samples per task (unbiased estimator); "
        "length in completion tokens; the length change is the mean length of the last fifth "
        "of training's rollouts minus the first fifth's; KL(π‖SFT) in nats per completion.",
        lr.table(["method", "pass@1", f"pass@{k}", "mean length", "length change", "KL",
                  "seconds"], rows),  # fmt: skip
        "![completion length along training](verifiable_length.png)",
        "## Comparisons", lr.comparisons_markdown(report["comparisons"]),
    ])  # fmt: skip
