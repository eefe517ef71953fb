"""Online preference methods: online DPO, iterative DPO (best vs worst), RAFT.

Each rollout samples from the current policy and asks the judge; the items are token ids, so
the pairwise objective (any of :mod:`prefloop.objectives`) or the likelihood is computed on
exactly what was sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from prefloop.data.records import Prompt
from prefloop.objectives import get_objective, objective_names, pairwise_loss, response_nll
from prefloop.online.judges import AspectJudge, PairwiseJudge, as_pairwise
from prefloop.online.logps import completion_logps
from prefloop.online.loop import Loop, OnlineSettings
from prefloop.online.policy_gradient import online_task
from prefloop.online.rewards import judge_rewards
from prefloop.online.rollout import Rollout
from prefloop.online.source import RolloutSource
from prefloop.train.config import ConfigError, setting, validate
from prefloop.train.engine import Task, Trainable, TrainConfig
from prefloop.train.sources import Shard


@dataclass
class OnlineDPOConfig(OnlineSettings):
    """Online DPO (Guo et al. 2024): two samples per prompt, the judge picks, one DPO step."""

    name: ClassVar[str] = "online-dpo"
    samples_per_prompt: int = setting(2, "Completions sampled per prompt (2: one pair).", low=2)
    objective: str = setting("dpo", "Any pairwise objective (prefloop objectives).")
    beta: float = setting(0.1, "The objective's β.", low=0, low_open=True)

    def __post_init__(self) -> None:
        validate(self, f"method {self.name!r}")
        if self.objective not in objective_names():
            raise ConfigError(f"method {self.name!r}: unknown objective {self.objective!r}; "
                              f"valid: {', '.join(objective_names())}")  # fmt: skip


@dataclass
class IterativeDPOConfig(OnlineDPOConfig):
    """Iterative DPO (RLHF Workflow, Dong et al. 2024): per iteration K samples per prompt,
    best vs worst under the judge, DPO over the iteration's pairs against the previous
    iterate."""

    name: ClassVar[str] = "iterative-dpo"
    samples_per_prompt: int = setting(4, "Completions per prompt; best vs worst is the pair.",
                                      low=2)  # fmt: skip
    rollout_prompts: int = setting(64, "Prompts per iteration.", low=1)
    rollout_epochs: int = setting(2, "Passes over each iteration's pairs.", low=1)
    reference: str = setting("previous", "fixed, previous (the last iterate) or every.",
                             choices=("fixed", "previous", "every"))  # fmt: skip


@dataclass
class RAFTConfig(OnlineSettings):
    """RAFT (Dong et al. 2023): keep the best of K samples per prompt, fine-tune on them."""

    name: ClassVar[str] = "raft"
    keep_top: int = setting(1, "Samples kept per prompt (the highest rewards).", low=1)
    rollout_epochs: int = setting(1, "Passes over each rollout's kept samples.", low=1)


def _extremes(loop: Loop, rollout: Rollout, seed: int) -> list[tuple[int, int]]:
    """(best, worst) sample of each group; a tied group gives no pair.

    With two samples a pairwise judge is asked once; with more, a scalar judge's scores or a
    pairwise judge's round-robin win rates rank them.
    """
    k = rollout.k
    if k == 2 and isinstance(loop.judge, PairwiseJudge):
        judge = as_pairwise(loop.judge)
        p = judge.prefer(rollout.prompts, rollout.texts[0::2], rollout.texts[1::2], seed)
        return [(2 * g, 2 * g + 1) if q > 0.5 else (2 * g + 1, 2 * g)
                for g, q in enumerate(p) if q != 0.5]  # fmt: skip
    rewards = judge_rewards(loop, rollout, seed).view(-1, k)
    pairs = []
    for g, group in enumerate(rewards):
        best, worst = int(group.argmax()), int(group.argmin())
        if group[best] > group[worst]:
            pairs.append((g * k + best, g * k + worst))
    return pairs


def build_pairs(loop: Loop, config: OnlineDPOConfig):
    needs_reference = get_objective(config.objective).requires_reference

    def build(rollout_index: int, shard: Shard):
        prompts = loop.rollout_prompts(rollout_index, shard)
        seed = loop.call_seed(rollout_index)
        rollout = loop.sample(prompts, seed)
        pairs = _extremes(loop, rollout, seed)
        reference = loop.reference_logps(rollout) if needs_reference else None
        prompt_ids = [ids for ids in rollout.prompt_ids for _ in range(rollout.k)]
        items = []
        for chosen, rejected in pairs:
            item = {"prompt_ids": prompt_ids[chosen],
                    "chosen": rollout.completion_ids[chosen],
                    "rejected": rollout.completion_ids[rejected]}  # fmt: skip
            if reference is not None:
                item["reference"] = (reference[chosen].sum(), reference[rejected].sum())
            items.append(item)
        metrics = {"pairs": float(len(items)),
                   "completion_length": sum(rollout.lengths) / len(rollout.lengths),
                   "generation_tokens_per_second": rollout.tokens_per_second}  # fmt: skip
        return items, metrics

    return build


def pair_loss(loop: Loop, config: OnlineDPOConfig):
    pad = loop.policy.tokenizer.pad_token_id
    options = {"beta": config.beta}

    def loss(items: list[dict]):
        prompts = [i["prompt_ids"] for i in items] * 2
        completions = [i["chosen"] for i in items] + [i["rejected"] for i in items]
        logps, mask = completion_logps(loop.policy.model, prompts, completions, pad)
        chosen, rejected = logps.sum(-1).chunk(2)
        chosen_lengths, rejected_lengths = mask.sum(-1).chunk(2)
        reference = {}
        if "reference" in items[0]:
            ref = torch.tensor(
                [list(map(float, i["reference"])) for i in items], device=chosen.device
            )
            reference = {"reference_chosen_logps": ref[:, 0], "reference_rejected_logps": ref[:, 1]}
        losses = pairwise_loss(config.objective, chosen, rejected,
                               reference.get("reference_chosen_logps"),
                               reference.get("reference_rejected_logps"),
                               chosen_lengths=chosen_lengths, rejected_lengths=rejected_lengths,
                               **options)  # fmt: skip
        return losses.mean(), {"chosen_logps": chosen.mean().item()}

    return loss


def build_best(loop: Loop, config: RAFTConfig):
    def build(rollout_index: int, shard: Shard):
        prompts = loop.rollout_prompts(rollout_index, shard)
        seed = loop.call_seed(rollout_index)
        rollout = loop.sample(prompts, seed)
        rewards = judge_rewards(loop, rollout, seed).view(-1, rollout.k)
        items = []
        for g, group in enumerate(rewards):
            for j in torch.argsort(group, descending=True)[: config.keep_top].tolist():
                sample = rollout.completion_ids[g * rollout.k + j]
                items.append({"prompt_ids": rollout.prompt_ids[g], "completion_ids": sample})
        kept = rewards.topk(min(config.keep_top, rollout.k), -1).values
        metrics = {"reward": rewards.mean().item(), "kept_reward": kept.mean().item(),
                   "completion_length": sum(rollout.lengths) / len(rollout.lengths),
                   "generation_tokens_per_second": rollout.tokens_per_second}  # fmt: skip
        return items, metrics

    return build


def likelihood_loss(loop: Loop):
    pad = loop.policy.tokenizer.pad_token_id

    def loss(items: list[dict]):
        logps, mask = completion_logps(loop.policy.model, [i["prompt_ids"] for i in items],
                                       [i["completion_ids"] for i in items], pad)  # fmt: skip
        return response_nll(logps, mask), {}

    return loss


def preference_task(loop: Loop, config: OnlineDPOConfig | RAFTConfig, train: TrainConfig) -> Task:
    """The task of online DPO, iterative DPO, RAFT or DPA on ``loop``."""
    if isinstance(config, DPAConfig):
        build, loss = build_directed_best(loop, config), likelihood_loss(loop)
    elif isinstance(config, RAFTConfig):
        build, loss = build_best(loop, config), likelihood_loss(loop)
    else:
        build, loss = build_pairs(loop, config), pair_loss(loop, config)
    source = RolloutSource(build, train.batch_size, config.rollout_epochs, train.seed,
                           loop.schedule, loop.labels, loop.restore_labels)  # fmt: skip
    return online_task(config, loop, source, loss, [Trainable(loop.policy)])


@dataclass
class DPAConfig(RAFTConfig):
    """Directional Preference Alignment (Wang et al. 2024): the user's trade-off between two
    reward aspects is a unit vector v written into the prompt; per prompt a direction is drawn,
    K samples are generated for the directed prompt and the best under vᵀr is fine-tuned on."""

    name: ClassVar[str] = "dpa"
    aspects: tuple[str, ...] = setting(("helpfulness", "verbosity"), "The two aspects the "
                                       "direction weighs (the judge scores both).")  # fmt: skip
    angle_low: float = setting(-45.0, "Smallest angle of the direction prior, in degrees.",
                               low=-90, high=90)  # fmt: skip
    angle_high: float = setting(45.0, "Largest angle of the direction prior, in degrees.",
                                low=-90, high=90)  # fmt: skip

    def __post_init__(self) -> None:
        validate(self, f"method {self.name!r}")
        if len(self.aspects) != 2:
            raise ConfigError(f"method 'dpa': two aspects are needed, got {list(self.aspects)}")
        if self.angle_low > self.angle_high:
            raise ConfigError("method 'dpa': angle_low must not exceed angle_high")


def direction_prompt(prompt: Prompt, aspects: Sequence[str], direction: Sequence[float]) -> Prompt:
    """``prompt`` asking for the trade-off ``direction`` (unit vector over ``aspects``), in
    DPA's form "weighted rating = a₁*w₁ + a₂*w₂" with w = round(100·v); a conversation gets
    it as a system message. The same call states the user's choice at inference."""
    weights = " + ".join(f"{a}*{round(100 * v)}" for a, v in zip(aspects, direction))
    text = f"your response should maximize weighted rating = {weights}"
    if isinstance(prompt, str):
        return f"{prompt} {text}"
    return [{"role": "system", "content": text}, *prompt]


def build_directed_best(loop: Loop, config: DPAConfig):
    if not isinstance(loop.judge, AspectJudge):
        raise ConfigError("method 'dpa' needs a judge that scores each aspect (a world's gold "
                          "aspects or a multi-objective reward model)")  # fmt: skip

    def build(rollout_index: int, shard: Shard):
        prompts = loop.rollout_prompts(rollout_index, shard)
        seed = loop.call_seed(rollout_index)
        rng = np.random.default_rng([seed, 0xD1A])
        angles = np.radians(rng.uniform(config.angle_low, config.angle_high, len(prompts)))
        directions = torch.tensor(
            np.stack([np.cos(angles), np.sin(angles)], -1), dtype=torch.float32
        )
        directed = [direction_prompt(p, config.aspects, d.tolist())
                    for p, d in zip(prompts, directions)]  # fmt: skip
        rollout = loop.sample(directed, seed)
        scores = loop.judge.aspect_scores(rollout.sample_prompts, rollout.texts, config.aspects)
        k = rollout.k
        value = (scores.view(len(prompts), k, 2) * directions[:, None, :]).sum(-1)  # vᵀr
        items = [{"prompt_ids": rollout.prompt_ids[g],
                  "completion_ids": rollout.completion_ids[g * k + int(value[g].argmax())]}
                 for g in range(len(prompts))]  # fmt: skip
        metrics = {"directional_reward": value.mean().item(),
                   "kept_directional_reward": value.max(-1).values.mean().item(),
                   "completion_length": sum(rollout.lengths) / len(rollout.lengths)}  # fmt: skip
        return items, metrics

    return build
