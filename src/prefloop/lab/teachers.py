"""How imperfect teachers degrade a BT reward model, and how much the robust options recover.

For each B-Pref knob alone (rationality, myopia, mistakes, skip and equal thresholds) a teacher
labels a fixed query budget of corpus pairs of the review world; a Bradley–Terry head on
bag-of-words features (``VPLRewardModel(personalized=False)``: cheap enough for dozens of fits
on a CPU) is trained on the labels, plainly, with label smoothing, and with the Secrets-II
treatment (strengths from a bootstrap ensemble of such heads). The score is held-out agreement
with the gold order. Run with ``python -m prefloop.lab.teachers --out DIR``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from prefloop.data.records import Comparison
from prefloop.eval.report import write_json
from prefloop.models.ensemble import bootstrap_sample
from prefloop.models.personalized import (
    PersonalizedPairs,
    VPLRewardModel,
    bag_of_words_embedder,
    train_vpl,
)
from prefloop.models.strength import RobustOptions, preference_strength, robust_relabel
from prefloop.train.engine import TrainConfig
from prefloop.worlds.review_shifts import corpus_sampler, gold_pairs
from prefloop.worlds.reviews import ReviewWorld
from prefloop.worlds.teachers import BPrefTeacher

KNOBS: dict[str, list[dict]] = {
    "perfect": [{}],
    "rationality": [{"rationality": b} for b in (3.0, 1.0)],
    "myopia": [{"myopia": 0.4}],
    "mistake": [{"mistake": e} for e in (0.1, 0.25)],
    "skip_threshold": [{"skip_threshold": 0.5}],
    "equal_threshold": [{"equal_threshold": 0.5}],
}


def _fit(pairs: list[Comparison], embed, config: TrainConfig, out: Path) -> VPLRewardModel:
    torch.manual_seed(config.seed)
    model = VPLRewardModel(len(embed([pairs[0].prompt], ["."])[0]), personalized=False)
    train_vpl(model, PersonalizedPairs(pairs, embed), config, out)
    return model


def _scores(model: VPLRewardModel, embed, prompts, responses) -> torch.Tensor:
    with torch.no_grad():
        features = embed(prompts, responses)
        return model.reward(features, torch.zeros(len(features), model.latent_dim))


def _agreement(model, embed, heldout: list[Comparison]) -> float:
    prompts = [c.prompt for c in heldout]
    chosen = _scores(model, embed, prompts, [c.chosen for c in heldout])
    rejected = _scores(model, embed, prompts, [c.rejected for c in heldout])
    return float((chosen > rejected).float().mean())


def run_teacher_knobs(out: Path, seed: int = 0, budget: int = 800, members: int = 3) -> dict:
    """Gold agreement per knob setting for plain, smoothed and Secrets-II BT; writes JSON/MD."""
    torch.set_num_threads(1)
    world = ReviewWorld()
    vocabulary = sorted({w for _, r in world.corpus(3000, seed) for w in r.split()})
    embed = bag_of_words_embedder(vocabulary)
    sample = corpus_sampler(world, seed)
    prompts = world.prompts(budget, seed + 1)
    triples = [(p, a, b) for p, (a, b) in zip(prompts, sample(prompts, 2))]
    test_prompts = world.prompts(1000, seed + 2, split="test")
    heldout = gold_pairs(world, test_prompts, sample(test_prompts, 2), 0.1)
    config = TrainConfig(learning_rate=1e-2, batch_size=64, epochs=10, seed=seed)
    results = []
    for knob, settings in KNOBS.items():
        for setting in settings:
            teacher = BPrefTeacher(world, seed=seed + 3, **setting)
            labels, spent = teacher.label_pairs(triples)
            row = {"knob": knob, "setting": setting, "queries": spent, "labels": len(labels)}
            run = out / f"{knob}-{len(results)}"
            plain_labels = [replace(c, strength=None) if c.strength == 0.5 else c for c in labels]
            row["plain"] = _agreement(_fit(plain_labels, embed, config, run / "plain"), embed,
                                      heldout)  # fmt: skip
            ties = any(c.strength == 0.5 for c in labels)
            row["soft_ties"] = (
                _agreement(_fit(labels, embed, config, run / "soft"), embed, heldout)
                if ties
                else row["plain"]
            )
            smoothed = [replace(c, strength=0.9 * (c.strength or 1.0) + 0.05) for c in labels]
            row["label_smoothing"] = _agreement(_fit(smoothed, embed, config, run / "ls"), embed,
                                                heldout)  # fmt: skip
            ensemble = [_fit(bootstrap_sample(labels, seed + k), embed,
                             replace(config, seed=seed + k), run / f"m{k}")
                        for k in range(members)]  # fmt: skip
            p = [c.prompt for c in labels]
            chosen = torch.stack([_scores(m, embed, p, [c.chosen for c in labels])
                                  for m in ensemble])  # fmt: skip
            rejected = torch.stack([_scores(m, embed, p, [c.rejected for c in labels])
                                    for m in ensemble])  # fmt: skip
            treated = robust_relabel(labels, *preference_strength(chosen, rejected),
                                     RobustOptions())  # fmt: skip
            row["secrets_ii"] = _agreement(_fit(treated, embed, config, run / "robust"), embed,
                                           heldout)  # fmt: skip
            row["flipped_by_treatment"] = sum(c.metadata["treatment"] == "flipped" for c in treated)
            row["true_mistakes"] = sum(c.metadata.get("flipped", False) for c in labels)
            results.append(row)
            print(row, flush=True)
    report = {"budget": budget, "heldout_pairs": len(heldout), "results": results}
    write_json(out / "teacher_knobs.json", report)
    (out / "teacher_knobs.md").write_text(teacher_knobs_markdown(report))
    return report


def teacher_knobs_markdown(report: dict) -> str:
    lines = [
        "# Teacher knobs vs. held-out gold agreement (bag-of-words BT head)",
        "",
        f"Budget {report['budget']} queries; {report['heldout_pairs']} held-out gold pairs.",
        "",
        "| knob | setting | labels | plain | soft ties | label smoothing | Secrets-II |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['knob']} | {r['setting']} | {r['labels']} | {r['plain']:.3f} | "
            f"{r['soft_ties']:.3f} | {r['label_smoothing']:.3f} | {r['secrets_ii']:.3f} |"
        )
    best = np.mean([max(r["soft_ties"], r["label_smoothing"], r["secrets_ii"]) - r["plain"]
                    for r in report["results"]])  # fmt: skip
    lines += ["", f"Mean gain of the best robust option over plain BT: {best:+.3f}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("lab-teachers"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    run_teacher_knobs(args.out, args.seed)
