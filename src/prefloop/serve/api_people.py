"""Annotators (server admin) and project membership (project admin).

Removing an annotator is a soft delete: tokens are revoked, judgments stay.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prefloop.serve.audit import audit
from prefloop.serve.auth import (
    ANNOTATOR,
    Principal,
    get_session,
    issue_token,
    principal,
    require_server_admin,
    revoke_judge_tokens,
)
from prefloop.serve.common import (
    admin_project,
)
from prefloop.serve.db import Judge, Member, utcnow
from prefloop.serve.schemas import (
    AnnotatorCreated,
    AnnotatorIn,
    AnnotatorOut,
    Id,
    MemberIn,
)

router = APIRouter()


@router.post("/annotators", response_model=AnnotatorCreated, status_code=201, tags=["annotators"])
def create_annotator(
    body: AnnotatorIn,
    who: Principal = Depends(require_server_admin),
    session: Session = Depends(get_session),
) -> AnnotatorCreated:
    """Create an annotator; the token is returned this once only."""
    judge = Judge(kind="human", name=body.name, model="", prompt_version="")
    session.add(judge)
    try:
        session.flush()
    except IntegrityError:
        raise HTTPException(409, f"an annotator named {body.name!r} exists") from None
    token = issue_token(session, ANNOTATOR, judge_id=judge.id)
    audit(session, who, "create_annotator", None, f"annotator:{judge.id}", name=body.name)
    session.commit()
    return AnnotatorCreated(id=judge.id, name=judge.name, deleted=False, token=token)


@router.get("/annotators", response_model=list[AnnotatorOut], tags=["annotators"])
def list_annotators(
    _who: Principal = Depends(require_server_admin), session: Session = Depends(get_session)
) -> list[AnnotatorOut]:
    judges = session.scalars(select(Judge).where(Judge.kind == "human").order_by(Judge.id))
    return [AnnotatorOut(id=j.id, name=j.name, deleted=j.deleted_at is not None) for j in judges]


def _annotator(session: Session, annotator_id: int) -> Judge:
    judge = session.get(Judge, annotator_id)
    if judge is None or judge.kind != "human":
        raise HTTPException(404, f"annotator {annotator_id} not found")
    return judge


@router.delete("/annotators/{annotator_id}", status_code=204, tags=["annotators"])
def remove_annotator(
    annotator_id: Id,
    who: Principal = Depends(require_server_admin),
    session: Session = Depends(get_session),
) -> Response:
    """Soft delete: tokens are revoked, judgments stay and keep being exported."""
    judge = _annotator(session, annotator_id)
    if judge.deleted_at is None:
        judge.deleted_at = utcnow()
        revoke_judge_tokens(session, judge.id)
        audit(session, who, "remove_annotator", None, f"annotator:{judge.id}")
    session.commit()
    return Response(status_code=204)


@router.post(
    "/annotators/{annotator_id}/token", response_model=AnnotatorCreated, tags=["annotators"]
)
def rotate_token(
    annotator_id: Id,
    who: Principal = Depends(require_server_admin),
    session: Session = Depends(get_session),
) -> AnnotatorCreated:
    """Revoke the annotator's tokens and issue a new one (shown once)."""
    judge = _annotator(session, annotator_id)
    if judge.deleted_at is not None:
        raise HTTPException(409, "annotator was removed")
    revoke_judge_tokens(session, judge.id)
    token = issue_token(session, ANNOTATOR, judge_id=judge.id)
    audit(session, who, "rotate_token", None, f"annotator:{judge.id}")
    session.commit()
    return AnnotatorCreated(id=judge.id, name=judge.name, deleted=False, token=token)


@router.post("/projects/{project_id}/members", status_code=204, tags=["annotators"])
def add_member(
    project_id: Id,
    body: MemberIn,
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> Response:
    """Assign an annotator to the project (idempotent)."""
    project = admin_project(session, project_id, who)
    judge = _annotator(session, body.annotator_id)
    if judge.deleted_at is not None:
        raise HTTPException(409, "annotator was removed")
    if session.get(Member, (project.id, judge.id)) is None:
        session.add(Member(project_id=project.id, judge_id=judge.id))
        audit(session, who, "add_member", project.id, f"annotator:{judge.id}")
    session.commit()
    return Response(status_code=204)


@router.delete(
    "/projects/{project_id}/members/{annotator_id}", status_code=204, tags=["annotators"]
)
def remove_member(
    project_id: Id,
    annotator_id: Id,
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> Response:
    """Unassign an annotator; their judgments in the project stay."""
    project = admin_project(session, project_id, who)
    member = session.get(Member, (project.id, annotator_id))
    if member is None:
        raise HTTPException(404, f"annotator {annotator_id} is not a member")
    session.delete(member)
    audit(session, who, "remove_member", project.id, f"annotator:{annotator_id}")
    session.commit()
    return Response(status_code=204)


@router.get(
    "/projects/{project_id}/members", response_model=list[AnnotatorOut], tags=["annotators"]
)
def list_members(
    project_id: Id, who: Principal = Depends(principal), session: Session = Depends(get_session)
) -> list[AnnotatorOut]:
    project = admin_project(session, project_id, who)
    judges = session.scalars(
        select(Judge)
        .join(Member, Member.judge_id == Judge.id)
        .where(Member.project_id == project.id)
    )
    return [AnnotatorOut(id=j.id, name=j.name, deleted=j.deleted_at is not None) for j in judges]
