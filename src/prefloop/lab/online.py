"""Online vs offline at equal feedback: does sampling from the current policy pay for itself?

On the review world, every method gets the same budget of annotator labels. Offline DPO
spends it on SFT sample pairs; a Bradley–Terry reward model is trained on the same pairs and
judges RAFT, RLOO, GRPO, PPO and iterative DPO (RLHF Workflow's setting: the labels buy the
reward model, its scores are free); online and iterative DPO can instead spend the budget
asking the simulated annotator about their own samples as they train. Everything is judged
by the world's gold reward on held-out prompts, with the KL from SFT.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from prefloop.eval.policy import Samples, evaluate_policy
from prefloop.lab import report as lr
from prefloop.lab.common import BasePolicySetup, start_review_lab
from prefloop.lab.demo import label_policy_pairs
from prefloop.models.policy import Policy
from prefloop.models.reward import RewardModel
from prefloop.online.judges import AnnotatorJudge, RewardModelJudge
from prefloop.online.methods import ONLINE_METHODS, OnlineRun, online_task
from prefloop.train.engine import TrainConfig, fit
from prefloop.train.preference import method_config, train_preference
from prefloop.train.reward_model import train_reward_model
from prefloop.worlds.annotators import BradleyTerryAnnotator


@dataclass
class OnlineRunSpec:
    """One method of the lab: its online settings, judge and optimisation."""

    label: str
    method: str
    judge: str  # "annotator" (spends the budget itself) or "reward_model" (trained on it)
    settings: dict[str, Any]
    train: TrainConfig


def _runs(labels: int, steps: int, dpo_epochs: int) -> list[OnlineRunSpec]:
    """The methods at ``labels`` annotator labels; reward-model-judged ones run ``steps``.

    The annotator-judged DPO runs get offline DPO's learning rate and about its number of
    gradient steps (online DPO: one pass over fresh pairs of 16; iterative DPO: four
    iterations, each pair seen ``dpo_epochs`` times as offline DPO sees its pairs), so the
    comparison at equal labels differs only in where the pairs come from.
    """
    lr_dpo, lr_pg = 1e-3, 2e-4  # lr_pg: 1e-3 collapsed GRPO on the arithmetic world
    per_iteration = labels // 4
    return [
        OnlineRunSpec("online-dpo", "online-dpo", "annotator", {"rollout_prompts": 16},
                      TrainConfig(learning_rate=lr_dpo, batch_size=16, max_steps=labels // 16,
                                  warmup_ratio=0.0)),
        OnlineRunSpec("iterative-dpo", "iterative-dpo", "annotator",
                      {"rollout_prompts": per_iteration, "samples_per_prompt": 2,
                       "rollout_epochs": dpo_epochs},
                      TrainConfig(learning_rate=lr_dpo, batch_size=32, warmup_ratio=0.0,
                                  max_steps=4 * dpo_epochs * -(-per_iteration // 32))),
        OnlineRunSpec("iterative-dpo (rm)", "iterative-dpo", "reward_model",
                      {"rollout_prompts": 64}, TrainConfig(learning_rate=lr_dpo, batch_size=32,
                                                           max_steps=steps, warmup_ratio=0.0)),
        OnlineRunSpec("raft (rm)", "raft", "reward_model", {"rollout_prompts": 32},
                      TrainConfig(learning_rate=lr_pg, batch_size=32, max_steps=steps,
                                  warmup_ratio=0.0)),
        OnlineRunSpec("rloo (rm)", "rloo", "reward_model", {"rollout_prompts": 16},
                      TrainConfig(learning_rate=lr_pg, batch_size=64, max_steps=steps,
                                  warmup_ratio=0.0)),
        OnlineRunSpec("grpo (rm)", "grpo", "reward_model", {"rollout_prompts": 16},
                      TrainConfig(learning_rate=lr_pg, batch_size=64, max_steps=steps,
                                  warmup_ratio=0.0)),
        OnlineRunSpec("ppo (rm)", "ppo", "reward_model", {"rollout_prompts": 64},
                      TrainConfig(learning_rate=lr_pg, batch_size=32, max_steps=steps,
                                  warmup_ratio=0.0)),
    ]  # fmt: skip


@dataclass
class OnlineLabConfig:
    seed: int = 0
    base: BasePolicySetup = field(default_factory=BasePolicySetup)
    labels: int = 1024
    online_steps: int = 128
    beta: float = 0.1
    reward_model: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=32, epochs=6)
    )
    dpo: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=32, epochs=3)
    )
    max_new_tokens: int = 48
    eval_prompts: int = 96
    eval_samples: int = 4
    curve_points: int = 4  # gold measured this often along the annotator-judged runs

    @classmethod
    def fast(cls) -> OnlineLabConfig:
        return cls(base=BasePolicySetup.fast(), labels=512, online_steps=64, eval_prompts=48)


def run_lab(out: Path, fast: bool = False, seed: int = 0, seeds: int | None = None,
            console: Console | None = None) -> dict:  # fmt: skip
    """Run the comparison at each seed into ``out``; writes online.json, .md and a plot."""
    config = OnlineLabConfig.fast() if fast else OnlineLabConfig()
    return run_online(config, lr.seed_list(seed, seeds, fast), Path(out), console or Console(),
                      fast)  # fmt: skip


def run_online(config: OnlineLabConfig, seeds: list[int], out: Path, console: Console,
               fast: bool = False) -> dict:  # fmt: skip
    """Configure per seed, run, and report through the shared lab report."""
    started = time.perf_counter()
    per_seed = lr.run_seeds(lambda s, d: _run_seed(replace(config, seed=s), d, console), seeds,
                            out)  # fmt: skip
    names = ["dpo"] + [run["method"] for run in per_seed[0]["runs"] if run["method"] != "dpo"]
    aggregate = {name: {key: lr.interval([lr.method_run(s, name)[key] for s in per_seed])
                        for key in ("gold_reward", "kl", "win_rate_vs_sft", "wall_seconds")}
                 for name in names}  # fmt: skip
    aggregate["sft"] = {key: lr.interval([s["sft"][key] for s in per_seed])
                        for key in ("gold_reward", "kl")}  # fmt: skip
    report = lr.lab_report("online", per_seed, aggregate, _comparisons(per_seed, names), fast,
                           time.perf_counter() - started, labels=config.labels)  # fmt: skip
    report["sft"] = {k: lr.as_interval(v).mean for k, v in aggregate["sft"].items()}
    report["runs"] = [{"method": name,
                       "labels_used": lr.method_run(per_seed[0], name)["labels_used"],
                       **{k: lr.as_interval(v).mean for k, v in aggregate[name].items()}}
                      for name in names]  # fmt: skip
    _plot(out / "online_gold_vs_labels.png", per_seed)
    lr.write_lab_report(out, "online", report, online_markdown(report))
    console.print(f"wrote {out / 'online.json'} in {report['seconds']:.0f} s")
    return report


def _comparisons(per_seed: list[dict], names: list[str]) -> list[lr.Comparison]:
    def gold(name: str) -> list[float]:
        if name == "sft":
            return [s["sft"]["gold_reward"] for s in per_seed]
        return [lr.method_run(s, name)["gold_reward"] for s in per_seed]

    found = [lr.compare(f"{name} − dpo, gold", gold(name), gold("dpo"),
                        claim=f"{name} beats offline DPO at equal labels",
                        reverse=f"offline DPO beats {name} at equal labels")
             for name in names if name != "dpo"]  # fmt: skip
    found += [lr.compare(f"{name} − sft, gold", gold(name), gold("sft"),
                         claim=f"{name} raises gold reward over SFT",
                         reverse=f"{name} lowers gold reward below SFT")
              for name in names]  # fmt: skip
    return found


def _run_seed(config: OnlineLabConfig, out: Path, console: Console) -> dict:
    world, sft = start_review_lab(config, out, console, "1/4")
    started = time.perf_counter()
    console.rule(f"2/4 {config.labels} annotator labels on SFT pairs; reward model; offline DPO")
    annotator = BradleyTerryAnnotator(world, temperature=0.5, seed=config.seed)
    pairs = label_policy_pairs(sft, world, annotator, world.prompts(config.labels, config.seed),
                               config.seed)  # fmt: skip
    reward_model = RewardModel.from_pretrained(out / "sft", seed=config.seed)
    train_reward_model(reward_model, pairs, replace(config.reward_model, seed=config.seed + 1),
                       out / "reward_model", overwrite=True)  # fmt: skip
    dpo = Policy.from_pretrained(out / "sft")
    dpo_started = time.perf_counter()
    train_preference(dpo, pairs, replace(config.dpo, seed=config.seed + 2), out / "dpo",
                     method_config("dpo", beta=config.beta), overwrite=True)  # fmt: skip
    prompts = world.prompts(config.eval_prompts, config.seed + 7, split="test")
    sft_samples = Samples.draw(sft, prompts, config.eval_samples, config.seed + 11)

    def evaluate(policy: Policy, samples: int = config.eval_samples, n: int | None = None):
        chosen = prompts[:n] if n else prompts
        reference = sft_samples if n is None else None
        return evaluate_policy(policy, world, chosen, sft, reference, samples, config.seed + 13)

    base = evaluate(sft)
    rm_seconds = dpo_started - started
    runs = [_entry("dpo", evaluate(dpo), len(pairs), time.perf_counter() - dpo_started)]
    train_prompts = world.prompts(2048, config.seed + 3)
    console.rule("3/4 online methods")
    for spec in _runs(config.labels, config.online_steps, config.dpo.epochs):
        console.print(f"{spec.label}: {spec.method}, judged by the {spec.judge.replace('_', ' ')}")
        judge = (AnnotatorJudge(world, 0.5) if spec.judge == "annotator"
                 else RewardModelJudge(reward_model))  # fmt: skip
        dpo_beta = {"beta": config.beta} if spec.method.endswith("dpo") else {}
        settings = ONLINE_METHODS[spec.method](**spec.settings, **dpo_beta,
                                               max_new_tokens=config.max_new_tokens)  # fmt: skip
        train = replace(spec.train, seed=config.seed + 5, log_every=1)
        policy, task = online_task(settings, OnlineRun(out / "sft", train_prompts, judge), train)
        curve: list[dict] = []
        every = max(1, train.max_steps // config.curve_points)

        asks = spec.judge == "annotator"

        def measure(step: int, record: dict, policy=policy, judge=judge, curve=curve,
                    every=every, last=train.max_steps, asks=asks) -> None:  # fmt: skip
            if asks and step % every == 0 and step < last:
                point = evaluate(policy, 2, n=32)
                curve.append({"labels": judge.labels_used, "gold_reward": point.gold_reward})

        run_started = time.perf_counter()
        fit(task, train, out / spec.label.replace(" ", "_").strip("()"), overwrite=True,
            callbacks=[measure])  # fmt: skip
        seconds = time.perf_counter() - run_started
        used = judge.labels_used if spec.judge == "annotator" else len(pairs)
        entry = _entry(spec.label, evaluate(policy), used, seconds + (
            rm_seconds if spec.judge == "reward_model" else 0.0))  # fmt: skip
        entry["curve"] = curve + [{"labels": used, "gold_reward": entry["gold_reward"]}]
        entry["judge_calls"] = judge.labels_used
        runs.append(entry)
    console.rule("4/4 report")
    return {"seed": config.seed, "world": world.name, "labels": len(pairs),
            "sft": {"gold_reward": base.gold_reward, "kl": base.kl},
            "runs": runs, "config": asdict(config)}  # fmt: skip


def _entry(name: str, evaluation, labels: int, seconds: float) -> dict:
    return {"method": name, "labels_used": labels, "gold_reward": evaluation.gold_reward,
            "kl": evaluation.kl, "win_rate_vs_sft": evaluation.win_rate_vs_reference,
            "aspects": evaluation.aspects, "wall_seconds": seconds}  # fmt: skip


def _plot(path: Path, per_seed: list[dict]) -> None:
    """Gold reward against labels spent: lines for the annotator-judged runs (measured along
    the way, seed 0's), points for the methods whose labels bought the reward model."""
    first = per_seed[0]
    series = {}
    for run in first["runs"]:
        curve = run.get("curve") or [
            {"labels": run["labels_used"], "gold_reward": run["gold_reward"]}
        ]
        series[run["method"]] = ([p["labels"] for p in curve],
                                 [lr.interval([p["gold_reward"]]) for p in curve])  # fmt: skip
    series["sft"] = ([0], [lr.interval([first["sft"]["gold_reward"]])])
    styles = {name: "o" for name, (xs, _) in series.items() if len(xs) == 1}
    lr.plot_curves(path, {f"review world, seed {first['seed']}": series}, "annotator labels",
                   "gold reward (held-out)", styles, columns=1)  # fmt: skip


def online_markdown(report: dict) -> str:
    aggregate = report["aggregate"]
    rows = [("sft", 0, aggregate["sft"]["gold_reward"], aggregate["sft"]["kl"], "", "")]
    rows += [(run["method"], run["labels_used"], aggregate[run["method"]]["gold_reward"],
              aggregate[run["method"]]["kl"], aggregate[run["method"]]["win_rate_vs_sft"],
              aggregate[run["method"]]["wall_seconds"]) for run in report["runs"]]  # fmt: skip
    return "\n\n".join([
        f"# Online vs offline at {report['labels']} annotator labels (review world)",
        lr.seeds_note(report),
        "Methods marked (rm) are judged by a Bradley–Terry reward model trained on the same "
        "labels offline DPO uses; online-dpo and iterative-dpo ask the simulated annotator "
        "about their own samples, spending the same budget. Gold reward and KL(π‖SFT) are "
        "measured on held-out prompts.",
        lr.table(["method", "labels", "gold reward", "KL", "win rate vs SFT", "seconds"], rows),
        "![gold vs labels](online_gold_vs_labels.png)",
        "## Comparisons", lr.comparisons_markdown(report["comparisons"]),
    ])  # fmt: skip
