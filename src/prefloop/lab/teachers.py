"""How imperfect teachers degrade the Bradley–Terry reward model; how much robust options recover.

For each B-Pref knob alone (rationality, myopia, mistakes, skip and equal thresholds) a teacher
labels a fixed query budget of SFT-sample pairs of the review world; the transformer BT reward
model (value head on the SFT backbone) is trained on the labels plainly, with soft ties, with
label smoothing, and with the Secrets-II treatment (strengths from a bootstrap ensemble of K
heads on one shared backbone). The score is held-out agreement with the gold order. Regret-based
labels are measured on the tabular world, where regret is exact (``lab/regret_labels.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console

from prefloop.data.records import Comparison
from prefloop.eval.report import write_json
from prefloop.eval.reward_model import evaluate_reward_model
from prefloop.lab.common import BasePolicySetup, start_review_lab
from prefloop.lab.regret_labels import RegretLabelsConfig, run_regret_labels
from prefloop.models.reward import RewardModel
from prefloop.models.strength import RobustOptions, ensemble_strength, robust_relabel
from prefloop.train.engine import TrainConfig
from prefloop.train.ensemble import EnsembleConfig, train_ensemble
from prefloop.train.reward_model import RewardModelConfig, train_reward_model
from prefloop.worlds.review_shifts import gold_pairs
from prefloop.worlds.teachers import BPrefTeacher

KNOBS: dict[str, list[dict]] = {
    "perfect": [{}],
    "rationality": [{"rationality": b} for b in (3.0, 1.0)],
    "myopia": [{"myopia": 0.4}],
    "mistake": [{"mistake": e} for e in (0.1, 0.25)],
    "skip_threshold": [{"skip_threshold": 0.5}],
    "equal_threshold": [{"equal_threshold": 0.5}],
}
LABEL_SMOOTHING = 0.05


@dataclass
class TeacherKnobsConfig:
    """Every knob of the experiment; ``fast()`` is the reduced run."""

    seed: int = 0
    base: BasePolicySetup = field(default_factory=BasePolicySetup)
    budget: int = 1000  # queries per teacher; skipped pairs are spent too
    heldout_prompts: int = 600
    reward_model: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=32, epochs=6)
    )
    strength_heads: int = 4
    robust: RobustOptions = field(default_factory=RobustOptions)
    regret: RegretLabelsConfig = field(default_factory=RegretLabelsConfig)

    @classmethod
    def fast(cls, seed: int = 0) -> TeacherKnobsConfig:
        return replace(
            cls(seed=seed),
            base=BasePolicySetup.fast(),
            budget=600,
            heldout_prompts=300,
            regret=RegretLabelsConfig(pairs=600, seed=seed),
        )


def run_lab(out: Path, fast: bool = False, seed: int = 0, console: Console | None = None) -> dict:
    """Run the experiment into ``out``; writes teacher_knobs.json and teacher_knobs.md."""
    config = TeacherKnobsConfig.fast(seed) if fast else TeacherKnobsConfig(seed=seed)
    return run_teacher_knobs(config, Path(out), console or Console())


def _agreement(
    sft_dir: Path, labels: list[Comparison], config: TrainConfig, out: Path, world, heldout,
    **options,
) -> float:  # fmt: skip
    model = RewardModel.from_pretrained(sft_dir, seed=config.seed)
    train_reward_model(model, labels, config, out, RewardModelConfig(**options),
                       show_progress=False, overwrite=True)  # fmt: skip
    return evaluate_reward_model(model, world, heldout)["heldout_accuracy"]


def _secrets_ii(sft_dir, labels, config: TeacherKnobsConfig, out: Path):
    """Labels after the Secrets-II treatment, with strengths from a K-head bootstrap ensemble."""
    ensemble, _ = train_ensemble(
        sft_dir,
        labels,
        replace(config.reward_model, seed=config.seed + 7),
        out,
        EnsembleConfig(size=config.strength_heads, bootstrap=True, shared_backbone=True),
        show_progress=False,
        overwrite=True,
    )
    return robust_relabel(labels, *ensemble_strength(ensemble, labels), config.robust)


def run_teacher_knobs(config: TeacherKnobsConfig, out: Path, console: Console) -> dict:
    started = time.perf_counter()
    world, policy = start_review_lab(config, out, console, "1/3")
    sft_dir = out / "sft"
    prompts = world.prompts(config.budget, config.seed + 1)
    samples = policy.generate(prompts, num_samples=2, seed=config.seed + 2)
    triples = [(p, a, b) for p, (a, b) in zip(prompts, samples)]
    test_prompts = world.prompts(config.heldout_prompts, config.seed + 3, split="test")
    heldout_samples = policy.generate(test_prompts, num_samples=2, seed=config.seed + 4)
    heldout = gold_pairs(world, test_prompts, heldout_samples, 0.1)
    rm = replace(config.reward_model, seed=config.seed + 10)

    console.rule("2/3 B-Pref knobs on the review world")
    results = []
    for knob, settings in KNOBS.items():
        for setting in settings:
            teacher = BPrefTeacher(world, seed=config.seed + 5, **setting)
            labels, spent = teacher.label_pairs(triples)
            run = out / f"{knob}-{len(results)}"
            hard = [replace(c, strength=None) for c in labels]  # ties as hard labels, as given
            row = {
                "knob": knob,
                "setting": setting,
                "queries": spent,
                "labels": len(labels),
                "ties": sum(c.strength == 0.5 for c in labels),
                "true_mistakes": sum(c.metadata.get("flipped", False) for c in labels),
            }
            row["plain"] = _agreement(sft_dir, hard, rm, run / "plain", world, heldout)
            row["soft_ties"] = (
                _agreement(sft_dir, labels, rm, run / "soft", world, heldout, use_strength=True)
                if row["ties"]
                else row["plain"]
            )
            row["label_smoothing"] = _agreement(sft_dir, hard, rm, run / "ls", world, heldout,
                                                label_smoothing=LABEL_SMOOTHING)  # fmt: skip
            treated = _secrets_ii(sft_dir, labels, config, run / "strength")
            row["secrets_ii"] = _agreement(sft_dir, treated, rm, run / "robust", world, heldout,
                                           use_margin=True, use_strength=True)  # fmt: skip
            row["flipped_by_treatment"] = sum(c.metadata["treatment"] == "flipped" for c in treated)
            results.append(row)
            console.print(
                f"{knob:>15} {setting}: {row['labels']} labels, plain {row['plain']:.3f}, "
                f"soft ties {row['soft_ties']:.3f}, smoothing {row['label_smoothing']:.3f}, "
                f"Secrets-II {row['secrets_ii']:.3f}"
            )

    console.rule("3/3 regret vs partial-return labels on the tabular world")
    regret = run_regret_labels(config.regret)
    for row in regret:
        console.print(row)
    report = {"world": world.name, "seed": config.seed, "budget": config.budget,
              "heldout_pairs": len(heldout), "results": results, "regret_labels": regret,
              "seconds": time.perf_counter() - started}  # fmt: skip
    write_json(out / "teacher_knobs.json", report)
    (out / "teacher_knobs.md").write_text(teacher_knobs_markdown(report))
    console.print(f"wrote {out / 'teacher_knobs.json'} in {report['seconds']:.0f} s")
    return report


def teacher_knobs_markdown(report: dict) -> str:
    """Degradation per knob against the perfect teacher, and what the robust options recover."""
    perfect = next(r["plain"] for r in report["results"] if r["knob"] == "perfect")
    lines = [
        f"# Imperfect teachers vs the BT reward model ({report['world']} world, seed "
        f"{report['seed']})",
        "",
        f"Budget {report['budget']} queries per teacher; held-out agreement with the gold order "
        f"on {report['heldout_pairs']} pairs. A perfect teacher gives {perfect:.3f}.",
        "",
        "| knob | setting | labels | ties | true mistakes | plain | vs perfect | soft ties | "
        "label smoothing | Secrets-II | flipped by Secrets-II |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['knob']} | {r['setting']} | {r['labels']} | {r['ties']} | "
            f"{r['true_mistakes']} | {r['plain']:.3f} | {r['plain'] - perfect:+.3f} | "
            f"{r['soft_ties']:.3f} | {r['label_smoothing']:.3f} | {r['secrets_ii']:.3f} | "
            f"{r['flipped_by_treatment']} |"
        )
    imperfect = [r for r in report["results"] if r["knob"] != "perfect"]
    gains = {name: np.mean([r[name] - r["plain"] for r in imperfect])
             for name in ("soft_ties", "label_smoothing", "secrets_ii")}  # fmt: skip
    best = np.mean([max(r["soft_ties"], r["label_smoothing"], r["secrets_ii"]) - r["plain"]
                    for r in imperfect])  # fmt: skip
    lines += [
        "",
        "Mean change over plain BT across the imperfect teachers: "
        + ", ".join(f"{name} {gain:+.3f}" for name, gain in gains.items())
        + f"; the best option per row (chosen after the fact, an upper bound) {best:+.3f}.",
        "",
        "## Regret vs partial-return labels (tabular grid world, partial-return BT learner)",
        "",
        "| teacher | pairs | agreement with partial return | agreement with regret | "
        "planned return / optimal |",
        "|---|---|---|---|---|",
    ]
    for r in report["regret_labels"]:
        lines.append(
            f"| {r['teacher']} | {r['pairs']} | {r['agreement_partial_return']:.3f} | "
            f"{r['agreement_regret']:.3f} | {r['planned_return_share']:.3f} |"
        )
    return "\n".join(lines) + "\n"
