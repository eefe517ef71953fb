"""Project endpoints: create (server admin), list and read (anyone allowed), update (admin)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from prefloop.serve import webhooks
from prefloop.serve.audit import audit
from prefloop.serve.auth import (
    ANNOTATOR,
    PROJECT_ADMIN,
    Principal,
    get_session,
    issue_token,
    principal,
    require_server_admin,
)
from prefloop.serve.common import (
    admin_project,
    checked_webhook_url,
    get_project,
    project_out,
)
from prefloop.serve.db import Member, Project
from prefloop.serve.schemas import (
    Id,
    ProjectCreated,
    ProjectIn,
    ProjectOut,
    ProjectPatch,
)

router = APIRouter()


@router.post("/projects", response_model=ProjectCreated, status_code=201, tags=["projects"])
def create_project(
    body: ProjectIn,
    who: Principal = Depends(require_server_admin),
    session: Session = Depends(get_session),
) -> ProjectCreated:
    """Create a project; its admin token and webhook secret are returned this once only."""
    values = body.model_dump()
    values["webhook_url"] = checked_webhook_url(session, body.webhook_url)
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
    project = admin_project(session, project_id, who)
    changes = body.model_dump(exclude_unset=True)
    if "webhook_url" in changes:
        changes["webhook_url"] = checked_webhook_url(session, changes["webhook_url"])
    for key, value in changes.items():
        setattr(project, key, value)
    audit(session, who, "update_project", project.id, f"project:{project.id}", **changes)
    session.commit()
    return project_out(project)
