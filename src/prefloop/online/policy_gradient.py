"""Policy-gradient methods: GRPO (and Dr. GRPO, DAPO), RLOO, REINFORCE++ and PPO.

Each is a settings dataclass and a short recipe over one shared update: per-token clipped
surrogate on the sampled completions with advantages the recipe computes (from
:mod:`prefloop.objectives.policy_gradient`), KL to the reference either in the reward or in
the loss, and per-token aggregation weights fixed when the rollout is built. Formulas and
sources: docs/online.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from prefloop.objectives.policy_gradient import (
    aggregation_weights,
    clipped_surrogate,
    clipped_value_loss,
    generalized_advantages,
    group_advantages,
    kl_estimate,
    leave_one_out_advantages,
    returns_to_go,
    token_rewards,
    whiten,
)
from prefloop.online.logps import completion_logps
from prefloop.online.loop import Loop, OnlineSettings, padded
from prefloop.online.rewards import rollout_rewards, shaped_rewards
from prefloop.online.rollout import Rollout
from prefloop.online.source import RolloutSource, pad_tokens
from prefloop.online.value import ValueModel
from prefloop.train.config import ConfigError, setting, validate
from prefloop.train.engine import Task, Trainable, TrainConfig
from prefloop.train.sources import Shard


@dataclass
class PolicyGradientSettings(OnlineSettings):
    """Options of every policy-gradient method."""

    name: ClassVar[str] = ""
    beta: float = setting(0.04, "KL strength β toward the reference (0: no reference).", low=0)
    kl_estimator: str = setting("k3", "Per-token KL estimator: k1, k2 or k3.",
                                choices=("k1", "k2", "k3"))  # fmt: skip
    kl_in: str = setting("loss", "Where the KL goes: loss (β·k per token) or reward "
                         "(r − β·Σ k1).", choices=("loss", "reward"))  # fmt: skip
    eps_low: float = setting(0.2, "Clip range below 1 of the ratio π/π_old.", low=0)
    eps_high: float | None = setting(None, "Clip range above 1 (unset: eps_low; DAPO 0.28).",
                                     low=0)  # fmt: skip

    def __post_init__(self) -> None:
        validate(self, f"method {self.name!r}")
        if self.rollout_epochs > 1 and self.rollout_prompts * self.samples_per_prompt <= 1:
            raise ConfigError(f"method {self.name!r}: several epochs need several samples")

    @property
    def clip_high(self) -> float:
        return self.eps_low if self.eps_high is None else self.eps_high


@dataclass
class GRPOConfig(PolicyGradientSettings):
    """GRPO (Shao et al. 2024) with Dr. GRPO and DAPO loss types."""

    name: ClassVar[str] = "grpo"
    loss_type: str = setting("grpo", "grpo (std-normalised, per-sequence mean), dr_grpo (no "
                             "std, constant normaliser) or dapo (token mean, clip-higher, "
                             "dynamic sampling, overlong shaping).",
                             choices=("grpo", "dr_grpo", "dapo"))  # fmt: skip
    dynamic_sampling: bool | None = setting(None, "Drop groups whose rewards are all equal and "
                                            "sample again (unset: on for dapo).")  # fmt: skip
    overlong_buffer: int | None = setting(
        None, "DAPO's soft overlong buffer in tokens (0: off; unset: max_new_tokens/4 for dapo).",
        low=0)  # fmt: skip
    max_sampling_rounds: int = setting(4, "Sampling rounds to fill a rollout under dynamic "
                                       "sampling.", low=1)  # fmt: skip

    @classmethod
    def for_loss_type(cls, loss_type: str, **options: Any) -> GRPOConfig:
        """The paper's defaults for ``loss_type`` (DAPO: β 0, ε_high 0.28), then ``options``."""
        defaults = {"beta": 0.0, "eps_high": 0.28} if loss_type == "dapo" else {}
        return cls(loss_type=loss_type, **{**defaults, **options})


@dataclass
class RLOOConfig(PolicyGradientSettings):
    """REINFORCE leave-one-out (Ahmadian et al. 2024): KL in the reward, summed log-probs."""

    name: ClassVar[str] = "rloo"
    beta: float = setting(0.05, "KL strength β in the reward (0: no reference).", low=0)
    kl_estimator: str = setting("k1", "Per-token KL estimator summed into the reward.",
                                choices=("k1", "k2", "k3"))  # fmt: skip
    kl_in: str = setting("reward", "Where the KL goes: reward or loss.",
                         choices=("loss", "reward"))  # fmt: skip


@dataclass
class ReinforcePPConfig(PolicyGradientSettings):
    """REINFORCE++ (Hu 2025): per-token KL reward, returns to go, batch-whitened advantages."""

    name: ClassVar[str] = "reinforce++"
    beta: float = setting(0.01, "Per-token KL penalty β in the reward.", low=0)
    kl_estimator: str = setting("k1", "Per-token KL estimator in the reward.",
                                choices=("k1", "k2", "k3"))  # fmt: skip
    kl_in: str = setting("reward", "Where the KL goes: reward or loss.",
                         choices=("loss", "reward"))  # fmt: skip
    baseline: bool = setting(False, "Subtract each group's mean reward first "
                             "(reinforce++-baseline).")  # fmt: skip


@dataclass
class PPOConfig(PolicyGradientSettings):
    """PPO with a value head: GAE, clipped surrogate and clipped value loss, several epochs."""

    name: ClassVar[str] = "ppo"
    samples_per_prompt: int = setting(1, "Completions sampled per prompt.", low=1)
    rollout_epochs: int = setting(4, "Passes over each rollout's minibatches.", low=1)
    beta: float = setting(0.05, "Per-token KL penalty β in the reward.", low=0)
    kl_estimator: str = setting("k1", "Per-token KL estimator in the reward.",
                                choices=("k1", "k2", "k3"))  # fmt: skip
    kl_in: str = setting("reward", "Where the KL goes: reward or loss.",
                         choices=("loss", "reward"))  # fmt: skip
    gamma: float = setting(1.0, "Discount γ of GAE.", low=0, high=1)
    lam: float = setting(0.95, "GAE's λ.", low=0, high=1)
    value_coef: float = setting(0.1, "Weight of the value loss.", low=0)
    value_clip: float = setting(0.2, "Clip range of the value update.", low=0)


def _aggregation(config: PolicyGradientSettings) -> str:
    if isinstance(config, GRPOConfig):
        return {"grpo": "sequence_mean", "dr_grpo": "constant", "dapo": "token_mean"}[
            config.loss_type
        ]
    return "sum" if isinstance(config, RLOOConfig) else "token_mean"


def _sequence_kl(loop: Loop, rollout: Rollout, config: PolicyGradientSettings):
    """Per-sample reference log-probs and per-token KL estimates (None without a reference)."""
    if not config.beta:
        return None, None
    reference = loop.reference_logps(rollout)
    kls = [kl_estimate(b, r, config.kl_estimator) for b, r in
           zip(rollout.behaviour_logps, reference)]  # fmt: skip
    return reference, kls


def _group_rollout(loop: Loop, config: GRPOConfig, prompts, rollout_index: int):
    """Sample (with DAPO's dynamic sampling: again, keeping groups whose rewards differ)."""
    dynamic = config.dynamic_sampling if config.dynamic_sampling is not None else (
        config.loss_type == "dapo")  # fmt: skip
    buffer = config.overlong_buffer if config.overlong_buffer is not None else (
        config.max_new_tokens // 4 if config.loss_type == "dapo" else 0)  # fmt: skip
    kept: list[tuple[Rollout, int, torch.Tensor, torch.Tensor]] = []
    rounds, k = 0, config.samples_per_prompt
    for round_ in range(config.max_sampling_rounds if dynamic else 1):
        rounds += 1
        seed = loop.call_seed(rollout_index, round_)
        rollout = loop.sample(prompts, seed)
        rewards, keep = shaped_rewards(loop, rollout, seed, buffer)
        for g in range(len(prompts)):
            group = rewards[g * k : (g + 1) * k]
            if not dynamic or bool((group != group[0]).any()):
                kept.append((rollout, g, group, keep[g * k : (g + 1) * k]))
        if len(kept) >= len(prompts):
            break
    return kept[: len(prompts)], rounds


def _items(rollout: Rollout, rows: list[int], advantages, weights, reference, extra=None):
    items = []
    prompt_ids = [ids for ids in rollout.prompt_ids for _ in range(rollout.k)]
    for n, i in enumerate(rows):
        item = {"prompt_ids": prompt_ids[i], "completion_ids": rollout.completion_ids[i],
                "behaviour": rollout.behaviour_logps[i], "advantages": advantages[n],
                "weights": weights[n]}  # fmt: skip
        if reference is not None:
            item["reference"] = reference[i]
        for key, values in (extra or {}).items():
            item[key] = values[n]
        items.append(item)
    return items


def _trim(values: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    return [row[: int(m.sum())] for row, m in zip(values, mask)]


def build_group_rollout(loop: Loop, config: PolicyGradientSettings):
    """The builder of GRPO, RLOO and REINFORCE++: K samples per prompt, group advantages."""

    def build(rollout_index: int, shard: Shard):
        prompts = loop.rollout_prompts(rollout_index, shard)
        if isinstance(config, GRPOConfig):
            groups, rounds = _group_rollout(loop, config, prompts, rollout_index)
        else:
            seed = loop.call_seed(rollout_index)
            rollout = loop.sample(prompts, seed)
            rewards, keep, dense = rollout_rewards(loop, rollout, seed)
            if dense is not None and not isinstance(config, ReinforcePPConfig):
                dense = None  # RLOO takes the summed reward
            rollout.dense_rewards = dense
            k = config.samples_per_prompt
            groups = [(rollout, g, rewards[g * k : (g + 1) * k], keep[g * k : (g + 1) * k])
                      for g in range(len(prompts))]  # fmt: skip
            rounds = 1
        if not groups:
            return [], {"sampling_rounds": rounds}
        items, raw = [], []
        for rollout in {id(r): r for r, *_ in groups}.values():
            mine = [(g, rw, kp) for r, g, rw, kp in groups if r is rollout]
            items += _rollout_items(loop, config, rollout, mine)
            raw += [rw for _, rw, _ in mine]
        all_rewards = torch.cat(raw)
        metrics = {"reward": all_rewards.mean().item(), "sampling_rounds": rounds,
                   "completion_length": sum(len(i["completion_ids"]) for i in items) / len(items),
                   **_rollout_metrics(groups)}  # fmt: skip
        return items, metrics

    return build


def _rollout_metrics(groups) -> dict[str, float]:
    rollouts = {id(r): r for r, *_ in groups}.values()
    finished = [f for r in rollouts for f in r.finished]
    speed = [r.tokens_per_second for r in rollouts]
    return {"truncated_share": 1 - sum(finished) / len(finished),
            "generation_tokens_per_second": sum(speed) / len(speed)}  # fmt: skip


def _rollout_items(loop: Loop, config, rollout: Rollout, groups) -> list[dict]:
    k = rollout.k
    rows = [g * k + j for g, _, _ in groups for j in range(k)]
    rewards = torch.stack([rw for _, rw, _ in groups])  # [G, K]
    keep = torch.cat([kp for _, _, kp in groups])
    reference, kls = _sequence_kl(loop, rollout, config)
    in_reward = kls is not None and config.kl_in == "reward"
    _, mask = pad_tokens([rollout.behaviour_logps[i] for i in rows])
    if isinstance(config, ReinforcePPConfig):
        baseline = rewards.mean(-1, keepdim=True) if config.baseline else torch.zeros(1, 1)
        kl = pad_tokens([kls[i] for i in rows])[0] if in_reward else None
        dense = rollout.dense_rewards
        if dense is None:
            per_token = token_rewards((rewards - baseline).flatten(), kl, mask, config.beta)
        else:  # rewards at segment ends; the group baseline comes off at the last token
            shift = (-baseline).expand_as(rewards).flatten()
            per_token = dense[rows][:, : mask.shape[1]] + token_rewards(shift, kl, mask,
                                                                        config.beta)  # fmt: skip
        advantages = _trim(whiten(returns_to_go(per_token, mask), mask), mask)
    else:
        if in_reward:
            penalty = torch.stack([kls[i].sum() for i in rows]).view_as(rewards)
            rewards = rewards - config.beta * penalty
        if isinstance(config, RLOOConfig):
            sequence = leave_one_out_advantages(rewards)
        else:
            sequence = group_advantages(rewards, scale=config.loss_type != "dr_grpo")
        advantages = list(sequence.flatten())
    weights = aggregation_weights(mask, _aggregation(config), config.max_new_tokens)
    weights = _trim(weights * keep[:, None], mask)
    return _items(rollout, rows, advantages, weights, reference if not in_reward else None)


def policy_gradient_loss(loop: Loop, config: PolicyGradientSettings, value: ValueModel | None):
    """The update: clipped surrogate (+ β·KL in the loss) (+ clipped value loss for PPO)."""
    pad = loop.policy.tokenizer.pad_token_id
    temperature = config.temperature or 1.0

    def loss(items: list[dict]):
        prompts = [i["prompt_ids"] for i in items]
        completions = [i["completion_ids"] for i in items]
        logps, mask = completion_logps(loop.policy.model, prompts, completions, pad, temperature)
        device, width = logps.device, logps.shape[1]
        behaviour = padded(items, "behaviour", width).to(device)
        weights = padded(items, "weights", width).to(device)
        advantages = _advantages(items, width).to(device)
        per_token = clipped_surrogate(logps, behaviour, advantages, config.eps_low,
                                      config.clip_high)  # fmt: skip
        metrics: dict[str, float] = {}
        if "reference" in items[0]:
            reference = padded(items, "reference", width).to(device)
            kl = kl_estimate(logps, reference, config.kl_estimator) * mask
            per_token = per_token + config.beta * kl
            metrics["kl"] = (kl.sum() / mask.sum()).item()
        total = (per_token * weights).sum(-1).mean()
        with torch.no_grad():
            ratio = torch.exp(logps - behaviour)
            clipped = ((ratio < 1 - config.eps_low) | (ratio > 1 + config.clip_high)).float()
            metrics["clip_fraction"] = ((clipped * mask).sum() / mask.sum()).item()
        if value is not None:
            values = value.completion_values(prompts, completions, pad)
            old = padded(items, "values", width).to(device)
            returns = padded(items, "returns", width).to(device)
            value_loss = clipped_value_loss(values, old, returns, mask, config.value_clip)
            total = total + config.value_coef * value_loss
            metrics["value_loss"] = value_loss.item()
        return total, metrics

    return loss


def _advantages(items: list[dict], width: int) -> torch.Tensor:
    first = items[0]["advantages"]
    if isinstance(first, torch.Tensor) and first.dim() == 1:
        return padded(items, "advantages", width)
    return torch.tensor([float(i["advantages"]) for i in items])


def build_ppo_rollout(loop: Loop, config: PPOConfig, value: ValueModel):
    """PPO's builder: one sample per prompt, token rewards, critic values, GAE."""
    pad = loop.policy.tokenizer.pad_token_id

    def build(rollout_index: int, shard: Shard):
        prompts = loop.rollout_prompts(rollout_index, shard)
        seed = loop.call_seed(rollout_index)
        rollout = loop.sample(prompts, seed)
        rewards, keep, dense = rollout_rewards(loop, rollout, seed)
        rows = list(range(len(rollout.completion_ids)))
        _, mask = pad_tokens(rollout.behaviour_logps)
        reference, kls = _sequence_kl(loop, rollout, config)
        in_reward = kls is not None and config.kl_in == "reward"
        kl = pad_tokens(kls)[0] if in_reward else None
        if dense is None:
            per_token = token_rewards(rewards, kl, mask, config.beta)
        else:  # Fine-Grained RLHF: rewards at segment ends, KL at every token
            per_token = dense + token_rewards(torch.zeros(len(rows)), kl, mask, config.beta)
        prompt_ids = [ids for ids in rollout.prompt_ids for _ in range(rollout.k)]
        with torch.no_grad():
            values = value.completion_values(prompt_ids, rollout.completion_ids, pad).cpu()
        advantages, returns = generalized_advantages(per_token, values * mask, mask,
                                                     config.gamma, config.lam)  # fmt: skip
        advantages = whiten(advantages, mask)
        weights = aggregation_weights(mask, "token_mean") * keep[:, None]
        items = _items(rollout, rows, _trim(advantages, mask), _trim(weights, mask),
                       None if in_reward else reference,
                       {"values": _trim(values * mask, mask),
                        "returns": _trim(returns, mask)})  # fmt: skip
        metrics = {"reward": rewards.mean().item(),
                   "completion_length": sum(rollout.lengths) / len(rows),
                   **_rollout_metrics([(rollout,)])}  # fmt: skip
        return items, metrics

    return build


def policy_gradient_task(loop: Loop, config: PolicyGradientSettings, train: TrainConfig,
                         value: ValueModel | None = None) -> Task:  # fmt: skip
    """The task of ``config``'s method on ``loop`` (PPO also trains ``value``)."""
    if isinstance(config, PPOConfig):
        if value is None:
            raise ValueError("ppo needs a value model")
        build = build_ppo_rollout(loop, config, value)
    else:
        build = build_group_rollout(loop, config)
    source = RolloutSource(build, train.batch_size, config.rollout_epochs, train.seed,
                           loop.schedule, loop.labels, loop.restore_labels)  # fmt: skip
    trainables = [Trainable(loop.policy)] + ([Trainable(value)] if value else [])
    return online_task(config, loop, source, policy_gradient_loss(loop, config, value),
                       trainables)  # fmt: skip


def online_task(config, loop: Loop, source: RolloutSource, loss, trainables) -> Task:
    """The engine task of an online method; the run's metrics add the rollout's."""

    def with_rollout_metrics(items):
        total, metrics = loss(items)
        metrics.update(source.metrics)
        metrics["labels_used"] = float(loop.judge.labels_used)
        return total, metrics

    settings = {"method": {"name": config.name, **vars(config)},
                "judge": type(loop.judge).__name__, "prompts": len(loop.prompts)}  # fmt: skip
    return Task(config.name, source, with_rollout_metrics, trainables,
                loop.policy.save_pretrained, settings)  # fmt: skip


@dataclass
class ReinforcePPBaselineConfig(ReinforcePPConfig):
    """REINFORCE++-baseline: each group's mean reward is subtracted before the token returns."""

    name: ClassVar[str] = "reinforce++-baseline"
    baseline: bool = setting(True, "Subtract each group's mean reward first.")
