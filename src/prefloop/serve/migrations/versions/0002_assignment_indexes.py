"""Index what ``next`` looks up, so its cost stays flat as a project fills.

``items.filled`` (``claimed >= R``, written in the same statement as ``claimed``) lets the open
items be read in id order from an index instead of stepping over every filled item first; the
``(project_id, status, expires_at)`` index finds expired leases without reading every
assignment of the project.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("filled", sa.Boolean, nullable=False, server_default=sa.false()))
    op.execute(
        "UPDATE items SET filled = (claimed >= "
        "(SELECT redundancy FROM projects WHERE projects.id = items.project_id))"
    )
    op.create_index("ix_items_open", "items", ["project_id", "filled", "id"])
    op.create_index("ix_assignments_leases", "assignments", ["project_id", "status", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_assignments_leases", "assignments")
    op.drop_index("ix_items_open", "items")
    with op.batch_alter_table("items") as batch:
        batch.drop_column("filled")
