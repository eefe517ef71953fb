"""Bearer tokens: generated at random, shown once, stored only as SHA-256 digests.

Tokens carry 256 bits of entropy, so a fast hash is enough (no brute force can reach them) and
it lets a request find its credential by an indexed lookup on the digest.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from prefloop.serve.db import Credential, Judge, Member, utcnow
from prefloop.serve.throttle import FailedAuthThrottle

SERVER_ADMIN, PROJECT_ADMIN, ANNOTATOR = "server_admin", "project_admin", "annotator"
TOKEN_PREFIX = {SERVER_ADMIN: "pfs_", PROJECT_ADMIN: "pfa_", ANNOTATOR: "pfu_"}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(
    session: Session, role: str, project_id: int | None = None, judge_id: int | None = None
) -> str:
    """Create a credential and return its token; only the digest is stored."""
    token = TOKEN_PREFIX[role] + secrets.token_urlsafe(32)
    session.add(
        Credential(
            token_hash=hash_token(token), role=role, project_id=project_id, judge_id=judge_id
        )
    )
    return token


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role, and the project (project admin) or judge (annotator) it binds."""

    credential_id: int
    role: str
    project_id: int | None = None
    judge_id: int | None = None

    @property
    def actor(self) -> str:
        """Audit-log name: role and id, never the token."""
        ident = {ANNOTATOR: self.judge_id, PROJECT_ADMIN: self.project_id}.get(self.role, "")
        return f"{self.role}:{ident or self.credential_id}"

    def can_admin(self, project_id: int) -> bool:
        return self.role == SERVER_ADMIN or (
            self.role == PROJECT_ADMIN and self.project_id == project_id
        )


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


def principal(request: Request, session: Session = Depends(get_session)) -> Principal:
    """Resolve the ``Authorization: Bearer`` token, or fail with 401; 429 while the caller's
    address has too many recent failures (see :mod:`prefloop.serve.throttle`).

    The token is found by its digest (an indexed lookup, so no secret is compared in Python).
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing bearer token", {"WWW-Authenticate": "Bearer"})
    throttle: FailedAuthThrottle = request.app.state.auth_throttle
    address = request.client.host if request.client else ""
    if (wait := throttle.retry_after(address)) is not None:
        detail = f"too many failed authentications from this address; retry in {wait} s"
        raise HTTPException(429, detail, {"Retry-After": str(wait)})
    cred = session.scalar(select(Credential).where(Credential.token_hash == hash_token(token)))
    if cred is None or cred.revoked_at is not None:
        throttle.failed(address)
        raise HTTPException(401, "invalid or revoked token", {"WWW-Authenticate": "Bearer"})
    return Principal(cred.id, cred.role, cred.project_id, cred.judge_id)


def require_server_admin(who: Principal = Depends(principal)) -> Principal:
    if who.role != SERVER_ADMIN:
        raise HTTPException(403, "server admin token required")
    return who


def require_project_admin(project_id: int, who: Principal) -> None:
    """403 unless ``who`` administers ``project_id``."""
    if not who.can_admin(project_id):
        raise HTTPException(403, "not an admin of this project")


def require_member(project_id: int, who: Principal, session: Session) -> Judge:
    """The calling annotator's judge row, or 403 if not assigned to ``project_id`` or removed."""
    if who.role != ANNOTATOR:
        raise HTTPException(403, "annotator token required")
    judge = session.get(Judge, who.judge_id)
    if judge is None or judge.deleted_at is not None:
        raise HTTPException(403, "annotator removed")
    if session.get(Member, (project_id, who.judge_id)) is None:
        raise HTTPException(403, "not assigned to this project")
    return judge


def revoke_judge_tokens(session: Session, judge_id: int) -> None:
    for cred in session.scalars(select(Credential).where(Credential.judge_id == judge_id)):
        cred.revoked_at = cred.revoked_at or utcnow()
