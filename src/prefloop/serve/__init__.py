"""Feedback collection service: HTTP API, annotation page, SQLite/PostgreSQL storage, export.

Start it with ``prefloop serve`` (:func:`prefloop.serve.cli.serve_command`) or
``python -m prefloop.serve``; build an app in-process with :func:`prefloop.serve.app.create_app`.
Nothing is imported here, so the main CLI loads without the ``serve`` extra installed.
"""
