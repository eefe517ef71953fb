"""Alembic migrations for the feedback database (run by :func:`prefloop.serve.migrate.upgrade`)."""
