"""What a generator returns: sampled token ids with their behaviour log-probs, never only text."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from prefloop.data.records import Prompt
from prefloop.train.config import setting, validate


@dataclass(frozen=True)
class Decoding:
    """How completions are sampled."""

    temperature: float = setting(1.0, "Sampling temperature (0: greedy).", low=0)
    top_p: float = setting(1.0, "Nucleus sampling: smallest token set of this mass.", low=0,
                           low_open=True, high=1)  # fmt: skip
    top_k: int = setting(0, "Sample among the k likeliest tokens (0: all).", low=0)
    max_new_tokens: int = setting(64, "Longest completion, in tokens.", low=1)
    stop: tuple[str, ...] = setting((), "Strings that end a completion (kept in its text).")

    def __post_init__(self) -> None:
        validate(self, "decoding settings")


@dataclass
class Rollout:
    """K completions for each of G prompts, group-major (sample ``g * k + j``).

    ``behaviour_logps[i]`` holds log π(token) of each completion token under the policy that
    sampled it, at the sampling temperature, before top-p/top-k truncation (the quantity a
    policy-gradient ratio divides by). ``finished[i]`` is False for a completion cut at
    ``max_new_tokens``; a finished one ends with EOS (whose id is kept) or a stop string.
    """

    prompts: list[Prompt]
    prompt_ids: list[list[int]]
    k: int
    completion_ids: list[list[int]]
    behaviour_logps: list[torch.Tensor]
    finished: list[bool]
    texts: list[str]
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    #: per-token rewards [N, L] of a dense judge, set by the method that asked for them
    dense_rewards: torch.Tensor | None = None

    @property
    def sample_prompts(self) -> list[Prompt]:
        """The prompt of every sample."""
        return [p for p in self.prompts for _ in range(self.k)]

    @property
    def lengths(self) -> list[int]:
        return [len(ids) for ids in self.completion_ids]

    @property
    def tokens_per_second(self) -> float:
        return sum(self.lengths) / self.seconds if self.seconds else 0.0
