"""How imperfect teachers degrade the Bradley–Terry reward model; how much robust options recover.

For each B-Pref knob alone (rationality, myopia, mistakes, skip and equal thresholds) a teacher
labels a fixed query budget of SFT-sample pairs of the review world; the transformer BT reward
model (value head on the SFT backbone) is trained on the labels plainly, with soft ties, with
label smoothing, and with the Secrets-II treatment (strengths from a bootstrap ensemble of K
heads on one shared backbone). The score is held-out agreement with the gold order. Regret-based
labels are measured on the tabular world, where regret is exact (``lab/regret_labels.py``).
Every seed redraws the SFT model, pairs, teachers' noise and models; the report compares options
paired by seed.
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
from prefloop.lab import report as lr
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
        """Smaller budget and held-out set; the regret labels' seed follows ``seed`` per run."""
        return replace(
            cls(seed=seed),
            base=BasePolicySetup.fast(),
            budget=600,
            heldout_prompts=300,
            regret=RegretLabelsConfig(pairs=600),
        )


def run_lab(
    out: Path, fast: bool = False, seed: int = 0, seeds: int | None = None,
    console: Console | None = None,
) -> dict:  # fmt: skip
    """Run the experiment at each seed into ``out``; writes teacher_knobs.json and .md."""
    config = TeacherKnobsConfig.fast() if fast else TeacherKnobsConfig()
    return run_teacher_knobs(config, lr.seed_list(seed, seeds, fast), Path(out),
                             console or Console(), fast)  # fmt: skip


def run_teacher_knobs(
    config: TeacherKnobsConfig, seeds: list[int], out: Path, console: Console,
    fast: bool = False,
) -> dict:  # fmt: skip
    """Configure per seed, run, and report through the shared lab report."""
    started = time.perf_counter()
    per_seed = lr.run_seeds(lambda s, d: _run_seed(replace(config, seed=s), d, console), seeds, out)
    report = lr.lab_report("teacher_knobs", per_seed, _aggregate(per_seed),
                           _comparisons(per_seed), fast, time.perf_counter() - started,
                           world=per_seed[0]["world"], budget=config.budget)  # fmt: skip
    lr.write_lab_report(out, "teacher_knobs", report, teacher_knobs_markdown(report))
    console.print(f"wrote {out / 'teacher_knobs.json'} in {report['seconds']:.0f} s")
    return report


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


def _run_seed(config: TeacherKnobsConfig, out: Path, console: Console) -> dict:
    """One seed: SFT, every teacher's labels and four reward models each, regret labels."""
    started = time.perf_counter()
    world, policy = start_review_lab(config, out, console, f"seed {config.seed}: 1/3")
    sft_dir = out / "sft"
    prompts = world.prompts(config.budget, config.seed + 1)
    samples = policy.generate(prompts, num_samples=2, seed=config.seed + 2)
    triples = [(p, a, b) for p, (a, b) in zip(prompts, samples)]
    test_prompts = world.prompts(config.heldout_prompts, config.seed + 3, split="test")
    heldout_samples = policy.generate(test_prompts, num_samples=2, seed=config.seed + 4)
    heldout = gold_pairs(world, test_prompts, heldout_samples, 0.1)
    rm = replace(config.reward_model, seed=config.seed + 10)

    console.rule(f"seed {config.seed}: 2/3 B-Pref knobs on the review world")
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

    console.rule(f"seed {config.seed}: 3/3 regret vs partial-return labels, tabular world")
    regret = run_regret_labels(replace(config.regret, seed=config.seed))
    for row in regret:
        console.print(row)
    report = {"world": world.name, "seed": config.seed, "budget": config.budget,
              "heldout_pairs": len(heldout), "results": results, "regret_labels": regret,
              "seconds": time.perf_counter() - started}  # fmt: skip
    write_json(out / "teacher_knobs.json", report)
    return report


OPTIONS = ("soft_ties", "label_smoothing", "secrets_ii")
ROW_KEYS = ("labels", "ties", "true_mistakes", "plain", *OPTIONS, "flipped_by_treatment")
REGRET_KEYS = ("agreement_partial_return", "agreement_regret", "planned_return_share")


def _row_name(row: dict) -> str:
    return f"{row['knob']} {row['setting']}" if row["setting"] else row["knob"]


def _aggregate(per_seed: list[dict]) -> dict:
    """Each teacher row's counts and agreements, and the regret rows, as intervals over seeds."""
    first = per_seed[0]
    return {
        "heldout_pairs": lr.interval(s["heldout_pairs"] for s in per_seed),
        "results": [{"knob": row["knob"], "setting": row["setting"],
                     **{k: lr.interval(s["results"][i][k] for s in per_seed) for k in ROW_KEYS}}
                    for i, row in enumerate(first["results"])],
        "regret_labels": [{"teacher": row["teacher"], "pairs": row["pairs"],
                           **{k: lr.interval(s["regret_labels"][i][k] for s in per_seed)
                              for k in REGRET_KEYS}}
                          for i, row in enumerate(first["regret_labels"])],
    }  # fmt: skip


def _comparisons(per_seed: list[dict]) -> list[lr.Comparison]:
    """Each imperfect teacher against the perfect one, each robust option against plain BT (per
    row and on average over the imperfect rows), and regret against partial-return labels."""
    rows = [s["results"] for s in per_seed]
    perfect = [next(r["plain"] for r in rs if r["knob"] == "perfect") for rs in rows]
    imperfect = [i for i, r in enumerate(rows[0]) if r["knob"] != "perfect"]
    comparisons = []
    for i in imperfect:
        name = _row_name(rows[0][i])
        plain = [rs[i]["plain"] for rs in rows]
        comparisons.append(
            lr.compare(
                f"{name}: plain − perfect teacher",
                plain,
                perfect,
                f"{name} helps the RM",
                f"{name} degrades the RM",
            )
        )
        comparisons += [lr.compare(f"{name}: {option} − plain", [rs[i][option] for rs in rows],
                                   plain, f"{option} recovers accuracy", f"{option} costs accuracy")
                        for option in OPTIONS]  # fmt: skip
    plain_mean = [np.mean([rs[i]["plain"] for i in imperfect]) for rs in rows]
    comparisons += [
        lr.compare(f"mean over imperfect teachers: {option} − plain",
                   [np.mean([rs[i][option] for i in imperfect]) for rs in rows], plain_mean,
                   f"{option} recovers accuracy on average", f"{option} costs accuracy on average")
        for option in OPTIONS
    ]  # fmt: skip
    regret = [{r["teacher"]: r for r in s["regret_labels"]} for s in per_seed]
    comparisons += [
        lr.compare(f"tabular: regret − partial-return teacher, {key.replace('_', ' ')}",
                   [r["regret"][key] for r in regret], [r["partial_return"][key] for r in regret],
                   "regret labels score higher", "regret labels score lower")
        for key in REGRET_KEYS
    ]  # fmt: skip
    return comparisons


def teacher_knobs_markdown(report: dict) -> str:
    """Every teacher's agreements over seeds, and the verdicts of the paired comparisons."""
    aggregate = report["aggregate"]
    perfect = next(r["plain"] for r in aggregate["results"] if r["knob"] == "perfect")
    rows = [(r["knob"], r["setting"], *(r[k] for k in ROW_KEYS)) for r in aggregate["results"]]
    regret = [(r["teacher"], r["pairs"], *(r[k] for k in REGRET_KEYS))
              for r in aggregate["regret_labels"]]  # fmt: skip
    return "\n".join([
        f"# Imperfect teachers vs the BT reward model ({report['world']} world)",
        "",
        lr.seeds_note(report),
        "",
        f"Budget {report['budget']} queries per teacher; held-out agreement with the gold order "
        f"on {lr.text(aggregate['heldout_pairs'], 0)} pairs per seed. A perfect teacher gives "
        f"{lr.text(perfect)}.",
        "",
        lr.table(["knob", "setting", "labels", "ties", "true mistakes", "plain", "soft ties",
                  "label smoothing", "Secrets-II", "flipped by Secrets-II"], rows),
        "",
        lr.comparisons_markdown(report["comparisons"]),
        "",
        "## Regret vs partial-return labels (tabular grid world, partial-return BT learner)",
        "",
        lr.table(["teacher", "pairs", "agreement with partial return", "agreement with regret",
                  "planned return / optimal"], regret),
    ]) + "\n"  # fmt: skip
