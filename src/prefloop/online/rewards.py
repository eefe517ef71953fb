"""Rewards of a rollout's samples from any judge, with the truncation and length options."""

from __future__ import annotations

import torch

from prefloop.objectives.policy_gradient import overlong_penalty
from prefloop.online.dense import DenseJudge
from prefloop.online.judges import PairwiseJudge, ScalarJudge
from prefloop.online.loop import Loop
from prefloop.online.rollout import Rollout
from prefloop.online.source import pad_tokens


def judge_rewards(loop: Loop, rollout: Rollout, seed: int) -> torch.Tensor:
    """One reward per sample: a scalar judge's score, or a pairwise judge's mean win rate
    against the other samples of its group (K(K − 1)/2 comparisons per prompt)."""
    judge = loop.judge
    prompts = rollout.sample_prompts
    if isinstance(judge, ScalarJudge):
        return torch.tensor(judge.score(prompts, rollout.texts, seed), dtype=torch.float32)
    if not isinstance(judge, PairwiseJudge):
        raise TypeError(f"not a judge: {type(judge).__name__}")
    k = rollout.k
    if k < 2:
        raise ValueError("a pairwise judge needs at least 2 samples per prompt to compare")
    first, second = [], []
    for g in range(len(rollout.prompts)):
        for i in range(k):
            for j in range(i + 1, k):
                first.append(g * k + i)
                second.append(g * k + j)
    texts = rollout.texts
    wins = judge.prefer([prompts[i] for i in first], [texts[i] for i in first],
                        [texts[j] for j in second], seed)  # fmt: skip
    rewards = torch.zeros(len(texts))
    for i, j, p in zip(first, second, wins):
        rewards[i] += p
        rewards[j] += 1.0 - p
    return rewards / (k - 1)


def rollout_rewards(
    loop: Loop, rollout: Rollout, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Rewards and loss weights as :func:`shaped_rewards`, plus the per-token rewards
    ([N, L], completion-aligned) when the judge is dense; their sums are then the rewards."""
    if isinstance(loop.judge, DenseJudge):
        _, mask = pad_tokens(rollout.behaviour_logps)
        dense = loop.judge.token_rewards(rollout.sample_prompts, rollout.completion_ids, mask)
        keep = torch.ones(len(mask))
        if loop.settings.truncated == "mask":
            keep = torch.tensor([float(f) for f in rollout.finished])
        return dense.sum(-1), keep, dense
    rewards, keep = shaped_rewards(loop, rollout, seed)
    return rewards, keep, None


def shaped_rewards(
    loop: Loop, rollout: Rollout, seed: int, overlong_buffer: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards after the truncation option and DAPO's overlong shaping, and the 0/1 weight of
    each sample in the loss (0 for a truncated one under ``truncated="mask"``)."""
    settings = loop.settings
    rewards = judge_rewards(loop, rollout, seed)
    truncated = torch.tensor([not f for f in rollout.finished])
    keep = torch.ones(len(rewards))
    if settings.truncated == "penalize":
        rewards = torch.where(truncated, torch.tensor(settings.truncation_penalty), rewards)
    elif settings.truncated == "mask":
        keep = (~truncated).float()
    if overlong_buffer:
        lengths = torch.tensor(rollout.lengths)
        rewards = rewards + overlong_penalty(lengths, settings.max_new_tokens, overlong_buffer)
    return rewards, keep
