"""Request and response bodies (pydantic): sizes are bounded so oversized input is a 422."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    FiniteFloat,
    HttpUrl,
    field_validator,
    model_validator,
)

from prefloop.serve.db import as_utc

MAX_TEXT = 100_000
MAX_RESPONSES = 16
MAX_BATCH = 1_000
MAX_ID = 2**31 - 1  # fits every backend's integer key
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
BodyId = Annotated[int, Field(ge=1, le=MAX_ID)]
Task = Literal["pairwise", "ranking", "rating", "critique"]
Rule = Literal["random", "disagreement", "dueling_ucb"]
Name = Field(min_length=1, max_length=200)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(Strict):
    role: str = Field(min_length=1, max_length=50)
    content: str = Field(max_length=MAX_TEXT)


Prompt = str | list[Message]


Rewards = Annotated[list[FiniteFloat], Field(max_length=MAX_RESPONSES)]


def _finite(value: Any) -> Any:
    """Reject NaN and infinities anywhere in free-form JSON (they are not valid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    for child in (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    ):
        _finite(child)
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(_finite)]


class ProjectIn(Strict):
    name: str = Name
    task: Task
    guideline: str = Field("", max_length=MAX_TEXT)
    guideline_version: str = Field("1", min_length=1, max_length=100)
    redundancy: int = Field(1, ge=1, le=100, description="R: how many annotators see each item")
    rule: Rule = "random"
    warmup: int = Field(
        10, ge=0, le=1_000_000, description="labels collected uniformly before the rule applies"
    )
    aspects: list[str] = Field(default_factory=list, max_length=20)
    scale_min: int = Field(1, ge=-100, le=100)
    scale_max: int = Field(5, ge=-100, le=100)
    webhook_url: HttpUrl | None = None

    @model_validator(mode="after")
    def _check(self) -> ProjectIn:
        if self.scale_min >= self.scale_max:
            raise ValueError("scale_min must be below scale_max")
        if self.task == "rating" and not self.aspects:
            raise ValueError("a rating project needs at least one aspect")
        if len(set(self.aspects)) != len(self.aspects) or any(
            not 0 < len(a) <= 100 for a in self.aspects
        ):
            raise ValueError("aspects must be distinct names of 1..100 characters")
        return self


class ProjectPatch(Strict):
    guideline: str | None = Field(None, max_length=MAX_TEXT)
    guideline_version: str | None = Field(None, min_length=1, max_length=100)
    rule: Rule | None = None
    warmup: int | None = Field(None, ge=0, le=1_000_000)
    webhook_url: HttpUrl | None = None


class ProjectOut(BaseModel):
    id: int
    name: str
    task: Task
    guideline: str
    guideline_version: str
    redundancy: int
    rule: str
    warmup: int
    aspects: list[str]
    scale_min: int
    scale_max: int


class ProjectCreated(ProjectOut):
    admin_token: str = Field(description="shown once; store it")
    webhook_secret: str | None = Field(None, description="HMAC key for webhooks; shown once")


class ResponseIn(Strict):
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    source: str | None = Field(None, max_length=200, description="never shown to annotators")
    features: list[FiniteFloat] | None = Field(None, max_length=4096, description="for dueling_ucb")


def _response_object(value: Any) -> Any:
    """A bare string is shorthand for ``{"text": ...}``."""
    return {"text": value} if isinstance(value, str) else value


ItemResponse = Annotated[
    ResponseIn, BeforeValidator(_response_object, json_schema_input_type=ResponseIn | str)
]


class ItemIn(Strict):
    """An item to judge. Prompt and responses must be non-empty: no export could carry them."""

    external_id: str | None = Field(None, min_length=1, max_length=200)
    prompt: Prompt = Field(description="text, or a list of {role, content} messages")
    responses: list[ItemResponse] = Field(min_length=2, max_length=MAX_RESPONSES)
    rewards: list[Rewards] | None = Field(
        None, max_length=64, description="ensemble rewards [models][responses]"
    )
    metadata: Metadata = Field(default_factory=dict)

    @field_validator("prompt")
    @classmethod
    def _prompt_size(cls, prompt: Prompt) -> Prompt:
        if isinstance(prompt, list) and not 0 < len(prompt) <= 200:
            raise ValueError("a conversation prompt needs 1..200 messages")
        if isinstance(prompt, str) and not 0 < len(prompt) <= MAX_TEXT:
            raise ValueError(f"a text prompt needs 1..{MAX_TEXT} characters")
        return prompt

    @model_validator(mode="after")
    def _shapes(self) -> ItemIn:
        k = len(self.responses)
        if self.rewards is not None and any(len(r) != k for r in self.rewards):
            raise ValueError("each rewards row needs one value per response")
        dims = {len(r.features) for r in self.responses if r.features}
        if len(dims) > 1:
            raise ValueError("all responses' features need the same length")
        return self


class ItemsIn(Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_BATCH)


class ItemsCreated(BaseModel):
    ids: list[int]
    created: int = Field(description="new items; the rest already existed by external_id")


class ItemOut(BaseModel):
    id: int
    external_id: str | None
    prompt: Any
    responses: list[dict[str, Any]]
    rewards: list[list[float]] | None
    metadata: dict[str, Any]
    judgments: int


class Label(Strict):
    """An answer in the positions shown (left = 0). Which fields apply depends on the task."""

    choice: Literal["left", "right", "tie", "both_bad"] | None = None
    preference: float | None = Field(None, ge=0, le=1, description="P(left beats right)")
    ranking: list[int] | None = Field(None, max_length=MAX_RESPONSES, description="best first")
    ratings: dict[str, list[int]] | None = Field(None, description="aspect -> score per position")
    target: int | None = Field(None, ge=0, lt=MAX_RESPONSES, description="critiqued position")
    critique: str | None = Field(None, max_length=MAX_TEXT)
    revision: str | None = Field(None, max_length=MAX_TEXT)
    comment: str | None = Field(None, max_length=10_000)


class ShownResponse(BaseModel):
    position: int
    text: str


class AssignmentOut(BaseModel):
    """What an annotator sees: no sources, no other answers, responses in a shuffled order."""

    assignment_id: int
    item_id: int
    project_id: int
    task: Task
    prompt: Any
    responses: list[ShownResponse]
    aspects: list[str]
    scale_min: int
    scale_max: int
    guideline: str
    draft: Label | None = None


class JudgmentOut(BaseModel):
    id: int
    item_id: int
    judge_id: int
    judge_kind: str
    task: str
    pair: list[int] | None
    preference: float | None
    label: dict[str, Any]
    raw_label: dict[str, Any]
    display_order: list[int] | None
    guideline_version: str
    created_at: datetime
    duplicate: bool = False


class JudgeIn(Strict):
    name: str = Name
    model: str = Field(min_length=1, max_length=200)
    prompt_version: str = Field(min_length=1, max_length=200)


class AIJudgmentIn(Strict):
    item_id: BodyId
    judge: JudgeIn
    order: list[int] | None = Field(
        None, max_length=MAX_RESPONSES, description="response indices as the judge saw them"
    )
    label: Label


class AnnotatorIn(Strict):
    name: str = Name


class AnnotatorOut(BaseModel):
    id: int
    name: str
    deleted: bool


class AnnotatorCreated(AnnotatorOut):
    token: str = Field(description="shown once; store it")


class MemberIn(Strict):
    annotator_id: BodyId


class Progress(BaseModel):
    submitted: int
    skipped: int
    open: int
    available: int = Field(description="items this annotator could still be given")


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    action: str
    project_id: int | None
    target: str
    detail: dict[str, Any]

    @field_validator("at")
    @classmethod
    def _utc(cls, at: datetime) -> datetime:
        return as_utc(at)
