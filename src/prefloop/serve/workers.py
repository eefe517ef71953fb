"""Serving from several processes: what each uvicorn worker runs, and when that is allowed.

Uvicorn starts its worker processes afresh (spawn) and has each import the app by name, so the
app's options (the database URL, whether webhooks may go to private addresses) travel in
environment variables set by ``serve_command``; every worker opens its own engine, as
connections must never be shared across processes. All assignment state
lives in the database (see :mod:`prefloop.serve.assign`), so workers need no coordination.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from prefloop.serve.app import create_app
from prefloop.serve.db import make_engine

DB_ENV = "PREFLOOP_SERVE_DB"
PRIVATE_WEBHOOKS_ENV = "PREFLOOP_SERVE_ALLOW_PRIVATE_WEBHOOKS"
APP_FACTORY = f"{__name__}:app_from_env"


def export_app_options(db: str, allow_private_webhooks: bool) -> None:
    """Put the options of :func:`app_from_env` in this process's environment, which the
    workers inherit."""
    os.environ[DB_ENV] = db
    os.environ[PRIVATE_WEBHOOKS_ENV] = "1" if allow_private_webhooks else "0"


def app_from_env() -> FastAPI:
    """The app of one worker, on the database ``serve_command`` has already migrated, with the
    options :func:`export_app_options` set."""
    if DB_ENV not in os.environ:
        raise SystemExit(f"{DB_ENV} is not set: start the server with `prefloop serve`")
    allow_private = os.environ.get(PRIVATE_WEBHOOKS_ENV) == "1"
    return create_app(make_engine(os.environ[DB_ENV]), allow_private_webhooks=allow_private)


def check_workers(dialect: str, workers: int) -> None:
    """Refuse, with a one-line reason, a worker count the database (``sqlite``,
    ``postgresql``) cannot use."""
    if workers < 1:
        raise SystemExit(f"--workers must be at least 1, got {workers}")
    if workers > 1 and dialect == "sqlite":
        raise SystemExit(
            "--workers > 1 needs PostgreSQL: SQLite lets one process write at a time, "
            "so more workers would only queue on its lock (serve SQLite with one worker)"
        )
