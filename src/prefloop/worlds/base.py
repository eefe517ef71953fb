"""The contract every ground-truth world fulfils."""

from __future__ import annotations

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
