"""Nash methods on text, where annotators disagree: who wins head to head?

The review world is judged by three annotator groups with conflicting tastes
(:mod:`prefloop.worlds.review_groups`): each group is transitive, the pooled preference is not.
From one SFT model, every method gets the same budget of annotator labels: offline DPO and a
Bradley–Terry reward model (judging RLOO) spend it on SFT sample pairs; iterative DPO, Nash-MD
(sequence- and token-level mixture), SPO, INPO and DNO spend it on their own samples over a
fixed number of iterations; OSP spends it teaching the policy to judge, then judges its own
samples. The final policies meet in a round robin under the exact pooled preference, and each
is measured against SFT, per group, and in KL.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from prefloop.data.records import Comparison
from prefloop.eval.games import minimax_winner
from prefloop.eval.policy import Samples
from prefloop.eval.report import write_run_config
from prefloop.lab import report as lr
from prefloop.lab.common import BasePolicySetup, prepare_sft_policy
from prefloop.models.policy import Policy
from prefloop.models.reward import RewardModel
from prefloop.online.judges import GroupAnnotatorJudge, RewardModelJudge
from prefloop.online.methods import ONLINE_METHODS, OnlineRun, online_task
from prefloop.online.self_judge import PolicyJudge, judge_examples, judge_vocabulary
from prefloop.train.engine import TrainConfig, fit
from prefloop.train.preference import method_config, train_preference
from prefloop.train.reward_model import train_reward_model
from prefloop.train.sft import train_sft
from prefloop.worlds.review_groups import GROUPS, cyclic_share, group_worlds
from prefloop.worlds.reviews import ReviewWorld


@dataclass
class NashTextRun:
    """One online method: its settings, labels per prompt, and optimisation per iteration."""

    label: str
    method: str
    settings: dict[str, Any]
    labels_per_prompt: int  # annotator labels one prompt of a rollout costs
    items_per_prompt: int  # training items it yields
    learning_rate: float
    batch_size: int = 32


def _runs(k: int, lr: float) -> list[NashTextRun]:
    """Every online method at one learning rate (not tuned per method)."""
    round_robin = k * (k - 1) // 2
    return [
        NashTextRun("iterative-dpo", "iterative-dpo", {"samples_per_prompt": 2,
                    "rollout_epochs": 2}, 1, 1, lr),
        NashTextRun("nash-md (sequence)", "nash-md", {"samples_per_prompt": k,
                    "mixture": "sequence"}, k, k, lr),
        NashTextRun("nash-md (token, TRL)", "nash-md", {"samples_per_prompt": k,
                    "mixture": "token"}, k, k, lr),
        NashTextRun("spo", "spo", {"samples_per_prompt": k}, round_robin, k, lr),
        NashTextRun("inpo", "inpo", {"samples_per_prompt": 2}, 1, 1, lr),
        NashTextRun("dno", "dno", {"samples_per_prompt": k}, round_robin, round_robin, lr),
        NashTextRun("osp", "osp", {"samples_per_prompt": k}, 0, k // 2, lr),
    ]  # fmt: skip


@dataclass
class NashTextConfig:
    seed: int = 0
    base: BasePolicySetup = field(default_factory=BasePolicySetup)
    labels: int = 4096
    iterations: int = 8
    samples_per_prompt: int = 4
    learning_rate: float = 1e-3  # every online method's
    annotator_temperature: float = 0.5
    beta: float = 0.1  # offline DPO's β
    dpo: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=32, epochs=3)
    )
    reward_model: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=32, epochs=6)
    )
    rm_steps: int = 192  # RLOO steps against the reward model
    judge_sft: TrainConfig = field(  # OSP: teaching the policy to judge
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=32, epochs=2)
    )
    max_new_tokens: int = 48
    eval_prompts: int = 128
    eval_samples: int = 4
    curve_prompts: int = 64
    curve_samples: int = 4

    @classmethod
    def fast(cls) -> NashTextConfig:
        return cls(base=BasePolicySetup.fast(), labels=2048, iterations=6, rm_steps=96)


def run_lab(out: Path, fast: bool = False, seed: int = 0, seeds: int | None = None,
            console: Console | None = None) -> dict:  # fmt: skip
    """Run the comparison at each seed into ``out``; writes nash_text.json, .md and plots."""
    config = NashTextConfig.fast() if fast else NashTextConfig()
    return run_nash_text(config, lr.seed_list(seed, seeds, fast), Path(out),
                         console or Console(), fast)  # fmt: skip


def run_nash_text(config: NashTextConfig, seeds: list[int], out: Path, console: Console,
                  fast: bool = False) -> dict:  # fmt: skip
    """Configure per seed, run, and report through the shared lab report."""
    started = time.perf_counter()
    per_seed = lr.run_seeds(lambda s, d: _run_seed(replace(config, seed=s), d, console), seeds,
                            out)  # fmt: skip
    report = _report(per_seed, fast, time.perf_counter() - started, config.labels)
    lr.plot_matrix(out / "nash_text_round_robin.png", report["policies"], report["round_robin"],
                   "P(row ≻ column), pooled annotators")  # fmt: skip
    _plot_iterations(out / "nash_text_iterations.png", per_seed)
    lr.write_lab_report(out, "nash_text", report, nash_text_markdown(report))
    console.print(f"wrote {out / 'nash_text.json'} in {report['seconds']:.0f} s")
    return report


# ---- one seed ------------------------------------------------------------------------------
class _Evaluator:
    """Held-out samples of each policy, judged by the exact pooled preference and per group."""

    def __init__(self, world, judge: GroupAnnotatorJudge, sft: Policy, config: NashTextConfig):
        self.world, self.judge, self.sft, self.config = world, judge, sft, config
        self.prompts = world.prompts(config.eval_prompts, config.seed + 7, split="test")
        self.sft_samples = self.draw(sft, self.prompts, config.eval_samples, config.seed + 11)
        self.curve_prompts = self.prompts[: config.curve_prompts]
        self.curve_sft = self.draw(sft, self.curve_prompts, config.curve_samples, config.seed + 17)

    def draw(self, policy: Policy, prompts, n: int, seed: int) -> Samples:
        return Samples.draw(policy, prompts, n, seed, self.config.max_new_tokens)

    def win_rate(self, a: Samples, b: Samples) -> float:
        return float(self.judge.probability(a.prompts, a.responses, b.responses).mean())

    def curve_point(self, policy: Policy, seed: int) -> float:
        samples = self.draw(policy, self.curve_prompts, self.config.curve_samples, seed)
        return self.win_rate(samples, self.curve_sft)

    def measure(self, policy: Policy) -> tuple[Samples, dict[str, Any]]:
        samples = self.draw(policy, self.prompts, self.config.eval_samples, self.config.seed + 13)
        own, _ = policy.sequence_logps(samples.prompts, samples.responses)
        sft, _ = self.sft.sequence_logps(samples.prompts, samples.responses)
        groups = {g.group.name: float(np.mean([g.gold_reward(p, r) for p, r in
                                               zip(samples.prompts, samples.responses)]))
                  for g in self.judge.groups}  # fmt: skip
        gold = np.mean([self.world.gold_reward(p, r)
                        for p, r in zip(samples.prompts, samples.responses)])  # fmt: skip
        return samples, {"win_rate_vs_sft": self.win_rate(samples, self.sft_samples),
                         "kl": float((own - sft).mean()), "gold_reward": float(gold),
                         "group_gold": groups}  # fmt: skip


def _label(judge: GroupAnnotatorJudge, sft: Policy, prompts: list[str], seed: int):
    """Two SFT samples per prompt, each pair answered by one annotator of a random group."""
    pairs = sft.generate(prompts, num_samples=2, seed=seed)
    firsts, seconds = [a for a, _ in pairs], [b for _, b in pairs]
    wins = judge.prefer(prompts, firsts, seconds, seed)
    return [Comparison(p, a, b) if w else Comparison(p, b, a)
            for p, a, b, w in zip(prompts, firsts, seconds, wins)]  # fmt: skip


def _world_intransitivity(evaluator: _Evaluator, judge: GroupAnnotatorJudge) -> float:
    """Mean share of cyclic triples of the pooled preference among each prompt's SFT samples."""
    k, samples = evaluator.config.eval_samples, evaluator.sft_samples
    shares = [cyclic_share(judge.preference_matrix(samples.prompts[g * k],
                                                   samples.responses[g * k : (g + 1) * k]))
              for g in range(len(evaluator.prompts))]  # fmt: skip
    return float(np.mean(shares))


def _run_seed(config: NashTextConfig, out: Path, console: Console) -> dict:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    world = ReviewWorld()
    write_run_config(out, asdict(config))
    console.rule("1/4 tiny model + SFT")
    sft, _ = prepare_sft_policy(
        world, config.base, out, config.seed, extra_texts=[judge_vocabulary()]
    )
    judge = GroupAnnotatorJudge(group_worlds(world), temperature=config.annotator_temperature)
    evaluator = _Evaluator(world, judge, sft, config)
    finals: dict[str, Samples] = {"sft": evaluator.sft_samples}
    runs: list[dict] = []

    def record(name: str, policy: Policy, labels: int, seconds: float, **extra: Any) -> None:
        samples, metrics = evaluator.measure(policy)
        finals[name] = samples
        runs.append({"method": name, "labels_used": labels, "wall_seconds": seconds, **metrics,
                     **extra})  # fmt: skip

    console.rule(f"2/4 {config.labels} labels on SFT pairs: offline DPO, reward model + RLOO")
    pairs = _label(judge, sft, world.prompts(config.labels, config.seed), config.seed)
    started = time.perf_counter()
    dpo = Policy.from_pretrained(out / "sft")
    train_preference(dpo, pairs, replace(config.dpo, seed=config.seed + 2), out / "dpo",
                     method_config("dpo", beta=config.beta), overwrite=True)  # fmt: skip
    record("dpo", dpo, len(pairs), time.perf_counter() - started)
    started = time.perf_counter()
    rm = RewardModel.from_pretrained(out / "sft", seed=config.seed)
    train_reward_model(rm, pairs, replace(config.reward_model, seed=config.seed + 1),
                       out / "reward_model", overwrite=True)  # fmt: skip
    rloo = ONLINE_METHODS["rloo"](rollout_prompts=16, max_new_tokens=config.max_new_tokens)
    train = TrainConfig(learning_rate=2e-4, batch_size=64, max_steps=config.rm_steps,
                        warmup_ratio=0.0, seed=config.seed + 5)  # fmt: skip
    policy, task = online_task(rloo, OnlineRun(out / "sft", world.prompts(2048, config.seed + 3),
                                               RewardModelJudge(rm)), train)  # fmt: skip
    fit(task, train, out / "rloo_rm", overwrite=True)
    record("rloo (rm)", policy, len(pairs), time.perf_counter() - started)

    console.rule("3/4 online methods at equal labels")
    osp_start, judge_accuracy = _teach_judging(config, out, pairs, evaluator)
    train_prompts = world.prompts(4096, config.seed + 3)
    per_iteration = config.labels // config.iterations
    for spec in _runs(config.samples_per_prompt, config.learning_rate):
        prompts = (per_iteration // spec.labels_per_prompt if spec.labels_per_prompt
                   else per_iteration // config.samples_per_prompt)  # fmt: skip
        settings = ONLINE_METHODS[spec.method](rollout_prompts=prompts,
                                               max_new_tokens=config.max_new_tokens,
                                               **spec.settings)  # fmt: skip
        steps_per_iteration = settings.rollout_epochs * -(
            -(prompts * spec.items_per_prompt) // spec.batch_size)  # fmt: skip
        train = TrainConfig(learning_rate=spec.learning_rate, batch_size=spec.batch_size,
                            max_steps=config.iterations * steps_per_iteration, warmup_ratio=0.0,
                            seed=config.seed + 5, log_every=1)  # fmt: skip
        start = osp_start if spec.method == "osp" else out / "sft"
        run_judge = None if spec.method == "osp" else judge
        used_before = judge.labels_used
        console.print(f"{spec.label}: {prompts} prompts × {config.iterations} iterations")
        policy, task = online_task(settings, OnlineRun(start, train_prompts, run_judge), train)
        curve = [evaluator.curve_point(Policy.from_pretrained(start), config.seed + 19)]

        def measure(step: int, _record: dict, policy=policy, curve=curve,
                    every=steps_per_iteration) -> None:  # fmt: skip
            if step % every == 0:
                curve.append(evaluator.curve_point(policy, config.seed + 19 + step))

        started = time.perf_counter()
        fit(task, train, out / re.sub(r"[^a-z0-9]+", "_", spec.label).strip("_"), overwrite=True,
            callbacks=[measure])  # fmt: skip
        spent = len(pairs) if spec.method == "osp" else judge.labels_used - used_before
        extra = {"judge_accuracy": judge_accuracy} if spec.method == "osp" else {}
        record(spec.label, policy, spent, time.perf_counter() - started,
               win_rate_by_iteration=curve, **extra)  # fmt: skip

    console.rule("4/4 round robin")
    names = list(finals)
    matrix = [[evaluator.win_rate(finals[a], finals[b]) for b in names] for a in names]
    return {"seed": config.seed, "world": "reviews, 3 annotator groups",
            "groups": [g.name for g in GROUPS], "labels": len(pairs),
            "cyclic_triple_share": _world_intransitivity(evaluator, judge),
            "policies": names, "round_robin": matrix, "runs": runs,
            "config": asdict(config)}  # fmt: skip


def _teach_judging(config: NashTextConfig, out: Path, pairs: list[Comparison],
                   evaluator: _Evaluator) -> tuple[Path, float]:  # fmt: skip
    """OSP's start: SFT further trained to answer the comparison question on the budget's
    labelled pairs (both orders), with the SFT corpus mixed in so it keeps writing reviews.
    Returns its directory and the judge's agreement with the pooled majority on held-out
    SFT pairs."""
    world = evaluator.world
    examples = judge_examples(pairs) + world.corpus(2 * len(pairs), config.seed + 23)
    policy = Policy.from_pretrained(out / "sft")
    train_sft(policy, examples, replace(config.judge_sft, seed=config.seed + 29), out / "osp_start",
              overwrite=True)  # fmt: skip
    samples = evaluator.sft_samples
    k = config.eval_samples
    prompts, first, second = samples.prompts[::k], samples.responses[::k], samples.responses[1::k]
    truth = evaluator.judge.probability(prompts, first, second) > 0.5
    judged = np.array(PolicyJudge(policy).prefer(prompts, first, second)) > 0.5
    return out / "osp_start", float((truth == judged).mean())


# ---- report --------------------------------------------------------------------------------
def _report(per_seed: list[dict], fast: bool, seconds: float, labels: int) -> dict:
    names = [r["method"] for r in per_seed[0]["runs"]]
    keys = ("win_rate_vs_sft", "gold_reward", "kl", "wall_seconds")
    aggregate: dict[str, Any] = {
        name: {key: lr.interval([lr.method_run(s, name)[key] for s in per_seed]) for key in keys}
        for name in names
    }
    for name in names:
        aggregate[name]["group_gold"] = {
            g: lr.interval([lr.method_run(s, name)["group_gold"][g] for s in per_seed])
            for g in per_seed[0]["groups"]
        }
        aggregate[name]["worst_head_to_head"] = lr.interval([_worst(s, name) for s in per_seed])
    policies = per_seed[0]["policies"]
    matrix = np.mean([s["round_robin"] for s in per_seed], axis=0)
    nash = minimax_winner(matrix[None])[0]
    report = lr.lab_report("nash_text", per_seed, aggregate, _comparisons(per_seed, names), fast,
                           seconds, labels=labels)  # fmt: skip
    report.update(
        {
            "policies": policies,
            "round_robin": matrix.tolist(),
            "round_robin_nash": dict(zip(policies, nash.round(4).tolist())),
            "cyclic_triple_share": lr.interval(
                [s["cyclic_triple_share"] for s in per_seed]
            ).to_dict(),
        }
    )
    report["osp_judge_accuracy"] = lr.interval(
        [lr.method_run(s, "osp")["judge_accuracy"] for s in per_seed]
    ).to_dict()
    return report


def _worst(seed_report: dict, name: str) -> float:
    """The lowest win rate of ``name`` against any other final policy (SFT included)."""
    policies = seed_report["policies"]
    row = seed_report["round_robin"][policies.index(name)]
    return min(v for j, v in enumerate(row) if policies[j] != name)


def _head_to_head(seed_report: dict, a: str, b: str) -> float:
    policies = seed_report["policies"]
    return seed_report["round_robin"][policies.index(a)][policies.index(b)]


def _comparisons(per_seed: list[dict], names: list[str]) -> list[lr.Comparison]:
    nash = [n for n in names if n.split()[0] in ("nash-md", "spo", "inpo", "dno", "osp")]
    found = []
    for a in nash:
        for b in ("dpo", "rloo (rm)"):
            found.append(lr.compare(
                f"P({a} ≻ {b}) − ½", [_head_to_head(s, a, b) for s in per_seed],
                [0.5] * len(per_seed), claim=f"{a} beats {b} head to head",
                reverse=f"{b} beats {a} head to head"))  # fmt: skip

    def gain(name: str) -> list[float]:  # last iteration's win rate vs SFT minus the first's
        curves = [lr.method_run(s, name)["win_rate_by_iteration"] for s in per_seed]
        return [c[-1] - c[1] for c in curves]

    for name in ("dno", "inpo"):
        found.append(lr.compare(
            f"{name} − iterative-dpo, gain from iteration 1 to the last",
            gain(name), gain("iterative-dpo"),
            claim=f"{name} keeps improving over iterations more than iterative DPO",
            reverse=f"iterative DPO improves over iterations more than {name}"))  # fmt: skip
    return found


def _plot_iterations(path: Path, per_seed: list[dict]) -> None:
    series = {}
    for run in per_seed[0]["runs"]:
        curves = [lr.method_run(s, run["method"]).get("win_rate_by_iteration") for s in per_seed]
        if curves[0]:
            series[run["method"]] = (list(range(len(curves[0]))),
                                     [lr.interval(v) for v in zip(*curves)])  # fmt: skip
    lr.plot_curves(path, {"win rate against SFT (pooled annotators)": series}, "iteration",
                   "P(policy ≻ SFT)", columns=1)  # fmt: skip


def nash_text_markdown(report: dict) -> str:
    aggregate = report["aggregate"]
    groups = list(next(iter(aggregate.values()))["group_gold"])
    rows = [(name, lr.method_run(report["per_seed"][0], name)["labels_used"],
             aggregate[name]["win_rate_vs_sft"], aggregate[name]["worst_head_to_head"],
             aggregate[name]["gold_reward"], *[aggregate[name]["group_gold"][g] for g in groups],
             aggregate[name]["kl"], aggregate[name]["wall_seconds"])
            for name in aggregate]  # fmt: skip
    policies = report["policies"]
    matrix_rows = [(a, *row) for a, row in zip(policies, report["round_robin"])]
    nash = ", ".join(f"{k} {v:.2f}" for k, v in report["round_robin_nash"].items() if v > 0.005)
    accuracy = report["osp_judge_accuracy"]
    return "\n\n".join([
        f"# Nash methods on text: review world, three annotator groups, {report['labels']} labels",
        lr.seeds_note(report),
        "Each group rates by its own taste (enthusiasts: warmth; minimalists: brevity; "
        "detail-seekers: coverage) on top of the world's gold reward; every comparison is "
        "answered by a random group. Share of cyclic triples of the pooled preference among "
        f"SFT samples of a prompt: {lr.text(report['cyclic_triple_share'])}.",
        "Win rates are the exact pooled probability P(policy ≻ other) on held-out prompts; "
        "'worst' is a policy's lowest win rate against any other final policy or SFT.",
        lr.table(["method", "labels", "win rate vs SFT", "worst head-to-head", "gold reward",
                  *[f"gold: {g}" for g in groups], "KL", "seconds"], rows),
        "## Round robin (mean over seeds)",
        lr.table(["P(row ≻ column)", *policies], matrix_rows),
        f"Minimax (Nash) mixture of the final policies under this matrix: {nash}.",
        "![round robin](nash_text_round_robin.png)",
        "![iterations](nash_text_iterations.png)",
        f"OSP's self-judge agrees with the pooled majority on {lr.text(accuracy)} of held-out "
        "SFT pairs (after being taught on the budget's labels).",
        "## Comparisons", lr.comparisons_markdown(report["comparisons"]),
    ])  # fmt: skip
