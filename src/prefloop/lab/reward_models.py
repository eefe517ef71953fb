"""The reward-model comparison: one labelled data set, six reward models, one suite.

Pairs of SFT samples are labelled by a population of simulated users: half judge by the gold
reward (``neutral``), a quarter are ``concise`` and a quarter ``verbose`` (conflicting tastes
for length). On these same pairs we train a plain Bradley–Terry RM (``bt``), an ensemble of K
seeds (``ensemble``, mean), K heads on one shared backbone with bootstrap pair weights
(``ensemble-heads``, mean), BT with the Secrets-II treatment using the seed ensemble's strengths
(``bt-robust``), a VPL personalized RM on bag-of-words features (``vpl``) and a DPO policy
whose implicit reward is the last model (``dpo-implicit``). All are scored by the ``eval-rm``
suite (gold = the neutral user) and on held-out pairs where the concise and verbose users
disagree, per user type; VPL is conditioned on a few labelled pairs of the user in question (a
neutral user for the suite). Every seed redraws the SFT model, labels, users and models; the
report compares models paired by seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console

from prefloop.eval.report import write_json
from prefloop.eval.rm_suite import (
    Scorer,
    evaluate_rm_suite,
    implicit_reward_scorer,
    reward_model_scorer,
)
from prefloop.lab import report as lr
from prefloop.lab.common import BasePolicySetup, start_review_lab
from prefloop.models.personalized import (
    VPLRewardModel,
    bag_of_words_embedder,
    personalized_scorer,
)
from prefloop.models.policy import Policy
from prefloop.models.reward import RewardModel
from prefloop.models.strength import RobustOptions, ensemble_strength, robust_relabel
from prefloop.train.engine import TrainConfig
from prefloop.train.ensemble import EnsembleConfig, train_ensemble
from prefloop.train.preference import method_config, train_preference
from prefloop.train.reward_model import RewardModelConfig, train_reward_model
from prefloop.train.vpl import PersonalizedPairs, train_vpl
from prefloop.worlds.review_shifts import build_review_suite
from prefloop.worlds.reviews import ReviewWorld
from prefloop.worlds.users import NEUTRAL, USER_TYPES, UserWorld, label_for_users

POPULATION = (NEUTRAL, NEUTRAL, *USER_TYPES)  # round-robin: half neutral, a quarter each


@dataclass
class RewardModelsConfig:
    """Every knob of the comparison; ``fast()`` is the reduced run."""

    seed: int = 0
    base: BasePolicySetup = field(default_factory=BasePolicySetup)
    label_prompts: int = 2000
    user_ids: int = 24
    temperature: float = 0.25
    reward_model: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=32, epochs=6)
    )  # 6 epochs: validation accuracy 0.76-0.79 over 3 head seeds vs 0.64-0.73 at 3 (--fast data)
    ensemble_size: int = 4
    robust: RobustOptions = field(default_factory=RobustOptions)
    dpo: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-3, batch_size=32, epochs=3)
    )
    beta: float = 0.1
    vpl: TrainConfig = field(
        default_factory=lambda: TrainConfig(learning_rate=1e-2, batch_size=64, epochs=30)
    )
    vpl_context: int = 8
    suite_prompts: int = 200
    user_eval_prompts: int = 400

    @classmethod
    def fast(cls, seed: int = 0) -> RewardModelsConfig:
        return replace(
            cls(seed=seed),
            base=BasePolicySetup.fast(),
            label_prompts=1200,
            ensemble_size=3,
            suite_prompts=120,
            user_eval_prompts=240,
        )


def run_lab(
    out: Path, fast: bool = False, seed: int = 0, seeds: int | None = None,
    console: Console | None = None,
) -> dict:  # fmt: skip
    """Run the comparison at each seed into ``out``; writes reward_models.json and .md."""
    config = RewardModelsConfig.fast() if fast else RewardModelsConfig()
    return run_reward_models(config, lr.seed_list(seed, seeds, fast), Path(out),
                             console or Console(), fast)  # fmt: skip


def run_reward_models(
    config: RewardModelsConfig, seeds: list[int], out: Path, console: Console,
    fast: bool = False,
) -> dict:  # fmt: skip
    """Configure per seed, run, and report through the shared lab report."""
    started = time.perf_counter()
    per_seed = lr.run_seeds(lambda s, d: _run_seed(replace(config, seed=s), d, console), seeds, out)
    report = lr.lab_report("reward_models", per_seed, _aggregate(per_seed),
                           _comparisons(per_seed), fast, time.perf_counter() - started,
                           world=per_seed[0]["world"])  # fmt: skip
    models = report["aggregate"]["models"]
    groups = {k: {name: m[k] for name, m in models.items()}
              for k in ("accuracy", "accuracy_ood", "one_to_many", "consistency")}  # fmt: skip
    lr.plot_bars(out / "reward_models.png", groups, "share ordered as gold",
                 "Reward models, 95 % intervals over seeds")  # fmt: skip
    lr.write_lab_report(out, "reward_models", report, reward_models_markdown(report))
    console.print(f"wrote {out / 'reward_models.json'} in {report['seconds']:.0f} s")
    return report


def _conflict_pairs(world: ReviewWorld, policy: Policy, config: RewardModelsConfig):
    """Held-out SFT pairs on which concise and verbose users disagree, with each type's gaps."""
    prompts = world.prompts(config.user_eval_prompts, config.seed + 20, split="test")
    samples = policy.generate(prompts, num_samples=2, seed=config.seed + 21)
    triples = [(p, a, b) for p, (a, b) in zip(prompts, samples) if a != b]
    gaps = {u.name: np.array([UserWorld(world, u).gold_reward(p, a)
                              - UserWorld(world, u).gold_reward(p, b) for p, a, b in triples])
            for u in (NEUTRAL, *USER_TYPES)}  # fmt: skip
    concise, verbose = gaps["concise"], gaps["verbose"]
    conflict = (np.sign(concise) != np.sign(verbose)) & (
        np.minimum(np.abs(concise), np.abs(verbose)) > 0.05
    )
    chosen = [(p, a, b) for (p, a, b), keep in zip(triples, conflict) if keep]
    return chosen, {name: g[conflict] for name, g in gaps.items()}


def _accuracy_by_user_type(
    scorers_for: Callable[[str], list[Scorer]], triples: list, gaps: dict[str, np.ndarray]
) -> dict[str, float]:
    prompts = [p for p, _, _ in triples]
    result = {}
    for user_type, gap in gaps.items():
        accuracies = []
        for scorer in scorers_for(user_type):
            a = np.asarray(scorer(prompts, [a for _, a, _ in triples]))
            b = np.asarray(scorer(prompts, [b for _, _, b in triples]))
            accuracies.append(float(np.mean((a > b) == (gap > 0))))
        result[user_type] = float(np.mean(accuracies))
    return result


def _run_seed(config: RewardModelsConfig, out: Path, console: Console) -> dict:
    """One seed: SFT, labels, the six reward models, the suite and per-user-type accuracy."""
    started = time.perf_counter()
    world, policy = start_review_lab(config, out, console, f"seed {config.seed}: 1/6")

    console.rule(f"seed {config.seed}: 2/6 pairs labelled by a population of users")
    prompts = world.prompts(config.label_prompts, config.seed + 1)
    samples = policy.generate(prompts, num_samples=2, seed=config.seed + 2)
    triples = [(p, a, b) for p, (a, b) in zip(prompts, samples)]
    pairs = label_for_users(
        world, triples, POPULATION, config.user_ids, config.temperature, config.seed + 3
    )
    console.print(f"{len(pairs)} pairs from {config.user_ids} users")
    rm_config = replace(config.reward_model, seed=config.seed + 10)

    console.rule(f"seed {config.seed}: 3/6 bt, ensemble, ensemble-heads, bt-robust")
    bt = RewardModel.from_pretrained(out / "sft", seed=config.seed + 10)
    quiet = {"show_progress": False, "overwrite": True}
    train_reward_model(bt, pairs, rm_config, out / "bt", **quiet)
    ensemble, _ = train_ensemble(
        out / "sft", pairs, replace(rm_config, seed=config.seed + 20), out / "ensemble",
        EnsembleConfig(size=config.ensemble_size), **quiet,
    )  # fmt: skip
    shared, _ = train_ensemble(
        out / "sft", pairs, replace(rm_config, seed=config.seed + 20), out / "ensemble-heads",
        EnsembleConfig(size=config.ensemble_size, bootstrap=True, shared_backbone=True),
        **quiet,
    )  # fmt: skip
    mu, sigma = ensemble_strength(ensemble, pairs)
    treated = robust_relabel(pairs, mu, sigma, config.robust)
    treatments = {t: sum(c.metadata["treatment"] == t for c in treated)
                  for t in ("flipped", "ambiguous", "strong")}  # fmt: skip
    console.print(f"Secrets-II treatment: {treatments}")
    robust = RewardModel.from_pretrained(out / "sft", seed=config.seed + 10)
    train_reward_model(robust, treated, rm_config, out / "bt-robust",
                       RewardModelConfig(use_margin=True, use_strength=True), **quiet)  # fmt: skip

    console.rule(f"seed {config.seed}: 4/6 VPL personalized reward model")
    # VPL on frozen SFT-backbone features did not personalize (concise/verbose accuracy 0.27 /
    # 0.72 on conflict pairs, --fast seed 0); on bag-of-words features it does (0.78 / 0.85).
    corpus_words = {
        w for _, r in world.corpus(config.base.corpus_size, config.seed) for w in r.split()
    }
    embed = bag_of_words_embedder(sorted(corpus_words),
                                  prompt_feature=ReviewWorld.mentions_requested_aspect)  # fmt: skip
    data = PersonalizedPairs(pairs, embed)
    vpl = VPLRewardModel(data.chosen.shape[1])
    train_vpl(vpl, data, replace(config.vpl, seed=config.seed + 30), out / "vpl", **quiet)
    contexts = {uid: [c for c in pairs if c.annotator == uid][: config.vpl_context]
                for uid in data.by_user}  # fmt: skip
    user_type = {c.annotator: c.metadata["user_type"] for c in pairs}

    def vpl_scorers(kind: str) -> list[Scorer]:
        return [lambda p, r, s=personalized_scorer(vpl, embed, ctx): s(p, r).numpy()
                for uid, ctx in contexts.items() if user_type[uid] == kind]  # fmt: skip

    console.rule(f"seed {config.seed}: 5/6 DPO (implicit reward)")
    dpo = Policy.from_pretrained(out / "sft")
    train_preference(dpo, pairs, replace(config.dpo, seed=config.seed + 40), out / "dpo",
                     method_config("dpo", beta=config.beta), **quiet)  # fmt: skip

    console.rule(f"seed {config.seed}: 6/6 eval-rm suite and per-user-type accuracy")
    scorers: dict[str, Scorer] = {
        "bt": reward_model_scorer(bt),
        "bt-robust": reward_model_scorer(robust),
        "ensemble": reward_model_scorer(ensemble),
        "ensemble-heads": reward_model_scorer(shared),
        "vpl": vpl_scorers(NEUTRAL.name)[0],
        "dpo-implicit": implicit_reward_scorer(dpo, policy, config.beta),
    }
    suite = build_review_suite(
        world, lambda ps, k: policy.generate(ps, num_samples=k, seed=config.seed + 50),
        config.suite_prompts, config.seed + 51,
    )  # fmt: skip
    triples, gaps = _conflict_pairs(world, policy, config)
    models = {}
    for name, scorer in scorers.items():
        models[name] = evaluate_rm_suite(scorer, suite)
        per_type = vpl_scorers if name == "vpl" else (lambda _, s=scorer: [s])
        models[name]["accuracy_by_user_type"] = _accuracy_by_user_type(per_type, triples, gaps)
        m = models[name]
        console.print(f"{name:>12}: acc {m['accuracy']:.3f} ood {m['accuracy_ood']:.3f} "
                      f"1-to-many {m['one_to_many']:.3f} consistency {m['consistency']:.3f} "
                      f"ece {m['ece']:.3f} by user {m['accuracy_by_user_type']}")  # fmt: skip
    report = {
        "world": world.name,
        "seed": config.seed,
        "pairs": len(pairs),
        "conflict_pairs": len(triples),
        "robust_treatment": treatments,
        "models": models,
        "seconds": time.perf_counter() - started,
    }
    write_json(out / "reward_models.json", report)
    return report


METRICS = ("accuracy", "accuracy_ood", "one_to_many", "consistency", "ece")


def _aggregate(per_seed: list[dict]) -> dict:
    """Every model's metrics (and per-user-type accuracy) as intervals over seeds."""
    names = per_seed[0]["models"]
    types = per_seed[0]["models"]["bt"]["accuracy_by_user_type"]
    return {
        "pairs": lr.interval(s["pairs"] for s in per_seed),
        "conflict_pairs": lr.interval(s["conflict_pairs"] for s in per_seed),
        "models": {name: {**{k: lr.interval(s["models"][name][k] for s in per_seed)
                             for k in METRICS},
                          "accuracy_by_user_type": {
                              t: lr.interval(s["models"][name]["accuracy_by_user_type"][t]
                                             for s in per_seed) for t in types}}
                   for name in names},
    }  # fmt: skip


def _comparisons(per_seed: list[dict]) -> list[lr.Comparison]:
    """Explicit vs implicit out of distribution (Lin et al.), ensembles, robust BT and VPL
    against plain BT, paired by seed."""

    def metric(name: str, key: str, user_type: str | None = None) -> list[float]:
        models = [s["models"][name] for s in per_seed]
        return [m["accuracy_by_user_type"][user_type] if user_type else m[key] for m in models]

    def drop(name: str) -> list[float]:
        return [a - b for a, b in zip(metric(name, "accuracy"), metric(name, "accuracy_ood"))]

    comparisons = [
        lr.compare("bt − dpo-implicit, accuracy OOD", metric("bt", "accuracy_ood"),
                   metric("dpo-implicit", "accuracy_ood"),
                   "the explicit RM generalizes better out of distribution",
                   "the implicit (DPO) RM generalizes better out of distribution"),
        lr.compare("bt − dpo-implicit, drop under shift (accuracy − accuracy OOD)", drop("bt"),
                   drop("dpo-implicit"), "the explicit RM loses more under shift",
                   "the explicit RM loses less under shift"),
        lr.compare("bt − dpo-implicit, accuracy", metric("bt", "accuracy"),
                   metric("dpo-implicit", "accuracy"), "the explicit RM is more accurate in "
                   "distribution", "the implicit RM is more accurate in distribution"),
    ]  # fmt: skip
    for name in ("ensemble", "ensemble-heads", "bt-robust"):
        comparisons += [
            lr.compare(f"{name} − bt, {key.replace('_', ' ')}", metric(name, key),
                       metric("bt", key), f"{name} is above bt", f"{name} is below bt")
            for key in ("accuracy", "accuracy_ood", "ece")
        ]  # fmt: skip
    for user_type in USER_TYPES:
        comparisons.append(lr.compare(
            f"vpl − bt, accuracy for {user_type.name} users (conflict pairs)",
            metric("vpl", "", user_type.name), metric("bt", "", user_type.name),
            f"VPL serves {user_type.name} users better", f"VPL serves {user_type.name} users worse",
        ))  # fmt: skip
    return comparisons


def reward_models_markdown(report: dict) -> str:
    """Every metric over seeds, and the verdicts of the paired comparisons."""
    aggregate = report["aggregate"]
    models = aggregate["models"]
    types = list(next(iter(models.values()))["accuracy_by_user_type"])
    header = ["model", "accuracy", "accuracy OOD", "one-to-many", "consistency", "ECE",
              *(f"acc. {t} (conflict pairs)" for t in types)]  # fmt: skip
    rows = [(name, *(m[k] for k in METRICS), *(m["accuracy_by_user_type"][t] for t in types))
            for name, m in models.items()]  # fmt: skip
    treatment = report["per_seed"][0]["robust_treatment"]
    return (
        f"# Reward models on the {report['world']} world\n\n{lr.seeds_note(report)}\n\n"
        f"{lr.text(aggregate['pairs'], 0)} training pairs per seed labelled by neutral, concise "
        "and verbose users; accuracy is against the gold (neutral) order; per-user-type accuracy "
        f"is on {lr.text(aggregate['conflict_pairs'], 0)} held-out pairs where concise and verbose "
        f"users disagree. Secrets-II treatment (seed {report['seeds'][0]}): {treatment}.\n\n"
        + lr.table(header, rows)
        + "\n\n![metrics with 95 % intervals](reward_models.png)\n\n"
        + lr.comparisons_markdown(report["comparisons"])
        + "\n"
    )
