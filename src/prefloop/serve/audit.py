"""Append-only audit log: who did what, to which project and object."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from prefloop.serve.auth import Principal
from prefloop.serve.db import AuditEntry


def audit(
    session: Session,
    who: Principal | str,
    action: str,
    project_id: int | None = None,
    target: str = "",
    **detail: Any,
) -> None:
    """Add an entry in the caller's transaction, so it commits exactly when the action does."""
    actor = who if isinstance(who, str) else who.actor
    session.add(
        AuditEntry(actor=actor, action=action, project_id=project_id, target=target, detail=detail)
    )
