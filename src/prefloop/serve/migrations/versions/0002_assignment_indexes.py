"""Index what ``next`` looks up, so its cost stays flat as a project fills.

``items.filled`` (``claimed >= R``, written in the same statement as ``claimed``) lets the open
items be read in id order from an index instead of stepping over every filled item first; the
``(project_id, status, expires_at)`` index finds expired leases without reading every
assignment of the project. ``uq_assignments_live`` allows one live assignment per annotator
and project: two concurrent ``next`` calls of one annotator (a client retrying after a
timeout, in the same or another server process) can no longer lease two items. Leases such a
race left behind are expired first (all but the newest), freeing their slots.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


LIVE = "status = 'assigned'"
SUPERSEDED = (  # a live assignment of an annotator who has a newer live one in the project
    f"{LIVE} AND EXISTS (SELECT 1 FROM assignments newer "
    "WHERE newer.project_id = assignments.project_id AND newer.judge_id = assignments.judge_id "
    "AND newer.status = 'assigned' AND newer.id > assignments.id)"
)


def upgrade() -> None:
    op.execute(
        "UPDATE items SET claimed = claimed - "
        f"(SELECT COUNT(*) FROM assignments WHERE assignments.item_id = items.id AND {SUPERSEDED}) "
        f"WHERE id IN (SELECT item_id FROM assignments WHERE {SUPERSEDED})"
    )
    expire = "UPDATE assignments SET status = 'expired', closed_at = CURRENT_TIMESTAMP"
    op.execute(f"{expire} WHERE {SUPERSEDED}")
    # a constant default: SQLite adds the column in place (an expression would make Alembic
    # rebuild the table, which the foreign keys from assignments and judgments forbid)
    op.add_column("items", sa.Column("filled", sa.Boolean, nullable=False, server_default="0"))
    op.execute(
        "UPDATE items SET filled = (claimed >= "
        "(SELECT redundancy FROM projects WHERE projects.id = items.project_id))"
    )
    op.create_index("ix_items_open", "items", ["project_id", "filled", "id"])
    op.create_index("ix_assignments_leases", "assignments", ["project_id", "status", "expires_at"])
    live = sa.text(LIVE)
    op.create_index(
        "uq_assignments_live",
        "assignments",
        ["project_id", "judge_id"],
        unique=True,
        sqlite_where=live,
        postgresql_where=live,
    )


def downgrade() -> None:
    op.drop_index("uq_assignments_live", "assignments")
    op.drop_index("ix_assignments_leases", "assignments")
    op.drop_index("ix_items_open", "items")
    op.drop_column("items", "filled")  # in place (SQLite 3.35+), for the same reason
