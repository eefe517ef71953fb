"""Game-theoretic online methods on language models: Nash-MD, SPO, INPO, DNO and OSP.

Each iteration (rollout) freezes ``π_t`` — the policy as the rollout starts, whose per-token
log-probs the generator returns with the samples — draws K responses per prompt, asks the
judge, and minimises the same loss the tabular recipes (:mod:`prefloop.algorithms.nash`)
minimise exactly, now over the samples: ``objectives.nash`` for the per-sample methods,
``direct.inpo`` / ``direct.dno`` / ``direct.soft_preference`` for the pairwise ones. ``μ`` is
the fixed reference (the start policy). Sequence log-probs are sums over completion tokens at
the sampling temperature. ``tau`` and ``eta`` mean what they mean in the tabular recipes: the
game's KL-to-reference strength and the mirror step (pair losses take ``beta = 1/eta``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from prefloop.objectives import direct
from prefloop.objectives.nash import nash_md_loss, spo_loss
from prefloop.online.generator import TransformersGenerator
from prefloop.online.judges import as_pairwise
from prefloop.online.logps import completion_logps
from prefloop.online.loop import Loop, OnlineSettings
from prefloop.online.mixture import mixture_opponents, mixture_policy
from prefloop.online.policy_gradient import online_task
from prefloop.online.rewards import judge_rewards
from prefloop.online.rollout import Rollout
from prefloop.online.self_judge import PolicyJudge
from prefloop.online.source import RolloutSource
from prefloop.train.config import ConfigError, setting
from prefloop.train.engine import Task, Trainable, TrainConfig
from prefloop.train.sources import Shard


@dataclass
class NashMDConfig(OnlineSettings):
    """Nash-MD (Munos et al. 2023), policy-gradient form: each sample ``y ~ π_t`` plays an
    opponent ``y' ~ π_t^{1−c} μ^c``; loss ``−(P(y ≻ y') − ½) log π(y) + τ · sg(log π/μ) log π``.
    ``mixture=sequence`` draws the opponent from the sequence-level mixture (importance
    resampling of the other samples); ``token`` samples it token by token from the mixed
    next-token distribution, as TRL's NashMDTrainer does."""

    name: ClassVar[str] = "nash-md"
    mixture: str = setting("sequence", "How the opponent is drawn: sequence (the paper's "
                           "mixture) or token (TRL's per-token mixture).",
                           choices=("sequence", "token"))  # fmt: skip
    mixture_coef: float = setting(0.125, "Weight c of the reference in the mixture π^{1−c} μ^c.",
                                  low=0, high=1)  # fmt: skip
    tau: float = setting(0.05, "KL-to-reference strength τ in the loss.", low=0)


@dataclass
class SPOConfig(OnlineSettings):
    """SPO (Swamy et al. 2024): reward = each sample's win rate against the policy's other
    samples (K(K−1)/2 comparisons per prompt), one KL-regularised policy-gradient step."""

    name: ClassVar[str] = "spo"
    tau: float = setting(0.05, "KL-to-reference strength τ.", low=0)
    eta: float = setting(1.0, "Step size η: the KL to π_t weighs 1/η.", low=0, low_open=True)


@dataclass
class INPOConfig(OnlineSettings):
    """INPO (Zhang et al. 2024): pairs of samples of ``π_t``, one label each, regressed onto
    the mirror-descent step (``direct.inpo`` with ``beta = 1/eta``, ``ratio = eta·tau``)."""

    name: ClassVar[str] = "inpo"
    samples_per_prompt: int = setting(2, "Completions per prompt, paired in order.", low=2)
    rollout_epochs: int = setting(2, "Passes over each iteration's pairs.", low=1)
    tau: float = setting(0.033, "KL-to-reference strength τ (ratio η·τ ≤ 1).", low=0)
    eta: float = setting(10.0, "Step size η; the regression target is η/2.", low=0,
                         low_open=True)  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.eta * self.tau > 1:
            raise ConfigError(f"method 'inpo': eta·tau must be at most 1, got "
                              f"{self.eta * self.tau:g}")  # fmt: skip


@dataclass
class DNOConfig(OnlineSettings):
    """DNO (Rosset et al. 2024, Alg. 1): each sample's win rate against ``π_t``'s other samples
    (K(K−1)/2 comparisons), every pair regressed with soft label ``σ(r(y) − r(y'))`` and
    reference ``π_t`` (``direct.dno``, ``beta = 1/eta``)."""

    name: ClassVar[str] = "dno"
    rollout_epochs: int = setting(2, "Passes over each iteration's pairs.", low=1)
    tau: float = setting(0.0, "KL shaping of the win rate, r − τ log(π_t/μ) (0: the paper's).",
                         low=0)  # fmt: skip
    eta: float = setting(5.0, "Step size η (the paper's η is 1/eta).", low=0, low_open=True)


@dataclass
class OSPConfig(OnlineSettings):
    """OSP (Zhai et al. 2024): the policy judges its own samples (no annotator), ranked pairing
    (best with worst, second with second-worst …), soft-preference DPO with the self-judged
    strengths (``direct.soft_preference``)."""

    name: ClassVar[str] = "osp"
    self_judging: ClassVar[bool] = True  # the command line takes no judge flag
    rollout_epochs: int = setting(2, "Passes over each iteration's pairs.", low=1)
    beta: float = setting(0.1, "β of the DPO logit.", low=0, low_open=True)


NASH_CONFIGS = (NashMDConfig, SPOConfig, INPOConfig, DNOConfig, OSPConfig)


def _sequence_logps(loop: Loop, items: list[dict]) -> torch.Tensor:
    pad = loop.policy.tokenizer.pad_token_id
    logps, _ = completion_logps(loop.policy.model, [i["prompt_ids"] for i in items],
                                [i["completion_ids"] for i in items], pad,
                                loop.settings.temperature or 1.0)  # fmt: skip
    return logps.sum(-1)


def _frozen(loop: Loop, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed ``log π_t`` (the behaviour log-probs) and ``log μ`` of every sample ``[N]``."""
    previous = torch.stack([lp.sum() for lp in rollout.behaviour_logps])
    reference = torch.stack([lp.sum() for lp in loop.reference_logps(rollout)])
    return previous, reference


def _metrics(rollout: Rollout, **values: float) -> dict[str, float]:
    return {"completion_length": sum(rollout.lengths) / len(rollout.lengths),
            "generation_tokens_per_second": rollout.tokens_per_second, **values}  # fmt: skip


def _start(loop: Loop, rollout_index: int, shard: Shard) -> tuple[Rollout, int]:
    seed = loop.call_seed(rollout_index)
    return loop.sample(loop.rollout_prompts(rollout_index, shard), seed), seed


def build_nash_md(loop: Loop, config: NashMDConfig):
    judge = as_pairwise(loop.judge)

    def build(rollout_index: int, shard: Shard):
        rollout, seed = _start(loop, rollout_index, shard)
        previous, reference = _frozen(loop, rollout)
        k = rollout.k
        if config.mixture == "sequence":
            picks = mixture_opponents(previous.view(-1, k), reference.view(-1, k),
                                      config.mixture_coef, seed)  # fmt: skip
            index = (picks + torch.arange(len(picks))[:, None] * k).flatten().tolist()
            opponents = [rollout.texts[j] for j in index]
        else:  # decoded from the two models' mixed next-token distribution, on this process
            mixture = mixture_policy(loop.policy, loop.reference, config.mixture_coef)
            drawn = TransformersGenerator().generate(mixture, rollout.prompts, k,
                                                     config.decoding(), seed + 1)  # fmt: skip
            opponents = drawn.texts
        wins = judge.prefer(rollout.sample_prompts, rollout.texts, opponents, seed)
        items = [
            {
                "prompt_ids": rollout.prompt_ids[i // k],
                "completion_ids": ids,
                "preference": p,
                "reference": float(r),
            }
            for i, (ids, p, r) in enumerate(zip(rollout.completion_ids, wins, reference))
        ]
        return items, _metrics(rollout, win_rate_vs_mixture=sum(wins) / len(wins))

    def loss(items: list[dict]):
        logps = _sequence_logps(loop, items)
        column = _columns(items, logps.device)
        per_sample = nash_md_loss(logps, column("reference"), column("preference"),
                                  kl_coef=config.tau)  # fmt: skip
        return per_sample.mean(), {"kl_to_reference": (logps - column("reference")).mean().item()}

    return build, loss


def build_spo(loop: Loop, config: SPOConfig):
    def build(rollout_index: int, shard: Shard):
        rollout, seed = _start(loop, rollout_index, shard)
        previous, reference = _frozen(loop, rollout)
        rewards = judge_rewards(loop, rollout, seed)
        k = rollout.k
        items = [{"prompt_ids": rollout.prompt_ids[i // k], "completion_ids": ids,
                  "reward": float(r), "previous": float(a), "reference": float(b)}
                 for i, (ids, r, a, b) in enumerate(zip(rollout.completion_ids, rewards,
                                                        previous, reference))]  # fmt: skip
        return items, _metrics(rollout, reward=rewards.mean().item())

    def loss(items: list[dict]):
        logps = _sequence_logps(loop, items)
        column = _columns(items, logps.device)
        per_sample = spo_loss(logps, column("previous"), column("reference"), column("reward"),
                              eta=config.eta, tau=config.tau)  # fmt: skip
        return per_sample.mean(), {"kl_to_reference": (logps - column("reference")).mean().item()}

    return build, loss


def _columns(items: list[dict], device: torch.device):
    def column(key: str, part: int | None = None) -> torch.Tensor:
        values = [i[key] if part is None else i[key][part] for i in items]
        return torch.tensor(values, dtype=torch.float32, device=device)

    return column


def _pair_item(rollout: Rollout, chosen: int, rejected: int, **values: Any) -> dict:
    return {"prompt_ids": rollout.prompt_ids[chosen // rollout.k],
            "chosen": rollout.completion_ids[chosen], "rejected": rollout.completion_ids[rejected],
            **values}  # fmt: skip


def _pair_logps(loop: Loop, items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    both = _sequence_logps(loop, [{"prompt_ids": i["prompt_ids"], "completion_ids": i[key]}
                                  for key in ("chosen", "rejected") for i in items])  # fmt: skip
    return both[: len(items)], both[len(items) :]


def build_inpo(loop: Loop, config: INPOConfig):
    judge = as_pairwise(loop.judge)

    def build(rollout_index: int, shard: Shard):
        rollout, seed = _start(loop, rollout_index, shard)
        previous, reference = _frozen(loop, rollout)
        firsts = list(range(0, len(rollout.texts) - 1, 2))
        firsts = [i for i in firsts if i // rollout.k == (i + 1) // rollout.k]
        prompts = rollout.sample_prompts
        wins = judge.prefer([prompts[i] for i in firsts], [rollout.texts[i] for i in firsts],
                            [rollout.texts[i + 1] for i in firsts], seed)  # fmt: skip
        items = []
        for i, p in zip(firsts, wins):
            chosen, rejected = (i, i + 1) if p >= 0.5 else (i + 1, i)
            items.append(_pair_item(rollout, chosen, rejected,
                                    previous=(float(previous[chosen]), float(previous[rejected])),
                                    reference=(float(reference[chosen]),
                                               float(reference[rejected]))))  # fmt: skip
        return items, _metrics(rollout, pairs=float(len(items)))

    def loss(items: list[dict]):
        chosen, rejected = _pair_logps(loop, items)
        column = _columns(items, chosen.device)
        per_pair = direct.inpo(chosen, rejected, column("reference", 0), column("reference", 1),
                               beta=1.0 / config.eta, previous_chosen_logps=column("previous", 0),
                               previous_rejected_logps=column("previous", 1),
                               ratio=config.eta * config.tau)  # fmt: skip
        return per_pair.mean(), {"chosen_logps": chosen.mean().item()}

    return build, loss


def build_dno(loop: Loop, config: DNOConfig):
    def build(rollout_index: int, shard: Shard):
        rollout, seed = _start(loop, rollout_index, shard)
        previous, reference = _frozen(loop, rollout)
        rewards = judge_rewards(loop, rollout, seed) - config.tau * (previous - reference)
        k, items = rollout.k, []
        for g in range(len(rollout.prompts)):
            for a in range(g * k, (g + 1) * k):
                for b in range(a + 1, (g + 1) * k):
                    items.append(
                        _pair_item(
                            rollout,
                            a,
                            b,
                            previous=(float(previous[a]), float(previous[b])),
                            strength=float(torch.sigmoid(rewards[a] - rewards[b])),
                        )
                    )
        return items, _metrics(rollout, pairs=float(len(items)))

    def loss(items: list[dict]):
        chosen, rejected = _pair_logps(loop, items)
        column = _columns(items, chosen.device)
        per_pair = direct.dno(chosen, rejected, column("previous", 0), column("previous", 1),
                              beta=1.0 / config.eta, strength=column("strength"))  # fmt: skip
        return per_pair.mean(), {"chosen_logps": chosen.mean().item()}

    return build, loss


def build_osp(loop: Loop, config: OSPConfig):
    if not isinstance(loop.judge, PolicyJudge) or loop.judge.policy is not loop.policy:
        raise ValueError("osp judges with the policy itself: its judge must be "
                         "PolicyJudge(policy)")  # fmt: skip
    judge = loop.judge

    def build(rollout_index: int, shard: Shard):
        rollout, seed = _start(loop, rollout_index, shard)
        _, reference = _frozen(loop, rollout)
        scores = judge_rewards(loop, rollout, seed).view(-1, rollout.k)
        pairs = []
        for g, group in enumerate(scores):
            order = (torch.argsort(group, descending=True) + g * rollout.k).tolist()
            pairs += [(order[i], order[-1 - i]) for i in range(rollout.k // 2)]
        prompts = rollout.sample_prompts
        strengths = judge.prefer([prompts[a] for a, _ in pairs],
                                 [rollout.texts[a] for a, _ in pairs],
                                 [rollout.texts[b] for _, b in pairs], seed)  # fmt: skip
        items = [_pair_item(rollout, a, b, strength=s,
                            reference=(float(reference[a]), float(reference[b])))
                 for (a, b), s in zip(pairs, strengths)]  # fmt: skip
        return items, _metrics(rollout, self_judgments=float(judge.judgments),
                               mean_strength=sum(strengths) / len(strengths))  # fmt: skip

    def loss(items: list[dict]):
        chosen, rejected = _pair_logps(loop, items)
        column = _columns(items, chosen.device)
        per_pair = direct.soft_preference(chosen, rejected, column("reference", 0),
                                          column("reference", 1), beta=config.beta,
                                          strength=column("strength"))  # fmt: skip
        return per_pair.mean(), {"chosen_logps": chosen.mean().item()}

    return build, loss


BUILDERS = {NashMDConfig: build_nash_md, SPOConfig: build_spo, INPOConfig: build_inpo,
            DNOConfig: build_dno, OSPConfig: build_osp}  # fmt: skip


def nash_task(loop: Loop, config: OnlineSettings, train: TrainConfig) -> Task:
    """The engine task of a game-theoretic method on ``loop``."""
    build, loss = BUILDERS[type(config)](loop, config)
    source = RolloutSource(build, train.batch_size, config.rollout_epochs, train.seed,
                           loop.schedule, loop.labels, loop.restore_labels)  # fmt: skip
    return online_task(config, loop, source, loss, [Trainable(loop.policy)])
