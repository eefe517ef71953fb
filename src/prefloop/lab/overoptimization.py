"""The over-optimization experiment (Coste et al., "Reward Model Ensembles Help Mitigate
Overoptimization"), on the review world with its exact gold reward as the "gold RM".

SFT policy → a limited budget of labelled pairs (0% and 25% flipped labels) → K proxy reward
models (different seeds) → best-of-n on held-out prompts, selecting by one RM, the ensemble
mean, the worst case (WCO) or the uncertainty-weighted mean (UWO) → expected proxy and gold
reward per n with the unbiased best-of-n estimator and KL = log n − (n−1)/n. Every seed redraws
the SFT model, pool, labels and proxies; the report compares selectors paired by seed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console

from prefloop.eval.best_of_n import best_of_n_curve
from prefloop.eval.report import write_json
from prefloop.eval.reward_model import pairwise_agreement
from prefloop.lab import report as lr
from prefloop.lab.common import BasePolicySetup, start_review_lab
from prefloop.lab.demo import label_policy_pairs
from prefloop.models.ensemble import RewardEnsemble
from prefloop.objectives.reward import COMBINE_METHODS, combine_rewards
from prefloop.train.engine import TrainConfig
from prefloop.train.ensemble import EnsembleConfig, train_ensemble
from prefloop.worlds.annotators import BradleyTerryAnnotator
from prefloop.worlds.reviews import ReviewWorld

SELECTORS = ("single", *COMBINE_METHODS)


@dataclass
class OveroptimizationConfig:
    """Every knob of the experiment; ``fast()`` is the reduced run (< 15 min on 2 cores)."""

    seed: int = 0
    base: BasePolicySetup = field(default_factory=BasePolicySetup)
    label_prompts: int = 300  # the label budget: one labelled pair per prompt
    heldout_prompts: int = 300
    annotator_temperature: float = 0.5
    label_noises: tuple[float, ...] = (0.0, 0.25)
    reward_model: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=32, epochs=2)
    )
    ensemble_size: int = 5
    uwo_lambda: float = 0.5
    bon_prompts: int = 64
    bon_samples: int = 1024  # pool size N per prompt; n runs over powers of two up to max_n
    max_n: int = 512

    @classmethod
    def fast(cls, seed: int = 0) -> OveroptimizationConfig:
        return replace(
            cls(seed=seed),
            base=BasePolicySetup.fast(),
            ensemble_size=3,
            bon_prompts=32,
            bon_samples=512,
            max_n=256,
        )

    def ns(self) -> list[int]:
        return [2**i for i in range(self.max_n.bit_length()) if 2**i <= self.max_n]


def _bon_pool(policy, world: ReviewWorld, config: OveroptimizationConfig):
    prompts = world.prompts(config.bon_prompts, config.seed + 100, split="test")
    responses = policy.generate(prompts, num_samples=config.bon_samples, seed=config.seed + 101,
                                batch_size=4)  # fmt: skip
    gold = np.array([[world.gold_reward(p, r) for r in rs] for p, rs in zip(prompts, responses)])
    flat_prompts = [p for p, rs in zip(prompts, responses) for _ in rs]
    flat_responses = [r for rs in responses for r in rs]
    lengths = np.array([[len(r.split()) for r in rs] for rs in responses])
    return flat_prompts, flat_responses, gold, lengths


def _summarize(curve: list[dict], tolerance: float = 0.02) -> dict:
    """Peak gold and where it is reached, against the gold and proxy at the largest n."""
    gold = [p["gold"] for p in curve]
    peak = int(np.argmax(gold))
    last = curve[-1]
    drop = gold[peak] - last["gold"]
    return {
        "peak_gold": gold[peak],
        "peak_n": curve[peak]["n"],
        "peak_kl": curve[peak]["kl"],
        "final_n": last["n"],
        "final_gold": last["gold"],
        "gold_drop_from_peak": drop,
        "proxy_rise_after_peak": last["proxy"] - curve[peak]["proxy"],
        "overoptimizes": bool(drop > tolerance and last["proxy"] > curve[peak]["proxy"]),
    }


def _average_curves(curves: list[list[dict]]) -> list[dict]:
    """Point-wise mean of curves that share their n (and hence KL) values."""
    return [
        {key: float(np.mean([c[i][key] for c in curves])) for key in curves[0][i]}
        | {"n": curves[0][i]["n"]}
        for i in range(len(curves[0]))
    ]


def _head_accuracies(ensemble: RewardEnsemble, world: ReviewWorld, heldout) -> list[float]:
    """Each head's held-out accuracy against the gold order."""
    prompts = [c.prompt for c in heldout]
    chosen = ensemble.raw_scores(prompts, [c.chosen for c in heldout]).numpy()
    rejected = ensemble.raw_scores(prompts, [c.rejected for c in heldout]).numpy()
    gold_chosen = np.array([world.gold_reward(c.prompt, c.chosen) for c in heldout])
    gold_rejected = np.array([world.gold_reward(c.prompt, c.rejected) for c in heldout])
    return [pairwise_agreement(c, r, gold_chosen, gold_rejected) for c, r in zip(chosen, rejected)]


def _proxy_ensemble(sft_dir, pairs, config, out, shared_backbone, world, heldout, pool) -> dict:
    """Train K proxies (independent models, or heads on one backbone) and their BoN curves.

    Shared heads get bootstrap pair weights: on one backbone, init alone barely separates them.
    """
    prompts, responses, gold = pool
    started = time.perf_counter()
    ensemble, _ = train_ensemble(
        sft_dir, pairs, replace(config.reward_model, seed=config.seed + 10), out,
        EnsembleConfig(size=config.ensemble_size, bootstrap=shared_backbone,
                       shared_backbone=shared_backbone),
        show_progress=False, overwrite=True,
    )  # fmt: skip
    trained = time.perf_counter()
    scores = ensemble.normalize_on(prompts, responses)  # [K, prompts * samples]
    scored = time.perf_counter()
    curves = {}
    if not shared_backbone:
        members = [best_of_n_curve(s.numpy().reshape(gold.shape), gold, config.ns())
                   for s in scores]  # fmt: skip
        curves["single"] = _average_curves(members)
    for method in COMBINE_METHODS:
        proxy = combine_rewards(scores, method, config.uwo_lambda).numpy().reshape(gold.shape)
        curves[method] = best_of_n_curve(proxy, gold, config.ns())
    result = {
        "curves": curves,
        "summary": {name: _summarize(curve) for name, curve in curves.items()},
        "head_heldout_accuracy": _head_accuracies(ensemble, world, heldout),
        "train_seconds": trained - started,
        "score_seconds": scored - trained,
    }
    if not shared_backbone:
        result["single_members"] = members
    return result


def run_lab(
    out: Path, fast: bool = False, seed: int = 0, seeds: int | None = None,
    console: Console | None = None,
) -> dict:  # fmt: skip
    """Run the experiment at each seed into ``out``; writes overoptimization.json, .md, .png."""
    config = OveroptimizationConfig.fast() if fast else OveroptimizationConfig()
    return run_overoptimization(config, lr.seed_list(seed, seeds, fast), Path(out),
                                console or Console(), fast)  # fmt: skip


def run_overoptimization(
    config: OveroptimizationConfig, seeds: list[int], out: Path, console: Console,
    fast: bool = False,
) -> dict:  # fmt: skip
    """Configure per seed, run, and report through the shared lab report."""
    started = time.perf_counter()
    per_seed = lr.run_seeds(lambda s, d: _run_seed(replace(config, seed=s), d, console), seeds, out)
    report = lr.lab_report("overoptimization", per_seed, _aggregate(per_seed),
                           _comparisons(per_seed), fast, time.perf_counter() - started,
                           world=per_seed[0]["world"])  # fmt: skip
    plot_overoptimization(report, out / "overoptimization.png")
    lr.write_lab_report(out, "overoptimization", report, overoptimization_markdown(report))
    console.print(f"wrote {out / 'overoptimization.json'} in {report['seconds']:.0f} s")
    return report


def _run_seed(config: OveroptimizationConfig, out: Path, console: Console) -> dict:
    """One seed: SFT, best-of-n pool, and per label-noise setting both kinds of ensemble."""
    started = time.perf_counter()
    world, policy = start_review_lab(config, out, console, f"seed {config.seed}: 1/3")

    console.rule(f"seed {config.seed}: 2/3 best-of-n pool from the SFT policy")
    prompts, responses, gold, lengths = _bon_pool(policy, world, config)
    shape = gold.shape
    oracle = best_of_n_curve(gold, gold, config.ns())
    console.print(f"pool {shape[0]} prompts x {shape[1]} samples; mean gold {gold.mean():.3f}")

    label_prompts = world.prompts(config.label_prompts, config.seed + 1)
    heldout_prompts = world.prompts(config.heldout_prompts, config.seed + 2, split="test")
    clean = BradleyTerryAnnotator(world, config.annotator_temperature, seed=config.seed + 3)
    heldout = label_policy_pairs(policy, world, clean, heldout_prompts, config.seed + 4)
    settings = []
    for noise in config.label_noises:
        console.rule(f"seed {config.seed}: 3/3 proxy RMs and best-of-n, label noise {noise:.0%}")
        annotator = BradleyTerryAnnotator(
            world, config.annotator_temperature, flip_rate=noise, seed=config.seed + 5
        )
        pairs = label_policy_pairs(policy, world, annotator, label_prompts, config.seed + 6)
        pool = (prompts, responses, gold)
        ensembles = {
            kind: _proxy_ensemble(out / "sft", pairs, config, out / f"rm-noise-{noise:g}-{kind}",
                                  kind == "shared_heads", world, heldout, pool)
            for kind in ("independent", "shared_heads")
        }  # fmt: skip
        settings.append({
            "label_noise": noise,
            "pairs": len(pairs),
            "flipped": sum(c.metadata.get("flipped", False) for c in pairs),
            **ensembles.pop("independent"),
            **ensembles,
        })  # fmt: skip
        for name in SELECTORS:
            s = settings[-1]["summary"][name]
            console.print(f"{name:>6}: peak gold {s['peak_gold']:.3f} at n={s['peak_n']}, "
                          f"gold at n={s['final_n']} {s['final_gold']:.3f}")  # fmt: skip
    report = {
        "world": world.name,
        "seed": config.seed,
        "pool": {
            "prompts": shape[0],
            "samples": shape[1],
            "mean_gold": float(gold.mean()),
            "mean_length": float(lengths.mean()),
        },  # fmt: skip
        "gold_oracle": oracle,
        "settings": settings,
        "seconds": time.perf_counter() - started,
    }
    write_json(out / "overoptimization.json", report)
    return report


SUMMARY_KEYS = ("peak_gold", "final_gold", "gold_drop_from_peak", "proxy_rise_after_peak")


def _selectors(setting: dict) -> dict[str, dict]:
    """Every selector of one setting by its report name: independent, then shared-heads ones."""
    shared = setting.get("shared_heads", {})
    return {**{name: {"curve": c, "summary": setting["summary"][name]}
               for name, c in setting["curves"].items()},
            **{f"{name} (shared heads)": {"curve": c, "summary": shared["summary"][name]}
               for name, c in shared.get("curves", {}).items()}}  # fmt: skip


def _aggregate(per_seed: list[dict]) -> dict:
    """Per noise setting and selector: curve points and summary numbers as intervals."""
    settings = []
    for i, first in enumerate(per_seed[0]["settings"]):
        runs = [_selectors(s["settings"][i]) for s in per_seed]
        selectors = {}
        for name, entry in runs[0].items():
            points = range(len(entry["curve"]))
            selectors[name] = {
                "n": [p["n"] for p in entry["curve"]],
                "kl": [p["kl"] for p in entry["curve"]],
                **{key: [lr.interval(r[name]["curve"][j][key] for r in runs) for j in points]
                   for key in ("gold", "proxy")},
                **{key: lr.interval(r[name]["summary"][key] for r in runs) for key in SUMMARY_KEYS},
                "overoptimizes_seeds": sum(r[name]["summary"]["overoptimizes"] for r in runs),
            }  # fmt: skip
        kinds = {"independent": [s["settings"][i] for s in per_seed],
                 "shared heads": [s["settings"][i]["shared_heads"] for s in per_seed]}  # fmt: skip
        settings.append({
            "label_noise": first["label_noise"],
            "pairs": first["pairs"],
            "flipped": lr.interval(s["settings"][i]["flipped"] for s in per_seed),
            "selectors": selectors,
            "ensembles": {kind: {"head_accuracy": lr.interval(np.mean(r["head_heldout_accuracy"])
                                                             for r in rs),
                                 "seconds": lr.interval(r["train_seconds"] + r["score_seconds"]
                                                        for r in rs)}
                          for kind, rs in kinds.items()},
        })  # fmt: skip
    oracle = [s["gold_oracle"] for s in per_seed]
    return {
        "pool_mean_gold": lr.interval(s["pool"]["mean_gold"] for s in per_seed),
        "gold_oracle": {
            "kl": [p["kl"] for p in oracle[0]],
            "gold": [lr.interval(o[j]["gold"] for o in oracle) for j in range(len(oracle[0]))],
        },  # fmt: skip
        "settings": settings,
    }


def _comparisons(per_seed: list[dict]) -> list[lr.Comparison]:
    """Each combiner against one RM (gold at the largest n, and the drop from its peak), and
    shared heads against independent members, paired by seed, per label-noise setting."""
    comparisons = []
    for i, first in enumerate(per_seed[0]["settings"]):
        noise = f"noise {first['label_noise']:.0%}"
        runs = [_selectors(s["settings"][i]) for s in per_seed]

        def values(name: str, key: str, runs=runs) -> list[float]:
            return [r[name]["summary"][key] for r in runs]

        for method in COMBINE_METHODS:
            comparisons += [
                lr.compare(f"{noise}: {method} − single, gold at max n",
                           values(method, "final_gold"), values("single", "final_gold"),
                           f"{method} ends above one RM", f"{method} ends below one RM"),
                lr.compare(f"{noise}: {method} − single, gold drop from peak",
                           values(method, "gold_drop_from_peak"),
                           values("single", "gold_drop_from_peak"),
                           f"{method} over-optimizes more than one RM",
                           f"{method} curbs over-optimization"),
                lr.compare(f"{noise}: {method} shared heads − independent, gold at max n",
                           values(f"{method} (shared heads)", "final_gold"),
                           values(method, "final_gold"), "shared heads end above independent",
                           "shared heads end below independent"),
            ]  # fmt: skip
    return comparisons


def plot_overoptimization(report: dict, path: Path) -> Path:
    """Gold and proxy reward vs KL with 95 % error bars, one row per label-noise setting."""
    panels = {}
    aggregate = report["aggregate"]
    for setting in aggregate["settings"]:
        noise = f"label noise {setting['label_noise']:.0%}"
        for key, title in (("gold", f"gold reward, {noise}"), ("proxy", f"proxy (std.), {noise}")):
            panels[title] = {name: (s["kl"], s[key])
                             for name, s in setting["selectors"].items()}  # fmt: skip
        oracle = aggregate["gold_oracle"]
        panels[f"gold reward, {noise}"]["gold BoN"] = (oracle["kl"], oracle["gold"])
    styles = {"gold BoN": "k:"} | {f"{m} (shared heads)": "--" for m in COMBINE_METHODS}
    return lr.plot_curves(path, panels, "KL(best-of-n ‖ SFT), nats", "mean reward", styles)


def overoptimization_markdown(report: dict) -> str:
    """Per setting: each selector's numbers over seeds and the verdicts of the comparisons."""
    aggregate, seeds = report["aggregate"], len(report["seeds"])
    pool = report["per_seed"][0]["pool"]
    lines = [
        f"# Over-optimization on the {report['world']} world",
        "",
        lr.seeds_note(report),
        "",
        f"Best-of-n pool per seed: {pool['prompts']} held-out prompts x {pool['samples']} SFT "
        f"samples (mean gold {lr.text(aggregate['pool_mean_gold'])}). Proxy rewards are "
        "each member's score standardised on the pool; `single` averages the K single-RM curves.",
        "",
        "![gold and proxy vs KL](overoptimization.png)",
    ]
    comparisons = report["comparisons"]
    for setting in aggregate["settings"]:
        noise = f"noise {setting['label_noise']:.0%}"
        rows = [(name, *(s[k] for k in SUMMARY_KEYS), s["n"][-1],
                 f"{s['overoptimizes_seeds']}/{seeds}")
                for name, s in setting["selectors"].items()]  # fmt: skip
        ensembles = setting["ensembles"]
        lines += [
            "",
            f"## Label noise {setting['label_noise']:.0%} ({setting['pairs']} pairs, "
            f"{lr.text(setting['flipped'], 1)} flipped)",
            "",
            lr.table(["selector", "peak gold", "gold at max n", "drop from peak",
                      "proxy rise after peak", "max n", "over-optimizes (seeds)"], rows),
            "",
            "Over-optimizes: gold at the largest n more than 0.02 below its peak while the proxy "
            "still rises. Head held-out gold accuracy: independent "
            f"{lr.text(ensembles['independent']['head_accuracy'])}, shared heads "
            f"{lr.text(ensembles['shared heads']['head_accuracy'])}; seconds (train + "
            f"score): independent {lr.text(ensembles['independent']['seconds'], 0)}, "
            f"shared heads {lr.text(ensembles['shared heads']['seconds'], 0)}.",
            "",
            lr.comparisons_markdown(c for c in comparisons if c["name"].startswith(f"{noise}:")),
        ]  # fmt: skip
    return "\n".join(lines) + "\n"
