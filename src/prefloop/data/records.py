"""Typed feedback records: the one vocabulary every prefloop stage speaks.

A prompt is either plain text or a conversation (a list of ``{"role", "content"}`` messages,
TRL's conversational form). Responses are plain text: the assistant turn's content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]
Prompt = str | list[Message]


@dataclass(frozen=True)
class Comparison:
    """One pairwise judgment: ``chosen`` was preferred to ``rejected`` for ``prompt``.

    ``strength`` is the preference probability in [0, 1] (1 = certainly chosen; 0.5 = tie) when
    the judge gave one; ``margin`` is a non-negative score gap for margin-aware objectives.
    """

    prompt: Prompt
    chosen: str
    rejected: str
    strength: float | None = None
    margin: float | None = None
    annotator: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rating:
    """Several responses to one prompt with a score each (a ranking is scores by rank).

    ``aspect_scores`` maps an aspect name to one score per response.
    """

    prompt: Prompt
    responses: list[str]
    scores: list[float]
    aspect_scores: dict[str, list[float]] | None = None
    annotator: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Critique:
    """A free-text critique of a response, with an optional corrected response."""

    prompt: Prompt
    response: str
    text: str
    revision: str | None = None
    annotator: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Unpaired:
    """A single response labelled desirable or not (KTO-style feedback)."""

    prompt: Prompt
    completion: str
    label: bool
    annotator: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


FeedbackRecord = Comparison | Rating | Critique | Unpaired


def prompt_text(prompt: Prompt) -> str:
    """Plain-text view of a prompt: conversations are joined as ``role: content`` lines."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
