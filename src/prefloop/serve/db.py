"""Database schema (SQLAlchemy 2 ORM) and engine set-up for SQLite and PostgreSQL.

Submitted judgments, drafts and assignments (who was shown what, in which order) live in
separate tables, so a draft or a skip can never be mistaken for a label.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without a zone; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: DateTime(timezone=True)}


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    task: Mapped[str] = mapped_column(String(20))
    guideline: Mapped[str] = mapped_column(Text, default="")
    guideline_version: Mapped[str] = mapped_column(String(100), default="1")
    redundancy: Mapped[int] = mapped_column(Integer, default=1)
    rule: Mapped[str] = mapped_column(String(40), default="random")
    warmup: Mapped[int] = mapped_column(Integer, default=0)
    aspects: Mapped[list[Any]] = mapped_column(default=list)
    scale_min: Mapped[int] = mapped_column(Integer, default=1)
    scale_max: Mapped[int] = mapped_column(Integer, default=5)
    webhook_url: Mapped[str | None] = mapped_column(String(2000))
    webhook_secret: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Judge(Base):
    """A human annotator (``kind='human'``) or an AI judge (model + prompt version)."""

    __tablename__ = "judges"
    __table_args__ = (UniqueConstraint("kind", "name", "model", "prompt_version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    name: Mapped[str] = mapped_column(String(200))
    model: Mapped[str] = mapped_column(String(200), default="")
    prompt_version: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column()


class Credential(Base):
    """A bearer token, stored as its SHA-256 digest only."""

    __tablename__ = "credentials"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"))
    judge_id: Mapped[int | None] = mapped_column(ForeignKey("judges.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


class Member(Base):
    __tablename__ = "members"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    judge_id: Mapped[int] = mapped_column(ForeignKey("judges.id"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Item(Base):
    """A prompt with 2..K responses. ``claimed`` counts live or submitted human assignments
    (bounded by R); ``filled`` is ``claimed >= R``, set in the same statement as ``claimed``
    (R never changes), so that ``ix_items_open`` finds the open items in id order."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id"),
        Index("ix_items_open", "project_id", "filled", "id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    external_id: Mapped[str | None] = mapped_column(String(200))
    prompt: Mapped[Any] = mapped_column(JSON)
    responses: Mapped[list[Any]] = mapped_column()
    rewards: Mapped[list[Any] | None] = mapped_column()
    item_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    claimed: Mapped[int] = mapped_column(Integer, default=0)
    filled: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Assignment(Base):
    """An item shown to one annotator: the displayed response order and what became of it."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "judge_id"),
        Index("ix_assignments_leases", "project_id", "status", "expires_at"),
        Index(  # one live assignment per annotator and project, whatever the concurrency
            "uq_assignments_live",
            "project_id",
            "judge_id",
            unique=True,
            sqlite_where=text("status = 'assigned'"),
            postgresql_where=text("status = 'assigned'"),
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    judge_id: Mapped[int] = mapped_column(ForeignKey("judges.id"), index=True)
    order: Mapped[list[Any]] = mapped_column("display_order")
    status: Mapped[str] = mapped_column(String(20), default="assigned")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    closed_at: Mapped[datetime | None] = mapped_column()


class Draft(Base):
    __tablename__ = "drafts"
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), primary_key=True)
    label: Mapped[dict[str, Any]] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Judgment(Base):
    """The one canonical submitted judgment of an item by a judge, in stored response indices.

    For pairwise tasks ``preference`` is P(response ``pair[0]`` beats ``pair[1]``), tie = 0.5.
    """

    __tablename__ = "judgments"
    __table_args__ = (UniqueConstraint("item_id", "judge_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    judge_id: Mapped[int] = mapped_column(ForeignKey("judges.id"))
    assignment_id: Mapped[int | None] = mapped_column(ForeignKey("assignments.id"))
    task: Mapped[str] = mapped_column(String(20))
    pair: Mapped[list[Any] | None] = mapped_column()
    preference: Mapped[float | None] = mapped_column(Float)
    label: Mapped[dict[str, Any]] = mapped_column()
    raw_label: Mapped[dict[str, Any]] = mapped_column()
    display_order: Mapped[list[Any] | None] = mapped_column()
    guideline_version: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """Append-only (database triggers reject UPDATE and DELETE)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(60))
    project_id: Mapped[int | None] = mapped_column(index=True)
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``sqlite:///`` URLs; drive PostgreSQL through psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ValueError(
            f"unsupported database URL {parsed.drivername!r}: use sqlite or postgresql"
        )
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str) -> Engine:
    """Engine with durable, serialised writes on SQLite (WAL, synchronous=FULL, BEGIN IMMEDIATE)."""
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's begin event issue BEGIN itself
        cursor = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
