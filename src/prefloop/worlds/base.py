"""The contract every ground-truth world fulfils."""

from __future__ import annotations

import random
from typing import Protocol


class World(Protocol):
    """A synthetic task whose true quality of any response is known exactly.

    ``gold_aspects`` returns each named aspect's score; ``gold_reward`` combines them into the one
    number every method is judged by.
    """

    name: str
    aspects: tuple[str, ...]

    def prompts(self, n: int, seed: int, split: str = "train") -> list[str]: ...

    def corpus(self, n: int, seed: int) -> list[tuple[str, str]]: ...

    def gold_aspects(self, prompt: str, response: str) -> dict[str, float]: ...

    def gold_reward(self, prompt: str, response: str) -> float: ...


class PromptPoolWorld:
    """A world whose prompts are drawn from a fixed pool per split and whose SFT corpus answers
    train-pool prompts with :meth:`respond`; subclasses give ``prompt_pool`` and ``respond``."""

    def prompt_pool(self, split: str = "train") -> list[str]:
        raise NotImplementedError

    def respond(self, prompt: str, rng: random.Random) -> str:
        """One corpus response to ``prompt``."""
        raise NotImplementedError

    def prompts(self, n: int, seed: int, split: str = "train") -> list[str]:
        """``n`` prompts drawn with replacement from the split's pool."""
        pool = self.prompt_pool(split)
        rng = random.Random(seed)
        return [rng.choice(pool) for _ in range(n)]

    def corpus(self, n: int, seed: int) -> list[tuple[str, str]]:
        """``n`` (prompt, response) pairs for supervised fine-tuning, from the train prompts."""
        rng = random.Random(seed)
        pool = self.prompt_pool("train")
        pairs = []
        for _ in range(n):
            prompt = rng.choice(pool)
            pairs.append((prompt, self.respond(prompt, rng)))
        return pairs
