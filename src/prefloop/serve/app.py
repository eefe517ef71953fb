"""The FastAPI application: API under ``/api/v1``, the annotation page at ``/``.

OpenAPI is served at ``/openapi.json``; the interactive docs pages are off because they load
assets from a CDN and the server must work with no outside network.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from prefloop.serve import api_annotate, api_items, api_people, api_projects, api_results
from prefloop.serve.api_dashboard import router as dashboard_router
from prefloop.serve.auth import Principal, principal
from prefloop.serve.common import ALLOW_PRIVATE_WEBHOOKS
from prefloop.serve.db import make_sessionmaker
from prefloop.serve.labels import LabelError
from prefloop.serve.middleware import BodyLimit, JsonBodies, SecurityHeaders
from prefloop.serve.throttle import FailedAuthThrottle

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024 * 1024


def create_app(
    engine: Engine,
    allow_private_webhooks: bool = False,
    auth_throttle: FailedAuthThrottle | None = None,
) -> FastAPI:
    """An app bound to ``engine`` (already migrated: see :func:`prefloop.serve.migrate.upgrade`).

    ``allow_private_webhooks`` lets projects post webhooks to loopback, private and link-local
    addresses (a receiver on the same machine or network); by default only public ones.
    ``auth_throttle`` limits failed authentications per address (default: 20 a minute).
    """
    app = FastAPI(
        title="prefloop feedback service",
        version="1",
        description="Collect pairwise, ranking, rating and critique feedback for training.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.sessions = make_sessionmaker(engine)
    app.state.sessions.configure(info={ALLOW_PRIVATE_WEBHOOKS: allow_private_webhooks})
    app.state.auth_throttle = auth_throttle or FailedAuthThrottle()
    for module in (api_projects, api_people, api_items, api_annotate, api_results):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(dashboard_router)  # the page and its endpoint carry their own paths

    @app.get("/api/v1/me", tags=["auth"])
    def me(who: Principal = Depends(principal)) -> dict:
        """The caller's role and the project or annotator its token is bound to."""
        return {"role": who.role, "project_id": who.project_id, "annotator_id": who.judge_id}

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict:
        return {"ok": True}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(LabelError)
    def _label_error(_request: Request, err: LabelError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    def _invalid(_request: Request, err: RequestValidationError) -> JSONResponse:
        """Like FastAPI's own 422, minus the echoed input (which may hold NaN or huge text)."""
        errors = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in err.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(OperationalError)
    def _busy(_request: Request, err: OperationalError) -> JSONResponse:
        """Lock timeouts and deadlock victims: nothing was stored, the client may retry."""
        return JSONResponse(
            {"detail": "database busy, retry"}, status_code=503, headers={"Retry-After": "1"}
        )

    @app.exception_handler(IntegrityError)
    def _conflict(_request: Request, err: IntegrityError) -> JSONResponse:
        """A concurrent request created the same row first; nothing of this one was stored."""
        return JSONResponse({"detail": "conflicting concurrent change, retry"}, status_code=409)

    @app.exception_handler(DataError)
    def _data_error(_request: Request, err: DataError) -> JSONResponse:
        """Values the database cannot hold (e.g. NUL characters in PostgreSQL text)."""
        return JSONResponse({"detail": f"value not storable: {err.orig}"}, status_code=422)

    app.add_middleware(JsonBodies, api_prefix="/api/")
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_middleware(SecurityHeaders, api_prefix="/api/")  # outermost: the 413 gets them too

    return app
