"""Lookups and conversions the admin and annotator routers share."""

from __future__ import annotations

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.orm import Session

from prefloop.serve import deliveries, webhooks
from prefloop.serve.auth import Principal, require_project_admin
from prefloop.serve.db import Judge, Judgment, Project, as_utc
from prefloop.serve.schemas import JudgmentOut, ProjectOut


def get_project(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise HTTPException(404, f"project {project_id} not found")
    return project


def project_out(project: Project) -> ProjectOut:
    return ProjectOut.model_validate(project, from_attributes=True)


def judgment_out(judgment: Judgment, judge_kind: str, duplicate: bool = False) -> JudgmentOut:
    return JudgmentOut(
        id=judgment.id,
        item_id=judgment.item_id,
        judge_id=judgment.judge_id,
        judge_kind=judge_kind,
        task=judgment.task,
        pair=judgment.pair,
        preference=judgment.preference,
        label=judgment.label,
        raw_label=judgment.raw_label,
        display_order=judgment.display_order,
        guideline_version=judgment.guideline_version,
        created_at=as_utc(judgment.created_at),
        duplicate=duplicate,
    )


def stored_judgment(session: Session, item_id: int, judge_id: int, raw: dict) -> JudgmentOut | None:
    """The judgment already stored for (item, judge), if any; 409 if its answer differs."""
    existing = session.scalar(
        select(Judgment).where(Judgment.item_id == item_id, Judgment.judge_id == judge_id)
    )
    if existing is None:
        return None
    if existing.raw_label != raw:
        raise HTTPException(409, "this item was already judged by this judge with another answer")
    return judgment_out(existing, session.get(Judge, judge_id).kind, duplicate=True)


def admin_project(session: Session, project_id: int, who: Principal) -> Project:
    """The project (404 if unknown), provided ``who`` administers it (403 otherwise)."""
    project = get_project(session, project_id)
    require_project_admin(project_id, who)
    return project


#: ``Session.info`` key, set by ``create_app``: may webhooks go to non-public addresses?
ALLOW_PRIVATE_WEBHOOKS = "allow_private_webhooks"


def private_webhooks_allowed(session: Session | None) -> bool:
    """The app's setting; False (public targets only) where no app's session is at hand."""
    return session is not None and bool(session.info.get(ALLOW_PRIVATE_WEBHOOKS, False))


def checked_webhook_url(session: Session, url: object) -> str | None:
    """``url`` as text if the server may post to it; 422 saying why not otherwise."""
    if url is None:
        return None
    try:
        webhooks.resolve_target(str(url), private_webhooks_allowed(session))
    except webhooks.WebhookTargetError as err:
        raise HTTPException(422, f"webhook_url: {err}") from None
    return str(url)


def announce(session: Session, project: Project, judgment: JudgmentOut) -> None:
    """Send the project's signed ``judgment.created`` webhook, if it has one (after commit),
    to a target the app allows; its outcome goes to the audit log
    (:mod:`prefloop.serve.deliveries`)."""
    if project.webhook_url:
        data = judgment.model_dump(mode="json")
        done = deliveries.recorder(session.get_bind(), project.id, judgment.id)
        url, secret = project.webhook_url, project.webhook_secret
        allow = private_webhooks_allowed(session)
        webhooks.send(url, secret, "judgment.created", data, allow_private=allow, on_done=done)
