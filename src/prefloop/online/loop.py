"""What every online method shares: prompts in, samples from the current policy, settings.

:class:`OnlineSettings` holds the options common to all online methods (sampling, reference
schedule, truncated completions); :class:`Loop` is one run's live parts — policy, reference,
generator, judge, prompts — and samples one rollout's share for a process.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from prefloop.data.records import Prompt
from prefloop.models.policy import Policy
from prefloop.online.generator import Generator, make_generator
from prefloop.online.judges import Judge
from prefloop.online.logps import completion_logps
from prefloop.online.rollout import Decoding, Rollout
from prefloop.online.source import ReferenceSchedule, pad_tokens
from prefloop.train.config import setting, validate
from prefloop.train.sources import Shard


@dataclass
class OnlineSettings:
    """Sampling and reference options every online method has."""

    samples_per_prompt: int = setting(4, "Completions sampled per prompt (K).", low=1)
    rollout_prompts: int = setting(16, "Prompts sampled per rollout.", low=1)
    rollout_epochs: int = setting(1, "Passes over each rollout's items (PPO: several).", low=1)
    temperature: float = setting(1.0, "Sampling temperature (0: greedy).", low=0)
    top_p: float = setting(1.0, "Nucleus sampling mass.", low=0, low_open=True, high=1)
    top_k: int = setting(0, "Sample among the k likeliest tokens (0: all).", low=0)
    max_new_tokens: int = setting(48, "Longest completion, in tokens.", low=1)
    stop: tuple[str, ...] = setting((), "Strings that end a completion.")
    reference: str = setting("fixed", "fixed (the start policy), previous (each rollout's "
                             "starting policy) or every (refreshed every N steps).",
                             choices=("fixed", "previous", "every"))  # fmt: skip
    reference_every: int = setting(0, "Steps between refreshes with reference=every.", low=0)
    truncated: str = setting("keep", "Completions cut at max_new_tokens: keep, mask (out of "
                             "the loss) or penalize (reward := truncation_penalty).",
                             choices=("keep", "mask", "penalize"))  # fmt: skip
    truncation_penalty: float = setting(-1.0, "Reward of a truncated completion (penalize).")
    generator: str = setting("auto", "auto (vLLM on a GPU when installed), transformers or "
                             "vllm.", choices=("auto", "transformers", "vllm"))  # fmt: skip

    def __post_init__(self) -> None:
        validate(self, f"method {getattr(self, 'name', 'online')!r}")

    def decoding(self) -> Decoding:
        return Decoding(self.temperature, self.top_p, self.top_k, self.max_new_tokens,
                        tuple(self.stop))  # fmt: skip


@dataclass
class Loop:
    """One online run's live parts; ``reference`` is None when the method needs none."""

    policy: Policy
    judge: Judge
    prompts: Sequence[Prompt]
    settings: OnlineSettings
    seed: int
    reference: Policy | None = None
    generator: Generator = field(default=None)  # type: ignore[assignment]
    schedule: ReferenceSchedule | None = None

    def __post_init__(self) -> None:
        if not self.prompts:
            raise ValueError("an online method needs at least one prompt")
        if self.generator is None:
            self.generator = make_generator(self.settings.generator)
        self.schedule = ReferenceSchedule(self.policy, self.reference, self.settings.reference,
                                          self.settings.reference_every)  # fmt: skip

    @classmethod
    def with_reference(cls, policy: Policy, **parts) -> Loop:
        """A loop whose reference starts as a frozen copy of ``policy``."""
        reference = Policy(copy.deepcopy(policy.model), policy.tokenizer, policy.max_length)
        reference.model.requires_grad_(False)
        return cls(policy, reference=reference, **parts)

    def rollout_prompts(self, rollout: int, shard: Shard) -> list[Prompt]:
        """This process's prompts of rollout ``rollout``: a seeded pass through the prompts."""
        n = self.settings.rollout_prompts
        per_pass = len(self.prompts)
        picked = []
        for position in range(rollout * n, (rollout + 1) * n):
            epoch, index = divmod(position, per_pass)
            order = np.random.default_rng([self.seed, epoch, 0x9A55]).permutation(per_pass)
            picked.append(self.prompts[int(order[index])])
        return picked[shard.index :: shard.count]

    def sample(self, prompts: Sequence[Prompt], seed: int, k: int | None = None) -> Rollout:
        self.generator.sync(self.policy)
        k = k or self.settings.samples_per_prompt
        return self.generator.generate(self.policy, prompts, k, self.settings.decoding(), seed)

    def call_seed(self, rollout: int, round_: int = 0) -> int:
        """The seed of a rollout's sampling and judging (a function of the run's seed)."""
        return int(np.random.default_rng([self.seed, rollout, round_]).integers(2**31))

    @torch.no_grad()
    def reference_logps(self, rollout: Rollout) -> list[torch.Tensor]:
        """Per-token reference log-probs of every completion of ``rollout``."""
        if self.reference is None:
            raise ValueError("this method has no reference policy")
        out = []
        prompt_ids = [ids for ids in rollout.prompt_ids for _ in range(rollout.k)]
        for start in range(0, len(prompt_ids), 64):
            stop = start + 64
            logps, mask = completion_logps(self.reference.model, prompt_ids[start:stop],
                                           rollout.completion_ids[start:stop],
                                           self.policy.tokenizer.pad_token_id,
                                           self.settings.temperature or 1.0)  # fmt: skip
            out += [row[: int(m.sum())].cpu() for row, m in zip(logps, mask)]
        return out

    def labels(self) -> dict[str, int]:
        return {"labels_used": self.judge.labels_used}

    def restore_labels(self, counters: dict[str, int]) -> None:
        self.judge.labels_used = counters.get("labels_used", 0)


def padded(items: list[dict], key: str, width: int | None = None) -> torch.Tensor:
    return pad_tokens([item[key] for item in items], width)[0]
