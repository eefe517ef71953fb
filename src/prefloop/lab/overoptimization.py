"""The over-optimization experiment (Coste et al., "Reward Model Ensembles Help Mitigate
Overoptimization"), on the review world with its exact gold reward as the "gold RM".

SFT policy → a limited budget of labelled pairs (0% and 25% flipped labels) → K proxy reward
models (different seeds) → best-of-n on held-out prompts, selecting by one RM, the ensemble
mean, the worst case (WCO) or the uncertainty-weighted mean (UWO) → expected proxy and gold
reward per n with the unbiased best-of-n estimator and KL = log n − (n−1)/n.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console

from prefloop.eval.best_of_n import best_of_n_curve
from prefloop.eval.report import plt, write_json
from prefloop.eval.reward_model import pairwise_agreement
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


def run_lab(out: Path, fast: bool = False, seed: int = 0, console: Console | None = None) -> dict:
    """Run the experiment into ``out``; writes overoptimization.json, .md and plots."""
    config = OveroptimizationConfig.fast(seed) if fast else OveroptimizationConfig(seed=seed)
    return run_overoptimization(config, Path(out), console or Console())


def run_overoptimization(config: OveroptimizationConfig, out: Path, console: Console) -> dict:
    started = time.perf_counter()
    world, policy = start_review_lab(config, out, console, "1/3")

    console.rule("2/3 best-of-n pool from the SFT policy on held-out prompts")
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
        console.rule(f"3/3 proxy reward models and best-of-n, label noise {noise:.0%}")
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
        for kind, ensemble in ensembles.items():
            console.print(
                f"{kind}: head held-out gold accuracy "
                f"{np.round(ensemble['head_heldout_accuracy'], 3)}; "
                f"train {ensemble['train_seconds']:.0f} s, score {ensemble['score_seconds']:.0f} s"
            )
        settings.append({
            "label_noise": noise,
            "pairs": len(pairs),
            "flipped": sum(c.metadata.get("flipped", False) for c in pairs),
            **ensembles.pop("independent"),
            **ensembles,
        })  # fmt: skip
        for name in SELECTORS:
            s = settings[-1]["summary"][name]
            console.print(
                f"{name:>6}: peak gold {s['peak_gold']:.3f} at n={s['peak_n']}, "
                f"gold at n={s['final_n']} {s['final_gold']:.3f}, "
                f"proxy rise after peak {s['proxy_rise_after_peak']:+.3f}"
            )
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
    plot_overoptimization(report, out / "overoptimization.png")
    (out / "overoptimization.md").write_text(overoptimization_markdown(report))
    console.print(f"wrote {out / 'overoptimization.json'} in {report['seconds']:.0f} s")
    return report


def plot_overoptimization(report: dict, path: Path) -> Path:
    """Gold (left) and proxy (right) reward vs KL, one row per label-noise setting."""
    settings = report["settings"]
    fig, axes = plt.subplots(len(settings), 2, figsize=(10, 3.6 * len(settings)), squeeze=False)
    for row, setting in zip(axes, settings):
        for name, curve in setting["curves"].items():
            kl = [p["kl"] for p in curve]
            row[0].plot(kl, [p["gold"] for p in curve], marker="o", ms=3, label=name)
            row[1].plot(kl, [p["proxy"] for p in curve], marker="o", ms=3, label=name)
        for name, curve in setting.get("shared_heads", {}).get("curves", {}).items():
            kl = [p["kl"] for p in curve]
            row[0].plot(kl, [p["gold"] for p in curve], "--", lw=1, label=f"{name} (shared heads)")
            row[1].plot(kl, [p["proxy"] for p in curve], "--", lw=1, label=f"{name} (shared heads)")
        oracle = report["gold_oracle"]
        row[0].plot([p["kl"] for p in oracle], [p["gold"] for p in oracle], "k:", label="gold BoN")
        noise = setting["label_noise"]
        row[0].set_title(f"gold reward, label noise {noise:.0%}")
        row[1].set_title(f"proxy reward (standardised), label noise {noise:.0%}")
        for ax in row:
            ax.set_xlabel("KL(best-of-n ‖ SFT), nats")
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def overoptimization_markdown(report: dict) -> str:
    """The measured verdicts: does the single RM over-optimize, and do WCO/UWO reduce it."""
    lines = [
        f"# Over-optimization on the {report['world']} world (seed {report['seed']})",
        "",
        f"Best-of-n pool: {report['pool']['prompts']} held-out prompts x "
        f"{report['pool']['samples']} SFT samples (mean gold {report['pool']['mean_gold']:.3f}). "
        "Proxy rewards are each member's score standardised on the pool; `single` averages the "
        "K single-RM curves.",
        "",
        "![gold and proxy vs KL](overoptimization.png)",
    ]
    for setting in report["settings"]:
        summary = setting["summary"]
        lines += [
            "",
            f"## Label noise {setting['label_noise']:.0%} ({setting['pairs']} pairs, "
            f"{setting['flipped']} flipped)",
            "",
            "| selector | peak gold | at n (KL) | gold at max n | drop from peak | "
            "proxy rise after peak |",
            "|---|---|---|---|---|---|",
        ]
        for name, s in summary.items():
            lines.append(
                f"| {name} | {s['peak_gold']:.3f} | {s['peak_n']} ({s['peak_kl']:.2f}) | "
                f"{s['final_gold']:.3f} | {s['gold_drop_from_peak']:.3f} | "
                f"{s['proxy_rise_after_peak']:+.3f} |"
            )
        single = summary["single"]
        verdict = (
            f"The single RM over-optimizes: gold peaks at n={single['peak_n']} "
            f"({single['peak_gold']:.3f}) and falls by {single['gold_drop_from_peak']:.3f} to "
            f"{single['final_gold']:.3f} at n={single['final_n']} while its proxy rises by "
            f"{single['proxy_rise_after_peak']:+.3f}."
            if single["overoptimizes"]
            else "The single RM does not over-optimize at this budget: gold at the largest n "
            f"({single['final_gold']:.3f}) is within 0.02 of its peak or the proxy stops rising."
        )
        lines += ["", verdict]
        for name in ("wco", "uwo", "mean"):
            s = summary[name]
            lines.append(
                f"- {name}: gold at n={s['final_n']} is "
                f"{s['final_gold'] - single['final_gold']:+.3f} vs single; "
                f"drop from its own peak {s['gold_drop_from_peak']:.3f} vs "
                f"{single['gold_drop_from_peak']:.3f} for single."
            )
        if "shared_heads" in setting:
            lines += ["", *_shared_heads_markdown(setting)]
    return "\n".join(lines) + "\n"


def _shared_heads_markdown(setting: dict) -> list[str]:
    """K independent models against K heads on one backbone: gold at the largest n per compute."""
    kinds = {"independent": setting, "shared heads": setting["shared_heads"]}
    lines = [
        "K independent reward models vs K heads on one shared backbone (bootstrap pair weights):",
        "",
        "| ensemble | train s | score s | mean head accuracy | "
        + " | ".join(f"{m} gold at max n (drop)" for m in COMBINE_METHODS)
        + " |",
        "|---|---|---|---|" + "---|" * len(COMBINE_METHODS),
    ]
    for name, kind in kinds.items():
        summary = kind["summary"]
        cells = [f"{summary[m]['final_gold']:.3f} ({summary[m]['gold_drop_from_peak']:.3f})"
                 for m in COMBINE_METHODS]  # fmt: skip
        lines.append(
            f"| {name} | {kind['train_seconds']:.0f} | {kind['score_seconds']:.0f} | "
            f"{np.mean(kind['head_heldout_accuracy']):.3f} | " + " | ".join(cells) + " |"
        )
    best = {name: max(kind["summary"][m]["final_gold"] for m in COMBINE_METHODS)
            for name, kind in kinds.items()}  # fmt: skip
    single = setting["summary"]["single"]["final_gold"]
    cost = {name: kind["train_seconds"] + kind["score_seconds"] for name, kind in kinds.items()}
    ratio = cost["independent"] / max(cost["shared heads"], 1e-9)
    lines += [
        "",
        f"Best combiner's gold at the largest n: independent {best['independent']:.3f}, "
        f"shared heads {best['shared heads']:.3f}, one RM {single:.3f}; independent members "
        f"cost {ratio:.1f}x the seconds of shared heads (training + scoring). Gain over one RM "
        f"per unit of shared-heads compute: independent "
        f"{(best['independent'] - single) / ratio:+.3f}, shared heads "
        f"{best['shared heads'] - single:+.3f}.",
    ]
    return lines
