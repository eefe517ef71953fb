"""Items to judge and AI judgments, posted by a project admin (e.g. a running training loop)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, HTTPException
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prefloop.serve.audit import audit
from prefloop.serve.auth import (
    Principal,
    get_session,
    principal,
)
from prefloop.serve.common import (
    admin_project,
    announce,
    judgment_out,
    stored_judgment,
)
from prefloop.serve.db import Item, Judge, Judgment, Project
from prefloop.serve.items import insert_items
from prefloop.serve.labels import canonicalize
from prefloop.serve.schemas import (
    AIJudgmentIn,
    Id,
    ItemOut,
    ItemsCreated,
    ItemsIn,
    JudgmentOut,
    Rewards,
)

router = APIRouter()


@router.post(
    "/projects/{project_id}/items", response_model=ItemsCreated, status_code=201, tags=["items"]
)
def add_items(
    project_id: Id,
    body: ItemsIn,
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> ItemsCreated:
    """Add items (a training loop may push while collection runs). Items whose ``external_id``
    already exists in the project are not added again; their ids are returned."""
    project = admin_project(session, project_id, who)
    ids, created = insert_items(session, project, body.items)
    audit(session, who, "add_items", project.id, f"project:{project.id}", count=created)
    try:
        session.commit()
    except IntegrityError:
        raise HTTPException(409, "another request added the same external_id; retry") from None
    return ItemsCreated(ids=ids, created=created)


def _item(session: Session, project: Project, item_id: int) -> Item:
    item = session.get(Item, item_id)
    if item is None or item.project_id != project.id:
        raise HTTPException(404, f"item {item_id} not found in project {project.id}")
    return item


def _item_out(session: Session, item: Item) -> ItemOut:
    count = len(session.scalars(select(Judgment.id).where(Judgment.item_id == item.id)).all())
    return ItemOut(
        id=item.id,
        external_id=item.external_id,
        prompt=item.prompt,
        responses=item.responses,
        rewards=item.rewards,
        metadata=item.item_metadata,
        judgments=count,
    )


@router.get("/projects/{project_id}/items/{item_id}", response_model=ItemOut, tags=["items"])
def read_item(
    project_id: Id,
    item_id: Id,
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> ItemOut:
    """An item with sources and rewards (admins only: annotators never see these)."""
    project = admin_project(session, project_id, who)
    return _item_out(session, _item(session, project, item_id))


@router.put(
    "/projects/{project_id}/items/{item_id}/rewards", response_model=ItemOut, tags=["items"]
)
def set_rewards(
    project_id: Id,
    item_id: Id,
    rewards: Annotated[list[Rewards], Body(max_length=64)],
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> ItemOut:
    """Replace the ensemble's rewards [models][responses] used by the disagreement rule."""
    project = admin_project(session, project_id, who)
    item = _item(session, project, item_id)
    if any(len(r) != len(item.responses) for r in rewards):
        raise HTTPException(422, "rewards need one value per response in every row")
    item.rewards = rewards
    audit(session, who, "set_rewards", project.id, f"item:{item.id}")
    session.commit()
    return _item_out(session, item)


def _ai_judge(session: Session, body: AIJudgmentIn) -> Judge:
    spec = {"kind": "ai", **body.judge.model_dump()}
    judge = session.scalar(select(Judge).filter_by(**spec))
    if judge is None:
        judge = Judge(**spec)
        session.add(judge)
        session.flush()
    return judge


@router.post("/projects/{project_id}/ai-judgments", response_model=JudgmentOut, tags=["judgments"])
def add_ai_judgment(
    project_id: Id,
    body: AIJudgmentIn,
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> JudgmentOut:
    """Record an AI judge's answer (one per item and judge = name, model, prompt version).

    ``order`` is the response indices as the judge saw them (pairwise: the two compared),
    default all responses in stored order (a rating must cover all of them); the label uses
    those positions. AI judgments do not take annotator slots (R).
    """
    project = admin_project(session, project_id, who)
    item = _item(session, project, body.item_id)
    order = body.order or list(range(2 if project.task == "pairwise" else len(item.responses)))
    if project.task == "rating" and sorted(order) != list(range(len(item.responses))):
        raise HTTPException(422, "a rating judgment must score every response: 'order' lists all")
    canonical = canonicalize(project, body.label, order, len(item.responses))
    raw = body.label.model_dump(exclude_none=True)
    judge = _ai_judge(session, body)
    if (stored := stored_judgment(session, item.id, judge.id, raw)) is not None:
        return stored
    judgment = Judgment(
        project_id=project.id,
        item_id=item.id,
        judge_id=judge.id,
        task=project.task,
        pair=canonical.pair,
        preference=canonical.preference,
        label=canonical.label,
        raw_label=raw,
        display_order=order,
        guideline_version=project.guideline_version,
    )
    session.add(judgment)
    audit(session, who, "ai_judgment", project.id, f"item:{item.id}", judge=judge.id)
    session.flush()
    out = judgment_out(judgment, "ai")
    session.commit()
    announce(session, project, out)
    return out
