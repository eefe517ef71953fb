"""Command-line entry points, plain functions for ``prefloop serve`` to wire up.

``serve_command`` runs the server (``init=True`` first creates the server-admin token and prints
it once); ``import_command`` and ``export_command`` move items and judgments through files, on
the database (``db``) or through a running server (``url`` and ``token``, with :class:`Client`).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import HTTPException
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, OperationalError

from prefloop.data.errors import FeedbackFormatError
from prefloop.serve.audit import audit
from prefloop.serve.auth import SERVER_ADMIN, issue_token
from prefloop.serve.client import Client, ServeError
from prefloop.serve.db import Credential, Project, make_engine, make_sessionmaker
from prefloop.serve.export import FORMS, ndjson, project_records, rows
from prefloop.serve.items import ItemFileError, insert_items, items_from_file
from prefloop.serve.migrate import upgrade

DEFAULT_DB = "sqlite:///prefloop-feedback.db"


def open_db(db: str) -> Engine:
    """Engine for ``db`` with the schema migrated to the newest version; a URL that does not
    parse or a database that cannot be reached ends the program with a one-line reason."""
    try:
        engine = make_engine(db)
    except (ArgumentError, ValueError) as err:
        raise SystemExit(f"bad database URL: {err}") from None
    try:
        upgrade(engine)
    except OperationalError as err:
        raise SystemExit(f"cannot open the database: {err.orig}") from None
    return engine


def init_admin(engine: Engine) -> str | None:
    """Create the first server-admin token and return it; None if one already exists."""
    with make_sessionmaker(engine)() as session:
        if session.scalar(select(Credential).where(Credential.role == SERVER_ADMIN)) is not None:
            return None
        token = issue_token(session, SERVER_ADMIN)
        audit(session, "cli", "init")
        session.commit()
        return token


def serve_command(
    db: str = DEFAULT_DB,
    host: str = "127.0.0.1",
    port: int = 8000,
    init: bool = False,
    *,
    workers: int = 1,
    allow_private_webhooks: bool = False,
) -> None:
    """Run the server on ``host:port`` against ``db`` (``sqlite:///path`` or ``postgresql://``)
    in ``workers`` processes sharing the port (more than one on PostgreSQL only);
    ``allow_private_webhooks`` as in :func:`prefloop.serve.app.create_app`.

    Migrations and ``init`` run once, in this process, before any worker starts.
    """
    import uvicorn

    from prefloop.serve.workers import APP_FACTORY, check_workers, export_app_options

    engine = open_db(db)
    check_workers(engine.dialect.name, workers)
    if init:
        token = init_admin(engine)
        if token is None:
            raise SystemExit("already initialised: a server admin token exists (none is reprinted)")
        print(f"server admin token (shown once, store it now): {token}", flush=True)
    engine.dispose()
    export_app_options(db, allow_private_webhooks)
    uvicorn.run(
        APP_FACTORY, factory=True, workers=workers, host=host, port=port, log_level="warning"
    )


def _project(session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise SystemExit(f"project {project_id} not found")
    return project


def _server(db: str | None, url: str | None, token: str | None) -> Client | None:
    """A client for ``url`` (None without one); ``url`` with ``db``, or without a token, exits."""
    if url is None:
        return None
    if db is not None:
        raise SystemExit("give --url (a running server) or --db (the database), not both")
    if not token:
        raise SystemExit("--url needs a project admin token: --token or PREFLOOP_TOKEN")
    return Client(url, token)


def _on_server(client: Client, call):
    """``call(client)``; a server error or an unreachable server exits with one line."""
    with client:
        try:
            return call(client)
        except ServeError as err:
            raise SystemExit(f"server: {err}") from None


def import_command(
    path: str,
    project: int,
    db: str | None = None,
    *,
    url: str | None = None,
    token: str | None = None,
) -> int:
    """Add items from a file: prefloop/TRL records (JSONL, Parquet, HF folder: comparisons or
    ratings) or JSONL lines in the API's item form (``{"prompt", "responses", ...}``).

    Into the database ``db`` (default :data:`DEFAULT_DB`), or, with ``url``, through the server
    there with the project admin ``token``. Returns the number of new items; rows already
    imported (same file name and line: the item's external id) are skipped. A malformed file
    exits with ``file:line: field '...': what is wrong``, storing nothing.
    """
    source = Path(path)
    try:
        specs = items_from_file(source)
    except (ItemFileError, FeedbackFormatError) as err:
        raise SystemExit(str(err)) from None
    if (client := _server(db, url, token)) is not None:
        return _on_server(client, lambda c: c.add_items(project, specs).created)
    with make_sessionmaker(open_db(db or DEFAULT_DB))() as session:
        try:
            _ids, created = insert_items(session, _project(session, project), specs)
        except HTTPException as err:  # e.g. an external_id given twice
            raise SystemExit(f"{source}: {err.detail}") from None
        audit(session, "cli", "import_items", project, str(source), count=created)
        session.commit()
    return created


def export_command(
    project: int,
    out: str,
    db: str | None = None,
    form: str = "prefloop",
    pairs: bool = False,
    judges: str = "all",
    *,
    url: str | None = None,
    token: str | None = None,
) -> int:
    """Write the project's judgments as JSON lines (training + provenance columns); row count.

    From the database ``db`` (default :data:`DEFAULT_DB`), or, with ``url``, the server's
    export with the project admin ``token``: the same lines either way.
    """
    if form not in FORMS:
        raise SystemExit(f"form must be one of {FORMS}")
    if (client := _server(db, url, token)) is not None:
        body = _on_server(client, lambda c: c.export(project, form, pairs, judges))
        Path(out).write_bytes(body)
        return body.count(b"\n")
    with make_sessionmaker(open_db(db or DEFAULT_DB))() as session:
        records = project_records(session, _project(session, project), judges, pairs)
        audit(session, "cli", "export", project, out, form=form)
        session.commit()
    lines = list(ndjson(rows(records, form)))
    Path(out).write_text("".join(lines), encoding="utf-8")
    return len(lines)
