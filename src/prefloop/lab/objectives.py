"""Lab: every direct-alignment objective on the same world, SFT policy and labelled pairs.

world → tiny model → SFT → two samples per prompt labelled by a Bradley–Terry annotator →
each objective at a small beta sweep from the same SFT start → gold reward, KL(π‖SFT) and win
rate on held-out prompts. Writes ``objectives.json``, ``objectives.md`` and
``gold_vs_kl.png`` (one curve per objective across its sweep).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from prefloop.algorithms.c3po import (
    C3POConfig,
    VerbalFeedback,
    build_c3po_data,
    feedback_metrics,
    train_c3po,
)
from prefloop.algorithms.curry_dpo import CurryDPOConfig, stages_by_difficulty, train_curry_dpo
from prefloop.data.pairs import comparisons_to_unpaired
from prefloop.data.records import Comparison
from prefloop.eval.policy import Samples, evaluate_policy
from prefloop.eval.report import write_json, write_run_config
from prefloop.lab import report as lr
from prefloop.lab.common import BasePolicySetup, prepare_sft_policy
from prefloop.lab.demo import label_policy_pairs
from prefloop.models.policy import Policy
from prefloop.train.engine import TrainConfig
from prefloop.train.preference import method_config, train_preference
from prefloop.train.unpaired import KTOConfig, train_kto
from prefloop.worlds.annotators import BradleyTerryAnnotator
from prefloop.worlds.reviews import ReviewWorld

CAMERA_BATTERY = VerbalFeedback(
    text="when reviewing a camera, always mention the battery",
    scope=ReviewWorld.product_scope(("camera",), ("watch", "speaker", "lamp", "kettle", "blender")),
    keyword="battery",
    sentence="the battery is good .",
)
#: The beta grid of objectives whose beta is DPO's KL strength (or plays it: eta, alpha).
KL_BETAS = (0.03, 0.1, 0.3)


@dataclass(frozen=True)
class ObjectiveRun:
    """One objective of the lab: its trainer, fixed options and beta sweep."""

    name: str
    trainer: str = "pairwise"  # pairwise | kto | curry
    objective: str = ""  # pairwise_loss name (defaults to ``name``)
    options: dict[str, Any] = field(default_factory=dict)
    betas: tuple[float, ...] = KL_BETAS
    note: str = ""


#: Settings are paper defaults where the paper gives one; chosen once, not tuned per objective.
RUNS = (
    ObjectiveRun("dpo"),
    ObjectiveRun("ipo", note="beta is tau; target log-ratio gap 1/(2 beta)"),
    ObjectiveRun("hinge", note="SLiC with delta = 1/beta"),
    ObjectiveRun("cdpo", options={"label_smoothing": 0.1}),
    ObjectiveRun("robust", options={"label_smoothing": 0.1}),
    ObjectiveRun(
        "f-dpo/reverse_kl",
        objective="f-dpo",
        options={"divergence": "reverse_kl"},
        note="bit-identical to dpo",
    ),  # fmt: skip
    ObjectiveRun("f-dpo/forward_kl", objective="f-dpo", options={"divergence": "forward_kl"}),
    ObjectiveRun("f-dpo/js", objective="f-dpo", options={"divergence": "js"}),
    ObjectiveRun(
        "f-dpo/alpha=0.5", objective="f-dpo", options={"divergence": "alpha", "alpha": 0.5}
    ),
    ObjectiveRun("soft-preference", note="strength = annotator's reported probability"),
    ObjectiveRun(
        "inpo",
        options={"ratio": 1 / 3},
        note="one offline iteration: previous iterate = SFT = reference, so = ipo",
    ),  # fmt: skip
    ObjectiveRun("dno", note="one iteration: reference = previous iterate = SFT; soft strength"),
    ObjectiveRun("simpo", betas=(1.0, 2.0, 4.0), note="gamma = beta/2 (SimPO repository)"),
    ObjectiveRun("orpo", note="beta is the odds-ratio weight lambda (paper 0.1)"),
    ObjectiveRun("cpl", options={"conservative_bias": 0.5}, note="beta is the temperature alpha"),
    ObjectiveRun("kto", trainer="kto", note="each pair split into desirable + undesirable"),
    ObjectiveRun(
        "dpo+spo",
        objective="dpo",
        options={"spo_weight": 0.1, "spo_classes": 3},
        note="SPO degree head, lambda 0.1",
    ),  # fmt: skip
    ObjectiveRun(
        "curry-dpo",
        trainer="curry",
        note="3 stages by reported strength, reference refreshed per stage",
    ),  # fmt: skip
)


@dataclass
class ObjectivesLabConfig:
    """Every knob of the objectives lab; ``fast()`` is the reduced run."""

    seed: int = 0
    base: BasePolicySetup = field(default_factory=BasePolicySetup)
    pair_prompts: int = 2000
    annotator_temperature: float = 0.5
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=32, epochs=3)
    )
    curry_stages: int = 3
    c3po_samples: int = 16  # baseline answers per prompt for the C3PO data
    c3po_train: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=16, epochs=3)
    )
    eval_prompts: int = 96
    eval_samples: int = 4
    runs: tuple[ObjectiveRun, ...] = RUNS

    @classmethod
    def fast(cls, seed: int = 0) -> ObjectivesLabConfig:
        """Half the data and evaluation; each sweep keeps its two larger betas."""
        runs = tuple(replace(r, betas=r.betas[1:]) for r in RUNS)
        return replace(
            cls(),
            seed=seed,
            base=BasePolicySetup.fast(),
            pair_prompts=1000,
            eval_prompts=48,
            c3po_samples=8,
            runs=runs,
        )


def _setting(beta: float, options: dict[str, Any]) -> str:
    return ", ".join([f"beta={beta:g}", *(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                                          for k, v in options.items())])  # fmt: skip


def _trainer(
    run: ObjectiveRun, pairs: list[Comparison], config: ObjectivesLabConfig
) -> Callable[[Policy, float, Path], None]:
    """A function training a fresh policy with ``run`` at one beta into a directory."""
    train = replace(config.train, seed=config.seed + 2)
    quiet = {"show_progress": False, "overwrite": True}
    if run.trainer == "kto":
        examples = comparisons_to_unpaired(pairs)
        return lambda policy, beta, out: train_kto(
            policy, examples, train, out, KTOConfig(beta=beta), **quiet
        )
    if run.trainer == "curry":
        stages = stages_by_difficulty(pairs, config.curry_stages, lambda c: c.strength or 0.5)
        return lambda policy, beta, out: train_curry_dpo(
            policy, stages, train, out, CurryDPOConfig(beta=beta), **quiet
        )
    return lambda policy, beta, out: train_preference(
        policy, pairs, train, out,
        method_config(run.objective or run.name, beta=beta, **run.options), **quiet,
    )  # fmt: skip


def run_lab(
    out: Path, fast: bool = False, seed: int = 0, seeds: int | None = None,
    console: Console | None = None, config: ObjectivesLabConfig | None = None,
) -> dict:  # fmt: skip
    """Train every objective of ``config.runs`` at each seed and write the comparison."""
    console = console or Console()
    config = config or (ObjectivesLabConfig.fast() if fast else ObjectivesLabConfig())
    out = Path(out)
    started = time.perf_counter()
    per_seed = lr.run_seeds(lambda s, d: _run_seed(replace(config, seed=s), d, console),
                            lr.seed_list(seed, seeds, fast), out)  # fmt: skip
    notes = {r.name: r.note for r in config.runs if r.note}
    report = write_report(per_seed, fast, time.perf_counter() - started, notes, out)
    console.print(f"wrote {out / 'objectives.json'} in {report['seconds']:.0f}s")
    return report


def write_report(
    per_seed: list[dict], fast: bool, seconds: float, notes: dict[str, str], out: Path
) -> dict:
    """Aggregate per-seed results into objectives.json, objectives.md and gold_vs_kl.png."""
    report = lr.lab_report("objectives", per_seed, _aggregate(per_seed), _comparisons(per_seed),
                           fast, seconds, world=per_seed[0]["world"], pairs=per_seed[0]["pairs"],
                           notes=notes)  # fmt: skip
    plot_gold_vs_kl(report, out / "gold_vs_kl.png")
    lr.write_lab_report(out, "objectives", report, objectives_markdown(report))
    return report


def _run_seed(config: ObjectivesLabConfig, out: Path, console: Console) -> dict:
    """One seed: SFT, labelled pairs, every objective at its betas, C3PO; gold, KL, win rate."""
    world = ReviewWorld()
    started = time.perf_counter()

    console.rule(f"seed {config.seed}: tiny model + SFT")
    sft_policy, _ = prepare_sft_policy(world, config.base, out, config.seed)
    annotator = BradleyTerryAnnotator(
        world, temperature=config.annotator_temperature, seed=config.seed, report_strength=True
    )
    pairs = label_policy_pairs(
        sft_policy, world, annotator, world.prompts(config.pair_prompts, config.seed), config.seed
    )
    random.Random(config.seed).shuffle(pairs)
    console.print(f"{len(pairs)} labelled pairs")

    prompts = world.prompts(config.eval_prompts, config.seed + 7, split="test")
    sft_samples = Samples.draw(sft_policy, prompts, config.eval_samples, config.seed + 11)

    def evaluate(policy: Policy) -> dict[str, float]:
        result = evaluate_policy(
            policy, world, prompts, sft_policy, sft_samples, config.eval_samples, config.seed + 13
        )
        return {"gold_reward": result.gold_reward, "kl": result.kl,
                "win_rate_vs_sft": result.win_rate_vs_reference}  # fmt: skip

    sft_entry = evaluate(sft_policy)
    console.print(f"SFT gold reward {sft_entry['gold_reward']:.3f}")
    runs = []
    for run in config.runs:
        train = _trainer(run, pairs, config)
        for beta in run.betas:
            policy = Policy.from_pretrained(out / "sft")
            tick = time.perf_counter()
            train(policy, beta, out / "runs" / f"{run.name.replace('/', '-')}-beta{beta:g}")
            seconds = time.perf_counter() - tick
            entry = {"objective": run.name, "setting": _setting(beta, run.options), "beta": beta,
                     **evaluate(policy), "train_seconds": round(seconds, 2)}  # fmt: skip
            runs.append(entry)
            console.print(
                f"{run.name:18s} {entry['setting']:40s} gold {entry['gold_reward']:+.3f} "
                f"KL {entry['kl']:6.2f} win {entry['win_rate_vs_sft']:.2f} ({seconds:.1f}s)"
            )
    report_c3po = run_c3po(sft_policy, world, config, out, console)
    report = {"world": world.name, "seed": config.seed, "pairs": len(pairs),
              "sft": {"gold_reward": sft_entry["gold_reward"], "kl": sft_entry["kl"]},
              "runs": runs, "c3po": report_c3po,
              "wall_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    write_run_config(out, asdict(config))
    write_json(out / "objectives.json", report)
    return report


def run_c3po(
    sft_policy: Policy, world: ReviewWorld, config: ObjectivesLabConfig, out: Path, console: Console
) -> dict:
    """C3PO vs plain DPO on the same in-scope pairs: adherence in scope, drift outside it."""
    console.rule(f"C3PO: {CAMERA_BATTERY.text!r}")
    data = build_c3po_data(sft_policy, world, CAMERA_BATTERY, config.c3po_samples, config.seed)
    train = replace(config.c3po_train, seed=config.seed + 3)
    result = {"feedback": CAMERA_BATTERY.text, "in_scope_pairs": len(data.in_scope),
              "near_scope_examples": len(data.near_scope),
              "out_of_scope_examples": len(data.out_of_scope), "policies": {}}  # fmt: skip

    def measure(policy: Policy) -> dict[str, float]:
        return feedback_metrics(policy, sft_policy, data, world, CAMERA_BATTERY, 4, config.seed)

    result["policies"]["sft"] = measure(sft_policy)
    for name, sigma_soft, sigma_hard in (("dpo", 0.0, 0.0), ("c3po", 0.2, 0.1)):
        policy = Policy.from_pretrained(out / "sft")
        train_c3po(policy, data, train, out / "c3po" / name,
                   C3POConfig(sigma_soft=sigma_soft, sigma_hard=sigma_hard),
                   show_progress=False, overwrite=True)  # fmt: skip
        result["policies"][name] = measure(policy)
    for name, m in result["policies"].items():
        console.print(
            f"{name:5s} battery: in {m['in_keyword_rate']:.2f} near {m['near_keyword_rate']:.2f} "
            f"out {m['out_keyword_rate']:.2f}; out-of-scope log-prob shift "
            f"{m['out_logp_shift']:.2f}, gold {m['out_gold']:+.3f}"
        )
    return result


RUN_KEYS = ("gold_reward", "kl", "win_rate_vs_sft", "train_seconds")
C3PO_KEYS = ("in_keyword_rate", "near_keyword_rate", "out_keyword_rate", "near_logp_shift",
             "out_logp_shift", "out_gold")  # fmt: skip


def _aggregate(per_seed: list[dict]) -> dict:
    """SFT, every run and the C3PO policies as intervals over seeds (runs matched by order)."""
    policies = per_seed[0]["c3po"]["policies"]
    return {
        "sft": {k: lr.interval(s["sft"][k] for s in per_seed) for k in ("gold_reward", "kl")},
        "runs": [{"objective": r["objective"], "setting": r["setting"], "beta": r["beta"],
                  **{k: lr.interval(s["runs"][i][k] for s in per_seed) for k in RUN_KEYS}}
                 for i, r in enumerate(per_seed[0]["runs"])],
        "c3po": {name: {k: lr.interval(s["c3po"]["policies"][name][k] for s in per_seed)
                        for k in C3PO_KEYS} for name in policies},
    }  # fmt: skip


def _comparisons(per_seed: list[dict]) -> list[lr.Comparison]:
    """Every run's gold against the SFT policy's and against dpo at the same beta, and C3PO
    against plain DPO, paired by seed."""
    sft = [s["sft"]["gold_reward"] for s in per_seed]
    comparisons = [
        lr.compare(f"{r['objective']} {r['setting']} − SFT, gold",
                   [s["runs"][i]["gold_reward"] for s in per_seed], sft,
                   "raises gold over SFT", "lowers gold below SFT")
        for i, r in enumerate(per_seed[0]["runs"])
    ]  # fmt: skip
    runs = per_seed[0]["runs"]
    dpo = {r["beta"]: i for i, r in enumerate(runs) if r["objective"] == "dpo"}
    comparisons += [
        lr.compare(f"{r['objective']} {r['setting']} − dpo, gold",
                   [s["runs"][i]["gold_reward"] for s in per_seed],
                   [s["runs"][dpo[r["beta"]]]["gold_reward"] for s in per_seed],
                   "beats dpo at the same beta", "loses to dpo at the same beta")
        for i, r in enumerate(runs) if r["objective"] != "dpo" and r["beta"] in dpo
    ]  # fmt: skip
    c3po = [s["c3po"]["policies"] for s in per_seed]
    comparisons += [
        lr.compare(f"C3PO − DPO, {key.replace('_', ' ')}", [p["c3po"][key] for p in c3po],
                   [p["dpo"][key] for p in c3po], "C3PO is higher", "C3PO is lower")
        for key in ("in_keyword_rate", "out_keyword_rate", "out_logp_shift", "out_gold")
    ]  # fmt: skip
    return comparisons


def plot_gold_vs_kl(report: dict, path: Path) -> Path:
    """Gold reward against mean KL(π‖SFT) with 95 % error bars, one curve per objective."""
    runs = report["aggregate"]["runs"]
    series = {}
    for name in dict.fromkeys(r["objective"] for r in runs):
        points = sorted(((r["kl"]["mean"], r["gold_reward"]) for r in runs
                         if r["objective"] == name), key=lambda p: p[0])  # fmt: skip
        series[name] = ([kl for kl, _ in points], [gold for _, gold in points])
    series["SFT"] = ([0.0], [report["aggregate"]["sft"]["gold_reward"]])
    return lr.plot_curves(path, {"gold reward vs KL, one curve per objective (beta sweep)": series},
                          "KL(policy ‖ SFT), nats per response", "gold reward (held-out prompts)",
                          {"SFT": "k*"})  # fmt: skip


def objectives_markdown(report: dict) -> str:
    """Best setting per objective (by mean gold over seeds), every run, and the verdicts."""
    aggregate = report["aggregate"]
    by_name = {c["name"]: c for c in report["comparisons"]}
    best = {}
    for r in aggregate["runs"]:
        if r["objective"] not in best or (
            r["gold_reward"]["mean"] > best[r["objective"]]["gold_reward"]["mean"]
        ):
            best[r["objective"]] = r
    ranked = sorted(best.values(), key=lambda r: -r["gold_reward"]["mean"])
    header = ["objective", "setting", "gold reward", "Δ vs SFT (paired)", "verdict vs SFT",
              "Δ vs dpo, same beta (paired)", "verdict vs dpo", "KL (nats)", "win rate vs SFT",
              "train s"]  # fmt: skip

    def versus(r: dict, other: str) -> tuple[str, str]:
        c = by_name.get(f"{r['objective']} {r['setting']} − {other}, gold")
        return (lr.text(c["difference"], sign=True), c["verdict"].split(" (")[0]) if c else ("", "")

    def row(r: dict) -> tuple:
        return (r["objective"], r["setting"], r["gold_reward"], *versus(r, "SFT"),
                *versus(r, "dpo"), r["kl"], r["win_rate_vs_sft"],
                lr.text(r["train_seconds"], 0))  # fmt: skip

    lowered = sorted({c["name"].split(" beta")[0] for c in report["comparisons"]
                      if c["verdict"].startswith("lowers")})  # fmt: skip
    versus_dpo = {verdict: sorted({c["name"].split(" beta")[0] for c in report["comparisons"]
                                   if c["verdict"].startswith(verdict)})
                  for verdict in ("beats dpo", "loses to dpo")}  # fmt: skip
    notes = "".join(f"- **{k}**: {v}\n" for k, v in report["notes"].items())
    return (
        f"# Objectives lab (world {report['world']}, {report['pairs']} pairs per seed)\n\n"
        f"{lr.seeds_note(report)}\n\n"
        f"SFT gold reward **{lr.text(aggregate['sft']['gold_reward'])}**. "
        f"Runs whose gold is below SFT across seeds: {', '.join(lowered) or 'none'}. "
        f"Objectives with a run ahead of dpo at the same beta across seeds: "
        f"{', '.join(versus_dpo['beats dpo']) or 'none'}; behind it: "
        f"{', '.join(versus_dpo['loses to dpo']) or 'none'}.\n\n"
        "## Best setting per objective (by mean gold over seeds)\n\n"
        + lr.table(header, map(row, ranked))
        + "\n\n## Every run\n\n"
        + lr.table(header, map(row, aggregate["runs"]))
        + "\n\n![gold vs KL](gold_vs_kl.png)\n\n"
        + c3po_markdown(report)
        + f"\n## Notes\n\n{notes}"
    )


def c3po_markdown(report: dict) -> str:
    """Keyword rate per scope, drift and out-of-scope gold for SFT, plain DPO and C3PO."""
    c3po = report["per_seed"][0]["c3po"]
    rows = [(name, *(m[k] for k in C3PO_KEYS)) for name, m in report["aggregate"]["c3po"].items()]
    comparisons = [c for c in report["comparisons"] if c["name"].startswith("C3PO")]
    return (
        f'## C3PO: "{c3po["feedback"]}"\n\n'
        f"{c3po['in_scope_pairs']} in-scope pairs, {c3po['near_scope_examples']} near-scope and "
        f"{c3po['out_of_scope_examples']} out-of-scope baseline answers (seed "
        f"{report['seeds'][0]}). Keyword rate = share of answers mentioning the battery; shift = "
        "mean |Δ log-prob| of the baseline's answers.\n\n"
        + lr.table(["policy", "in-scope rate", "near-scope rate", "out-of-scope rate",
                    "near shift", "out shift", "out-of-scope gold"], rows)
        + "\n\n" + lr.comparisons_markdown(comparisons) + "\n"
    )  # fmt: skip
