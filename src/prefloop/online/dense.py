"""Dense, multi-reward feedback (Fine-Grained RLHF, Wu et al. 2023): rewards at segment ends.

A completion is cut into segments (sentences by default: a segment ends at a token whose text
ends with ``.``, ``!`` or ``?``, and at the last token). Each segment reward function
``fn(prompts, segments) -> rewards`` gets every completion's segment texts and returns one
reward per segment; several are combined with weights, and each reward lands on its
segment's last token. ``ppo`` and ``reinforce++`` train on these per-token rewards; to every
other method a :class:`DenseJudge` is a scalar judge whose score is the sum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from prefloop.data.records import Prompt
from prefloop.objectives.policy_gradient import segment_rewards
from prefloop.online.reward_functions import RewardFunctionError

SegmentFn = Callable[[list[Prompt], list[list[str]]], Sequence[Sequence[float]]]
SENTENCE_ENDS = (".", "!", "?")


@dataclass(frozen=True)
class SegmentRewardFunction:
    name: str
    fn: SegmentFn
    weight: float = 1.0


def segments_of(tokenizer, completion_ids: Sequence[int],
                ends: tuple[str, ...] = SENTENCE_ENDS) -> list[tuple[int, str]]:  # fmt: skip
    """``(last token index, text)`` of each segment of one completion (EOS excluded)."""
    ids = list(completion_ids)
    if ids and ids[-1] == tokenizer.eos_token_id:
        ids = ids[:-1]
    found, start = [], 0
    for i, token in enumerate(ids):
        if tokenizer.decode([token]).strip().endswith(ends) or i == len(ids) - 1:
            found.append((i, tokenizer.decode(ids[start : i + 1], skip_special_tokens=True)))
            start = i + 1
    return found


class DenseJudge:
    """Weighted segment reward functions; one label per segment scored."""

    def __init__(self, functions: Sequence[SegmentRewardFunction], tokenizer) -> None:
        if not functions:
            raise RewardFunctionError("no segment reward function given")
        self.functions, self.tokenizer = list(functions), tokenizer
        self.labels_used = 0

    def token_rewards(self, prompts: Sequence[Prompt], completion_ids: Sequence[Sequence[int]],
                      mask: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """Completion-aligned [N, L] rewards: every function's at its segments' ends."""
        segments = [segments_of(self.tokenizer, ids) for ids in completion_ids]
        texts = [[text for _, text in s] for s in segments]
        total = torch.zeros_like(mask, dtype=torch.float32)
        for function in self.functions:
            values = self._call(function, list(prompts), texts)
            placed = [[(end, v) for (end, _), v in zip(s, row)] for s, row in zip(segments, values)]
            total += segment_rewards(mask, placed, function.weight)
        self.labels_used += sum(len(s) for s in segments)
        return total

    def score(self, prompts, completions, seed=0):
        """The summed segment rewards of text completions (tokenised here)."""
        ids = self.tokenizer(list(completions), add_special_tokens=False)["input_ids"]
        mask = torch.zeros(len(ids), max((len(i) for i in ids), default=0) or 1)
        for row, tokens in enumerate(ids):
            mask[row, : len(tokens)] = 1
        return self.token_rewards(prompts, ids, mask).sum(-1).tolist()

    @staticmethod
    def _call(function: SegmentRewardFunction, prompts: list[Prompt], texts: list[list[str]]):
        try:
            values = [list(map(float, row)) for row in function.fn(prompts, texts)]
        except Exception as error:  # noqa: BLE001 - any failure of user code is reported
            raise RewardFunctionError(f"segment reward function {function.name} raised "
                                      f"{type(error).__name__}: {error}") from None  # fmt: skip
        for i, (row, segments) in enumerate(zip(values, texts)):
            if len(row) != len(segments):
                raise RewardFunctionError(
                    f"segment reward function {function.name} returned {len(row)} rewards for "
                    f"the {len(segments)} segments of sample {i}")  # fmt: skip
        if len(values) != len(texts):
            raise RewardFunctionError(
                f"segment reward function {function.name} returned {len(values)} rows for "
                f"{len(texts)} completions")  # fmt: skip
        return values
