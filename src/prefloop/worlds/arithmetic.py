"""Column addition: a verifiable-reward world whose answers an exact checker marks right or wrong.

A prompt is an addition of two numbers, one digit per word::

    4 7 2 + 3 9 =

A worked response adds the columns from the right, carry included, then states the answer::

    2 + 9 + 0 = 1 1 , 7 + 3 + 1 = 1 1 , 4 + 0 + 1 = 5 , answer 5 1 1

A direct response states the answer only (``answer 5 1 1``). The checker reads the digits after
the one ``answer`` word; a response with no ``answer``, more than one, nothing but digits after
it, or a leading zero has no parsable answer and is wrong. The steps are not checked: only the
final answer earns reward.

Gold aspects: ``correct`` (1 if the parsed answer is the sum, else 0) and ``format`` (1 if an
answer can be parsed at all). The gold reward is ``correct`` alone, 1.0 or 0.0, so pass@k can be
read off it; ``format`` is reported, never rewarded. :func:`correctness_reward` and
:func:`format_reward` are the same checks as TRL-style reward functions
(``prefloop.worlds.arithmetic:correctness_reward``).

The SFT corpus mixes worked and direct responses, so a tiny model trained on it sometimes works
the sum out (long, usually right) and sometimes guesses the answer at once (short, often wrong):
its held-out pass@1 is partial, pass@k for larger k is well above it, and a policy-gradient
method that rewards correct answers has headroom and a length to change (see
``docs/verifiable-world.md`` for the measured numbers and :meth:`ArithmeticWorld.sft_setup`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from prefloop.worlds.base import PromptPoolWorld

if TYPE_CHECKING:
    from prefloop.lab.common import BasePolicySetup

ANSWER = "answer"
SPLITS = ("train", "test", "all")


def spell(number: int) -> str:
    """``472`` → ``"4 7 2"``: one word per digit, as the word-level tokenizer needs."""
    return " ".join(str(number))


def parse_prompt(prompt: str) -> tuple[int, int]:
    """The two operands of a prompt ``"A + B ="`` (digits space-separated)."""
    words = prompt.split()
    try:
        plus = words.index("+")
        if words[-1] != "=" or plus == 0 or plus == len(words) - 2:
            raise ValueError
        return int("".join(words[:plus])), int("".join(words[plus + 1 : -1]))
    except ValueError as error:
        raise ValueError(f"not a prompt of the arithmetic world: {prompt!r}") from error


def parse_answer(response: str) -> int | None:
    """The number after the response's one ``answer`` word, or None when there is none.

    Every word after ``answer`` must be a single digit and the number must be written without a
    leading zero; anything else (no ``answer``, two of them, other words, nothing) is unparsable.
    """
    words = response.split()
    if words.count(ANSWER) != 1:
        return None
    digits = words[words.index(ANSWER) + 1 :]
    if not digits or not all(len(d) == 1 and d.isdigit() for d in digits):
        return None
    if digits[0] == "0" and len(digits) > 1:
        return None
    return int("".join(digits))


def is_correct(prompt: str, response: str) -> bool:
    a, b = parse_prompt(prompt)
    return parse_answer(response) == a + b


def columns(a: int, b: int, drop_carry: int | None = None) -> list[tuple[int, int, int]]:
    """(digit of a, digit of b, carry in) per column from the right; short operands pad with 0.

    ``drop_carry`` (a column index) forgets the carry into that column, as a careless teacher
    would.
    """
    da, db = str(a)[::-1], str(b)[::-1]
    rows, carry = [], 0
    for column in range(max(len(da), len(db))):
        x = int(da[column]) if column < len(da) else 0
        y = int(db[column]) if column < len(db) else 0
        carry = 0 if column == drop_carry else carry
        rows.append((x, y, carry))
        carry = (x + y + carry) // 10
    return rows


def worked_solution(a: int, b: int, drop_carry: int | None = None) -> str:
    """Column-by-column addition from the right (see :func:`columns`), then the answer."""
    rows = columns(a, b, drop_carry)
    steps = [f"{x} + {y} + {c} = {spell(x + y + c)}" for x, y, c in rows]
    x, y, c = rows[-1]
    digits = [(x + y + c) // 10] if x + y + c >= 10 else []
    digits += [sum(row) % 10 for row in reversed(rows)]
    return " , ".join(steps) + f" , {ANSWER} {' '.join(map(str, digits))}"


def correctness_reward(prompts: list[str], completions: list[str]) -> list[float]:
    """1.0 for each completion whose final answer is the prompt's sum, else 0.0 (TRL-style)."""
    _check_lengths(prompts, completions)
    return [float(is_correct(p, c)) for p, c in zip(prompts, completions)]


def format_reward(prompts: list[str], completions: list[str]) -> list[float]:
    """1.0 for each completion with a parsable answer, right or wrong, else 0.0 (TRL-style)."""
    _check_lengths(prompts, completions)
    return [float(parse_answer(c) is not None) for c in completions]


def _check_lengths(prompts: list[str], completions: list[str]) -> None:
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")


@dataclass(frozen=True)
class ArithmeticWorld(PromptPoolWorld):
    """Column addition of two numbers; see the module docstring for the task and the checker.

    The task pool is ``pool_size`` distinct operand pairs drawn once from ``pool_seed``, each
    operand with ``min_digits``..``max_digits`` digits; every ``test_every``-th task is held out
    as the test split, so train and test tasks never share an operand pair. The corpus answers
    ``worked_share`` of its prompts with a worked solution and the rest directly; a worked
    solution forgets one carry with probability ``teacher_error`` (a noisy teacher).
    """

    min_digits: int = 2
    max_digits: int = 3
    pool_size: int = 4000
    test_every: int = 5
    pool_seed: int = 0
    worked_share: float = 0.5
    teacher_error: float = 0.0
    name: str = "arithmetic"
    aspects: tuple[str, ...] = ("correct", "format")

    # ---- tasks ---------------------------------------------------------------------------
    @staticmethod
    def prompt_for(a: int, b: int) -> str:
        return f"{spell(a)} + {spell(b)} ="

    @cached_property
    def tasks(self) -> tuple[tuple[int, int], ...]:
        """The pool of distinct operand pairs, in draw order."""
        rng = random.Random(self.pool_seed)
        low, high = 10 ** (self.min_digits - 1), 10**self.max_digits - 1
        if self.pool_size > (high - low + 1) ** 2:
            raise ValueError(f"pool_size {self.pool_size} exceeds the distinct operand pairs")
        seen: dict[tuple[int, int], None] = {}
        while len(seen) < self.pool_size:
            seen.setdefault((self._operand(rng, low), self._operand(rng, low)), None)
        return tuple(seen)

    def _operand(self, rng: random.Random, low: int) -> int:
        digits = rng.randint(self.min_digits, self.max_digits)
        return rng.randint(max(low, 10 ** (digits - 1)), 10**digits - 1)

    def prompt_pool(self, split: str = "train") -> list[str]:
        if split not in SPLITS:
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        return [
            self.prompt_for(a, b)
            for i, (a, b) in enumerate(self.tasks)
            if split == "all" or (i % self.test_every == 0) == (split == "test")
        ]

    # ---- corpus --------------------------------------------------------------------------
    def respond(self, prompt: str, rng: random.Random) -> str:
        """One corpus response: worked or direct, its carry sometimes forgotten when worked."""
        a, b = parse_prompt(prompt)
        if rng.random() >= self.worked_share:
            return f"{ANSWER} {spell(a + b)}"
        carried = [i for i, (_, _, carry) in enumerate(columns(a, b)) if carry]
        careless = carried and rng.random() < self.teacher_error
        return worked_solution(a, b, rng.choice(carried) if careless else None)

    # ---- gold reward ---------------------------------------------------------------------
    def gold_aspects(self, prompt: str, response: str) -> dict[str, float]:
        return {
            "correct": float(is_correct(prompt, response)),
            "format": float(parse_answer(response) is not None),
        }

    def gold_reward(self, prompt: str, response: str) -> float:
        """1.0 if the final answer is right, else 0.0 (``format`` is not rewarded)."""
        return float(is_correct(prompt, response))

    # ---- the SFT start -------------------------------------------------------------------
    @staticmethod
    def sft_setup(fast: bool = False) -> BasePolicySetup:
        """Settings for ``prepare_sft_policy`` that leave the tiny model at partial accuracy.

        A 4-head, 2-layer Llama of width 128 (~0.4 M parameters) on 4000 corpus examples for 12
        epochs (``fast``: 8); the held-out pass@k they reach is in ``docs/verifiable-world.md``.
        """
        from prefloop.lab.common import BasePolicySetup  # the lab builds on the worlds
        from prefloop.models.factory import TinyModelSpec
        from prefloop.train.engine import TrainConfig

        return BasePolicySetup(
            corpus_size=4000,
            model=TinyModelSpec(hidden_size=128, intermediate_size=384),
            sft=TrainConfig(learning_rate=3e-3, batch_size=64, epochs=8 if fast else 12),
        )
