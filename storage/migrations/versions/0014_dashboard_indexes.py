"""ticket: an index on (court_id, created_at), for the dashboard's figures of a period

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-20
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_ticket_court_created", "ticket", ["court_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_ticket_court_created", table_name="ticket")
