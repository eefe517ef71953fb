"""Admin endpoints: projects, annotators, membership, items, AI judgments, results, audit.

A server-admin token (printed once by ``--init``) manages projects and annotators; each
project's admin token (shown once at creation) manages that project only, which is what a
training loop uses to post items and read judgments back.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prefloop.serve import webhooks
from prefloop.serve.agreement_units import project_agreement
from prefloop.serve.audit import audit
from prefloop.serve.auth import (
    ANNOTATOR,
    PROJECT_ADMIN,
    Principal,
    get_session,
    issue_token,
    principal,
    require_project_admin,
    require_server_admin,
    revoke_judge_tokens,
)
from prefloop.serve.common import get_project, judgment_out, project_out, stored_judgment
from prefloop.serve.db import AuditEntry, Item, Judge, Judgment, Member, Project, utcnow
from prefloop.serve.export import ndjson, project_records, rows
from prefloop.serve.items import insert_items
from prefloop.serve.labels import canonicalize
from prefloop.serve.schemas import (
    MAX_ID,
    AIJudgmentIn,
    AnnotatorCreated,
    AnnotatorIn,
    AnnotatorOut,
    AuditOut,
    Id,
    ItemOut,
    ItemsCreated,
    ItemsIn,
    JudgmentOut,
    MemberIn,
    ProjectCreated,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
    Rewards,
)

router = APIRouter()
Page = Query(100, ge=1, le=1000)
After = Query(0, ge=0, le=MAX_ID, description="return rows with a larger id (cursor)")


def _admin_project(session: Session, project_id: int, who: Principal) -> Project:
    project = get_project(session, project_id)
    require_project_admin(project_id, who)
    return project


@router.post("/projects", response_model=ProjectCreated, status_code=201, tags=["projects"])
def create_project(
    body: ProjectIn,
    who: Principal = Depends(require_server_admin),
    session: Session = Depends(get_session),
) -> ProjectCreated:
    """Create a project; its admin token and webhook secret are returned this once only."""
    values = body.model_dump()
    values["webhook_url"] = str(body.webhook_url) if body.webhook_url else None
    project = Project(**values, webhook_secret=webhooks.new_secret())
    session.add(project)
    session.flush()
    token = issue_token(session, PROJECT_ADMIN, project_id=project.id)
    audit(session, who, "create_project", project.id, f"project:{project.id}", name=project.name)
    session.commit()
    return ProjectCreated(
        **project_out(project).model_dump(),
        admin_token=token,
        webhook_secret=project.webhook_secret,
    )


@router.get("/projects", response_model=list[ProjectOut], tags=["projects"])
def list_projects(
    who: Principal = Depends(principal), session: Session = Depends(get_session)
) -> list[ProjectOut]:
    """The projects the caller may see: all (server admin), its own, or those assigned."""
    query = select(Project).order_by(Project.id)
    if who.role == PROJECT_ADMIN:
        query = query.where(Project.id == who.project_id)
    elif who.role == ANNOTATOR:
        query = query.join(Member, Member.project_id == Project.id).where(
            Member.judge_id == who.judge_id
        )
    return [project_out(p) for p in session.scalars(query)]


@router.get("/projects/{project_id}", response_model=ProjectOut, tags=["projects"])
def read_project(
    project_id: Id, who: Principal = Depends(principal), session: Session = Depends(get_session)
) -> ProjectOut:
    project = get_project(session, project_id)
    if not who.can_admin(project_id) and session.get(Member, (project_id, who.judge_id)) is None:
        raise HTTPException(403, "not assigned to this project")
    return project_out(project)


@router.patch("/projects/{project_id}", response_model=ProjectOut, tags=["projects"])
def update_project(
    project_id: Id,
    body: ProjectPatch,
    who: Principal = Depends(principal),
    session: Session = Depends(get_session),
) -> ProjectOut:
    """Change guideline (and its version), selection rule, warm-up or webhook URL."""
    project = _admin_project(session, project_id, who)
    changes = body.model_dump(exclude_unset=True)
    if "webhook_url" in changes and changes["webhook_url"] is not None:
        changes["webhook_url"] = str(changes["webhook_url"])
    for key, value in changes.items():
        setattr(project, key, value)
    audit(session, who, "update_project", project.id, f"project:{project.id}", **changes)
    session.commit()
    return project_out(project)


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
    project = _admin_project(session, project_id, who)
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
    project = _admin_project(session, project_id, who)
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
    project = _admin_project(session, project_id, who)
    judges = session.scalars(
        select(Judge)
        .join(Member, Member.judge_id == Judge.id)
        .where(Member.project_id == project.id)
    )
    return [AnnotatorOut(id=j.id, name=j.name, deleted=j.deleted_at is not None) for j in judges]


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
    project = _admin_project(session, project_id, who)
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
    project = _admin_project(session, project_id, who)
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
    project = _admin_project(session, project_id, who)
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
    default all responses in stored order; the label uses those positions. AI judgments do
    not take annotator slots (R).
    """
    project = _admin_project(session, project_id, who)
    item = _item(session, project, body.item_id)
    order = body.order or list(range(2 if project.task == "pairwise" else len(item.responses)))
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
    try:
        session.commit()
    except IntegrityError:
        raise HTTPException(409, "a concurrent request stored this judgment; retry") from None
    return out


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
    project = _admin_project(session, project_id, who)
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
    project = _admin_project(session, project_id, who)
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
    project = _admin_project(session, project_id, who)
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
    project = _admin_project(session, project_id, who)
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
