"""Programmatic rewards: any Python callable ``fn(prompts, completions) -> list[float]``.

Named on the command line as ``module:function`` (or ``module:function=weight``); several
are summed with their weights. A function that raises, returns the wrong number of values or
a non-finite one stops the step with a message naming the function and the sample, before
anything is updated, so the last good checkpoint stays as it was.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prefloop.data.records import Prompt

RewardFn = Callable[[list[Prompt], list[str]], Sequence[float]]


class RewardFunctionError(ValueError):
    """A reward function could not be loaded, failed, or returned something unusable."""


@dataclass(frozen=True)
class RewardFunction:
    name: str
    fn: RewardFn
    weight: float = 1.0


def load_reward_function(spec: str) -> RewardFunction:
    """``module:function`` or ``module:function=weight`` as a :class:`RewardFunction`."""
    target, _, weight_text = spec.partition("=")
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise RewardFunctionError(
            f"reward function {spec!r}: expected module:function (optionally =weight), "
            "e.g. mypackage.rewards:exact_match")  # fmt: skip
    try:
        weight = float(weight_text) if weight_text else 1.0
    except ValueError:
        raise RewardFunctionError(f"reward function {spec!r}: weight {weight_text!r} is not a "
                                  "number") from None  # fmt: skip
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise RewardFunctionError(f"reward function {spec!r}: cannot import {module_name!r} "
                                  f"({error})") from None  # fmt: skip
    fn = getattr(module, attribute, None)
    if not callable(fn):
        raise RewardFunctionError(f"reward function {spec!r}: {module_name} has no callable "
                                  f"{attribute!r}")  # fmt: skip
    return RewardFunction(target, fn, weight)


class FunctionJudge:
    """A scalar judge: the weighted sum of reward functions (one label per sample scored)."""

    def __init__(self, functions: Sequence[RewardFunction]) -> None:
        if not functions:
            raise RewardFunctionError("no reward function given")
        self.functions = list(functions)
        self.labels_used = 0

    def score(self, prompts: Sequence[Prompt], completions: Sequence[str], seed: int = 0):
        totals = [0.0] * len(completions)
        for function in self.functions:
            for i, value in enumerate(self._call(function, list(prompts), list(completions))):
                totals[i] += function.weight * value
        self.labels_used += len(completions)
        return totals

    @staticmethod
    def _call(function: RewardFunction, prompts: list[Prompt], completions: list[str]):
        try:
            values = list(function.fn(prompts, completions))
        except Exception as error:  # noqa: BLE001 - any failure of user code is reported
            raise RewardFunctionError(f"reward function {function.name} raised "
                                      f"{type(error).__name__}: {error}") from None  # fmt: skip
        if len(values) != len(completions):
            raise RewardFunctionError(f"reward function {function.name} returned {len(values)} "
                                      f"values for {len(completions)} completions")  # fmt: skip
        for i, value in enumerate(values):
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise RewardFunctionError(
                    f"reward function {function.name} returned {value!r} for sample {i} "
                    f"(prompt {str(prompts[i])[:60]!r}, completion {completions[i][:60]!r}); "
                    "a finite number is expected")  # fmt: skip
        return [float(v) for v in values]
