"""Every method ``prefloop train METHOD`` reaches: its typed settings, records and recipe.

A recipe loads the model a method trains from a directory, turns the records into what the
trainer takes, and trains into ``out_dir``: pairwise objectives train on comparisons; ``kto``
on unpaired labels (comparisons are split into chosen = desirable, rejected = undesirable);
``curry-dpo`` on ratings (or comparisons ordered by margin / strength); ``c3po`` on in-scope
comparisons plus the baseline's answers outside the scope (``keep_data``); ``sft`` on the
chosen responses or desirable completions; the reward models on comparisons (ratings with
aspect scores for ``multi-objective-rm``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from prefloop.algorithms.c3po import C3POConfig, C3POData, train_c3po
from prefloop.algorithms.curry_dpo import (
    CurryDPOConfig,
    stages_by_difficulty,
    stages_from_ratings,
    train_curry_dpo,
)
from prefloop.data.io import load_records
from prefloop.data.pairs import comparisons_to_unpaired
from prefloop.data.records import Comparison, FeedbackRecord, Rating, Unpaired
from prefloop.models.multi_objective import MultiObjectiveRewardModel
from prefloop.models.policy import Policy
from prefloop.models.preference_model import PairwisePreferenceModel
from prefloop.models.reward import RewardModel
from prefloop.train.adapters import LoraSettings, apply_lora, export_merged
from prefloop.train.engine import TrainConfig, TrainResult
from prefloop.train.ensemble import EnsembleConfig, train_ensemble
from prefloop.train.multi_objective import MultiObjectiveConfig, train_multi_objective
from prefloop.train.preference import PairwiseMethod, pairwise_methods, train_preference
from prefloop.train.preference_model import PreferenceModelConfig, train_preference_model
from prefloop.train.reward_model import RewardModelConfig, train_reward_model
from prefloop.train.sft import train_sft
from prefloop.train.unpaired import KTOConfig, train_kto


class RecordKindError(ValueError):
    """The records given are not the kind the method trains on."""


@dataclass
class SFTConfig:
    """Supervised fine-tuning on the chosen responses (or desirable completions)."""

    name: ClassVar[str] = "sft"
    kind: ClassVar[str] = "policy"


@dataclass
class Inputs:
    """What a recipe gets besides its settings."""

    model: Path
    records: Sequence[FeedbackRecord]
    train: TrainConfig
    out_dir: Path
    lora: LoraSettings = field(default_factory=LoraSettings)
    run: dict[str, Any] = field(default_factory=dict)  # resume, overwrite, record, progress


Recipe = Callable[[Any, Inputs], TrainResult]


@dataclass(frozen=True)
class Method:
    """A trainable method: its settings class, the records it reads, and its recipe."""

    name: str
    config: type
    records: tuple[type, ...]
    recipe: Recipe
    learning_rate: float  # the command line's default

    @property
    def trains_policy(self) -> bool:
        return self.config.kind == "policy"

    def describe_records(self) -> str:
        return " or ".join(kind.__name__ for kind in self.records)


def only(records: Sequence[FeedbackRecord], kinds: tuple[type, ...], method: str) -> list:
    """``records`` if every one is of ``kinds``, else a :class:`RecordKindError`."""
    if not records or not all(isinstance(r, kinds) for r in records):
        found = sorted({type(r).__name__ for r in records}) or ["no records"]
        raise RecordKindError(
            f"method {method!r} trains on {' or '.join(k.__name__ for k in kinds)} records, "
            f"got {', '.join(found)}"
        )
    return list(records)


def load_policy(path: Path, lora: LoraSettings) -> Policy:
    policy = Policy.from_pretrained(path)
    return apply_lora(policy, lora) if lora.enabled else policy


def _policy_recipe(train: Callable[[Any, Policy, list, Inputs], TrainResult]) -> Recipe:
    """Load the policy (with adapters if asked), train it, export the merged model if asked."""

    def recipe(config: Any, inputs: Inputs) -> TrainResult:
        policy = load_policy(inputs.model, inputs.lora)
        records = only(inputs.records, METHODS[config.name].records, config.name)
        result = train(config, policy, records, inputs)
        if inputs.lora.enabled and inputs.lora.merge:
            export_merged(policy, inputs.out_dir / "merged")
        return result

    return recipe


def _pairwise(config: PairwiseMethod, policy: Policy, pairs: list, inputs: Inputs):
    return train_preference(policy, pairs, inputs.train, inputs.out_dir, config, **inputs.run)


def _kto(config: Any, policy: Policy, records: list, inputs: Inputs):
    examples = [r for r in records if isinstance(r, Unpaired)]
    examples += comparisons_to_unpaired(r for r in records if isinstance(r, Comparison))
    return train_kto(policy, examples, inputs.train, inputs.out_dir, config, **inputs.run)


def _curry(config: CurryDPOConfig, policy: Policy, records: list, inputs: Inputs):
    if isinstance(records[0], Rating):
        stages = stages_from_ratings(only(records, (Rating,), config.name))
    else:
        easiness = (lambda c: c.margin or 0.0) if config.use_margin else (
            lambda c: c.strength or 0.0
        )  # fmt: skip
        stages = stages_by_difficulty(only(records, (Comparison,), config.name), config.stages,
                                      easiness)  # fmt: skip
    results = train_curry_dpo(policy, stages, inputs.train, inputs.out_dir, config, **inputs.run)
    policy.save_pretrained(inputs.out_dir)  # the last stage's policy, beside the stage runs
    return results[-1]


def _c3po(config: C3POConfig, policy: Policy, pairs: list, inputs: Inputs):
    if config.keep_data is None:
        raise RecordKindError("method 'c3po' needs keep_data: a file of the baseline's answers")
    keep = only(load_records(config.keep_data), (Unpaired,), "c3po keep_data")
    data = C3POData(
        pairs,
        [(r.prompt, r.completion) for r in keep if r.metadata.get("scope") == "near"],
        [(r.prompt, r.completion) for r in keep if r.metadata.get("scope", "out") == "out"],
    )
    return train_c3po(policy, data, inputs.train, inputs.out_dir, config, **inputs.run)


def _sft(config: SFTConfig, policy: Policy, records: list, inputs: Inputs):
    examples = [(r.prompt, r.chosen) for r in records if isinstance(r, Comparison)]
    examples += [(r.prompt, r.completion) for r in records if isinstance(r, Unpaired) and r.label]
    return train_sft(policy, examples, inputs.train, inputs.out_dir, **inputs.run)


def _reward_recipe(config: RewardModelConfig, inputs: Inputs) -> TrainResult:
    pairs = only(inputs.records, (Comparison,), config.name)
    model = RewardModel.from_pretrained(inputs.model, seed=inputs.train.seed)
    return train_reward_model(model, pairs, inputs.train, inputs.out_dir, config, **inputs.run)


def _ensemble_recipe(config: EnsembleConfig, inputs: Inputs) -> TrainResult:
    pairs = only(inputs.records, (Comparison,), config.name)
    _, results = train_ensemble(inputs.model, pairs, inputs.train, inputs.out_dir, config,
                                **inputs.run)  # fmt: skip
    return results[-1]


def _preference_model_recipe(config: PreferenceModelConfig, inputs: Inputs) -> TrainResult:
    pairs = only(inputs.records, (Comparison,), config.name)
    model = PairwisePreferenceModel.from_pretrained(inputs.model, seed=inputs.train.seed)
    return train_preference_model(model, pairs, inputs.train, inputs.out_dir, **inputs.run)


def _multi_objective_recipe(config: MultiObjectiveConfig, inputs: Inputs) -> TrainResult:
    ratings = only(inputs.records, (Rating,), config.name)
    aspects = sorted(ratings[0].aspect_scores or {})
    if not aspects:
        raise RecordKindError("method 'multi-objective-rm' needs ratings with aspect_scores")
    model = MultiObjectiveRewardModel.from_pretrained(inputs.model, aspects, inputs.train.seed)
    return train_multi_objective(model, ratings, inputs.train, inputs.out_dir, **inputs.run)


POLICY_LR, REWARD_LR = 5e-7, 1e-5
METHODS: dict[str, Method] = {
    **{
        name: Method(name, cls, (Comparison,), _policy_recipe(_pairwise), POLICY_LR)
        for name, cls in pairwise_methods().items()
    },
    "kto": Method("kto", KTOConfig, (Comparison, Unpaired), _policy_recipe(_kto), POLICY_LR),
    "curry-dpo": Method(
        "curry-dpo", CurryDPOConfig, (Rating, Comparison), _policy_recipe(_curry), POLICY_LR
    ),  # fmt: skip
    "c3po": Method("c3po", C3POConfig, (Comparison,), _policy_recipe(_c3po), POLICY_LR),
    "sft": Method("sft", SFTConfig, (Comparison, Unpaired), _policy_recipe(_sft), 1e-5),
    "rm": Method("rm", RewardModelConfig, (Comparison,), _reward_recipe, REWARD_LR),
    "rm-ensemble": Method(
        "rm-ensemble", EnsembleConfig, (Comparison,), _ensemble_recipe, REWARD_LR
    ),  # fmt: skip
    "preference-model": Method(
        "preference-model",
        PreferenceModelConfig,
        (Comparison,),
        _preference_model_recipe,
        REWARD_LR,
    ),  # fmt: skip
    "multi-objective-rm": Method(
        "multi-objective-rm", MultiObjectiveConfig, (Rating,), _multi_objective_recipe, REWARD_LR
    ),  # fmt: skip
}
