"""Feedback collection service: HTTP API, annotation page, SQLite/PostgreSQL storage, export.

Start it with ``prefloop serve`` (:func:`prefloop.serve.cli.serve_command`) or
``python -m prefloop.serve``; build an app in-process with :func:`prefloop.serve.app.create_app`;
talk to a running one from Python with :class:`prefloop.serve.Client`. Names are imported on
first use, so the main CLI loads without the ``serve`` extra installed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Client", "ServeConnectionError", "ServeError", "ServeHTTPError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from prefloop.serve import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
