"""Annotator endpoints: get the next item, save drafts, submit, skip, discard, see progress.

Annotators only ever see their own assignments: the prompt and the responses in the order
recorded for them, never sources, rewards or anybody else's answers.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prefloop.serve.assign import next_assignment, release, settle
from prefloop.serve.audit import audit
from prefloop.serve.auth import Principal, get_session, principal, require_member
from prefloop.serve.common import announce, get_project, judgment_out, stored_judgment
from prefloop.serve.db import Assignment, Draft, Item, Judgment, Project, utcnow
from prefloop.serve.labels import canonicalize
from prefloop.serve.schemas import AssignmentOut, Id, JudgmentOut, Label, Progress, ShownResponse

router = APIRouter(tags=["annotate"])
_rng = np.random.default_rng()


def _view(session: Session, project: Project, assignment: Assignment) -> AssignmentOut:
    item = session.get(Item, assignment.item_id)
    draft = session.get(Draft, assignment.id)
    return AssignmentOut(
        assignment_id=assignment.id,
        item_id=item.id,
        project_id=project.id,
        task=project.task,
        prompt=item.prompt,
        responses=[
            ShownResponse(position=p, text=item.responses[i]["text"])
            for p, i in enumerate(assignment.order)
        ],
        aspects=project.aspects,
        scale_min=project.scale_min,
        scale_max=project.scale_max,
        guideline=project.guideline,
        draft=Label.model_validate(draft.label) if draft else None,
    )


def _own(session: Session, assignment_id: int, who: Principal) -> tuple[Assignment, Project]:
    """The caller's assignment (404 for anybody else's) and its project, membership checked."""
    assignment = session.get(Assignment, assignment_id)
    if assignment is None or assignment.judge_id != who.judge_id:
        raise HTTPException(404, f"assignment {assignment_id} not found")
    project = get_project(session, assignment.project_id)
    require_member(project.id, who, session)
    return assignment, project


@router.post(
    "/projects/{project_id}/next",
    response_model=AssignmentOut,
    responses={204: {"description": "nothing left for this annotator"}},
)
def next_item(
    project_id: Id, who: Principal = Depends(principal), session: Session = Depends(get_session)
):
    """The annotator's open item, or a new one picked by the project's selection rule."""
    for _attempt in range(5):
        project = get_project(session, project_id)
        judge = require_member(project_id, who, session)
        try:
            assignment = next_assignment(session, project, judge.id, _rng)
            if assignment is None:
                session.commit()
                return Response(status_code=204)
            view = _view(session, project, assignment)
            session.commit()
            return view
        except IntegrityError:  # the same annotator raced itself to one item; pick again
            session.rollback()
    raise HTTPException(409, "could not assign an item, try again")


@router.put("/assignments/{assignment_id}/draft", status_code=204)
def save_draft(
    assignment_id: Id,
    label: Label,
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> Response:
    """Keep a partial answer apart from submissions; it comes back with the assignment."""
    assignment, _project = _own(session, assignment_id, who)
    if assignment.status != "assigned":
        raise HTTPException(409, f"assignment is {assignment.status}")
    draft = session.get(Draft, assignment.id) or Draft(assignment_id=assignment.id, label={})
    draft.label = label.model_dump(exclude_none=True)
    draft.updated_at = utcnow()
    session.add(draft)
    session.commit()
    return Response(status_code=204)


def _close(assignment_id: int, who: Principal, session: Session, status: str) -> Response:
    assignment, project = _own(session, assignment_id, who)
    if not release(session, assignment.id, assignment.item_id, status):
        raise HTTPException(409, f"assignment is {assignment.status}")
    audit(session, who, status, project.id, f"item:{assignment.item_id}")
    session.commit()
    return Response(status_code=204)


@router.post("/assignments/{assignment_id}/skip", status_code=204)
def skip(
    assignment_id: Id, who: Principal = Depends(principal), session: Session = Depends(get_session)
) -> Response:
    """Decline the item: recorded as a status, never as a label; the slot goes to someone else."""
    return _close(assignment_id, who, session, "skipped")


@router.post("/assignments/{assignment_id}/discard", status_code=204)
def discard(
    assignment_id: Id, who: Principal = Depends(principal), session: Session = Depends(get_session)
) -> Response:
    """Abandon the item; any draft stays stored (apart from submissions)."""
    return _close(assignment_id, who, session, "discarded")


@router.post("/assignments/{assignment_id}/submit", response_model=JudgmentOut)
def submit(
    assignment_id: Id,
    label: Label,
    request: Request,
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> JudgmentOut:
    """Store the one judgment of this (item, annotator). Re-sending the same answer returns the
    stored judgment (``duplicate: true``); a different answer is a 409."""
    assignment, project = _own(session, assignment_id, who)
    item = session.get(Item, assignment.item_id)
    canonical = canonicalize(project, label, assignment.order, len(item.responses))
    raw = label.model_dump(exclude_none=True)
    if (stored := stored_judgment(session, item.id, who.judge_id, raw)) is not None:
        return stored
    if not settle(session, assignment, project.redundancy):
        session.rollback()
        status = session.scalar(select(Assignment.status).where(Assignment.id == assignment_id))
        raise HTTPException(409, f"assignment is {status}")
    judgment = Judgment(
        project_id=project.id,
        item_id=item.id,
        judge_id=who.judge_id,
        assignment_id=assignment.id,
        task=project.task,
        pair=canonical.pair,
        preference=canonical.preference,
        label=canonical.label,
        raw_label=raw,
        display_order=assignment.order,
        guideline_version=project.guideline_version,
    )
    session.add(judgment)
    audit(session, who, "submit", project.id, f"item:{item.id}")
    try:
        session.flush()
    except IntegrityError:  # a concurrent copy of this submission won
        session.rollback()
        if (stored := stored_judgment(session, item.id, who.judge_id, raw)) is not None:
            return stored
        raise
    out = judgment_out(judgment, "human")
    session.commit()
    announce(session, project, out)
    return out


@router.get("/projects/{project_id}/progress", response_model=Progress)
def progress(
    project_id: Id, who: Principal = Depends(principal), session: Session = Depends(get_session)
) -> Progress:
    """How far the calling annotator is in this project."""
    project = get_project(session, project_id)
    require_member(project_id, who, session)
    counts = dict(
        session.execute(
            select(Assignment.status, func.count())
            .where(Assignment.project_id == project_id, Assignment.judge_id == who.judge_id)
            .group_by(Assignment.status)
        ).all()
    )
    seen = select(Assignment.item_id).where(Assignment.judge_id == who.judge_id)
    available = session.scalar(
        select(func.count())
        .select_from(Item)
        .where(
            Item.project_id == project_id,
            Item.claimed < project.redundancy,
            Item.id.not_in(seen),
        )
    )
    session.rollback()
    return Progress(
        submitted=counts.get("submitted", 0),
        skipped=counts.get("skipped", 0) + counts.get("discarded", 0),
        open=counts.get("assigned", 0),
        available=available or 0,
    )
