"""Webhook delivery outcomes, kept in the audit log so every worker's deliveries are visible.

Each finished delivery (after its retries) adds one entry: action ``webhook_delivered`` or
``webhook_failed``, actor ``server:webhook``, target the judgment, detail the message id, the
attempts made and the last HTTP status or transport error.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from prefloop.serve.audit import audit
from prefloop.serve.db import AuditEntry, Project, as_utc
from prefloop.serve.webhooks import Delivery

DELIVERED, FAILED = "webhook_delivered", "webhook_failed"


def recorder(engine: Engine, project_id: int, judgment_id: int) -> Callable[[Delivery], None]:
    """A callback for :func:`prefloop.serve.webhooks.send` that stores the outcome."""

    def record(delivery: Delivery) -> None:
        with Session(engine) as session:
            audit(
                session,
                "server:webhook",
                DELIVERED if delivery.ok else FAILED,
                project_id,
                f"judgment:{judgment_id}",
                message_id=delivery.message_id,
                attempts=delivery.attempts,
                status=delivery.status,
                error=delivery.error,
            )
            session.commit()

    return record


def delivery_status(session: Session, project: Project, recent: int = 10) -> dict:
    """The webhook URL, how many deliveries succeeded and failed, and the latest ones."""
    ours = (AuditEntry.project_id == project.id, AuditEntry.action.in_((DELIVERED, FAILED)))
    counts = dict(
        session.execute(
            select(AuditEntry.action, func.count()).where(*ours).group_by(AuditEntry.action)
        ).all()
    )
    latest = session.scalars(
        select(AuditEntry).where(*ours).order_by(AuditEntry.id.desc()).limit(recent)
    )
    return {
        "url": project.webhook_url,
        "delivered": counts.get(DELIVERED, 0),
        "failed": counts.get(FAILED, 0),
        "recent": [
            {
                "at": as_utc(entry.at).isoformat(),
                "target": entry.target,
                "ok": entry.action == DELIVERED,
                **entry.detail,
            }
            for entry in latest
        ],
    }
