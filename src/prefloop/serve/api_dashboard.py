"""The project dashboard: its page at ``/dashboard`` and its numbers in one read-only endpoint."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from prefloop.serve.auth import Principal, get_session, principal
from prefloop.serve.common import admin_project
from prefloop.serve.dashboard import project_dashboard
from prefloop.serve.schemas import Id

PAGE = Path(__file__).parent / "static" / "dashboard.html"
router = APIRouter()


@router.get("/dashboard", include_in_schema=False)
def page() -> FileResponse:
    return FileResponse(PAGE)


@router.get("/api/v1/projects/{project_id}/dashboard", tags=["judgments"])
def dashboard(
    project_id: Id, who: Principal = Depends(principal), session: Session = Depends(get_session)
) -> dict:
    """Progress, per-annotator counts, judgments per hour, agreement, label distribution,
    position bias, the most disputed items and webhook deliveries (project admin)."""
    project = admin_project(session, project_id, who)
    out = project_dashboard(session, project)
    session.rollback()
    return out
