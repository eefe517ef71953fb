"""Reading results: judgments after a cursor, training exports, agreement, the audit log."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from prefloop.serve.agreement_units import project_agreement
from prefloop.serve.audit import audit
from prefloop.serve.auth import (
    Principal,
    get_session,
    principal,
    require_server_admin,
)
from prefloop.serve.common import (
    admin_project,
    judgment_out,
)
from prefloop.serve.db import AuditEntry, Judge, Judgment
from prefloop.serve.export import ndjson, project_records, rows
from prefloop.serve.schemas import (
    MAX_ID,
    AuditOut,
    Id,
    JudgmentOut,
)

router = APIRouter()
Page = Query(100, ge=1, le=1000)
After = Query(0, ge=0, le=MAX_ID, description="return rows with a larger id (cursor)")


@router.get(
    "/projects/{project_id}/judgments", response_model=list[JudgmentOut], tags=["judgments"]
)
def list_judgments(
    project_id: Id,
    after: int = After,
    limit: int = Page,
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> list[JudgmentOut]:
    """Submitted judgments with id > ``after``: a loop polls this to read labels as they come."""
    project = admin_project(session, project_id, who)
    found = session.execute(
        select(Judgment, Judge.kind)
        .join(Judge, Judge.id == Judgment.judge_id)
        .where(Judgment.project_id == project.id, Judgment.id > after)
        .order_by(Judgment.id)
        .limit(limit)
    ).all()
    return [judgment_out(j, kind) for j, kind in found]


@router.get(
    "/projects/{project_id}/export",
    tags=["judgments"],
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def export(
    project_id: Id,
    form: Literal["prefloop", "trl-explicit", "trl-implicit", "trl-kto"] = "prefloop",
    pairs: bool = Query(False, description="expand rankings and ratings into all pairs"),
    judges: Literal["all", "human", "ai"] = "all",
    include_ties: bool = Query(False, description="keep ties (strength 0.5) in TRL pairs"),
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> StreamingResponse:
    """JSON lines of training columns with provenance columns beside them."""
    project = admin_project(session, project_id, who)
    records = project_records(session, project, judges=judges, pairs=pairs)
    audit(session, who, "export", project.id, f"project:{project.id}", form=form)
    session.commit()
    return StreamingResponse(
        ndjson(rows(records, form, include_ties)), media_type="application/x-ndjson"
    )


@router.get("/projects/{project_id}/agreement", tags=["judgments"])
def agreement(
    project_id: Id,
    judges: Literal["all", "human", "ai"] = "human",
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> dict:
    """Krippendorff's alpha, Fleiss' kappa and pairwise Cohen's kappa for the project."""
    project = admin_project(session, project_id, who)
    return project_agreement(session, project, judges)


def _audit_page(session: Session, after: int, limit: int, *where) -> list[AuditOut]:
    entries = session.scalars(
        select(AuditEntry).where(AuditEntry.id > after, *where).order_by(AuditEntry.id).limit(limit)
    )
    return [AuditOut.model_validate(e) for e in entries]


@router.get("/projects/{project_id}/audit", response_model=list[AuditOut], tags=["audit"])
def project_audit(
    project_id: Id,
    after: int = After,
    limit: int = Page,
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> list[AuditOut]:
    project = admin_project(session, project_id, who)
    return _audit_page(session, after, limit, AuditEntry.project_id == project.id)


@router.get("/audit", response_model=list[AuditOut], tags=["audit"])
def server_audit(
    after: int = After,
    limit: int = Page,
    _who: Principal = Depends(require_server_admin),
    session: Session = Depends(get_session),
) -> list[AuditOut]:
    """The whole audit log (server admin)."""
    return _audit_page(session, after, limit)
