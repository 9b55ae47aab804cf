"""access: tickets carry their court and inbox; staff their supported judges; failed tries

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Where an unassigned ticket of the old schema sits, by its escalation level (the default
# chains): complaints start with supervision, other items go to reception; above: leaders.
_BACKFILL_INBOX = """
UPDATE ticket SET inbox = CASE
  WHEN kind = 'complaint' AND level = 0 THEN 'supervision'
  WHEN kind = 'complaint' THEN 'admin'
  WHEN level <= 1 THEN 'reception'
  ELSE 'admin' END
WHERE assignee_id IS NULL
"""


def upgrade() -> None:
    op.create_table(
        "failed_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("openid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["case.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("failed_attempt", schema=None) as batch_op:
        batch_op.create_index("ix_failed_attempt_case", ["kind", "case_id", "at"], unique=False)
        batch_op.create_index("ix_failed_attempt_openid", ["kind", "openid", "at"], unique=False)
        batch_op.create_index("ix_failed_attempt_at", ["kind", "at"], unique=False)

    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("supports", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )

    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.add_column(sa.Column("court_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("inbox", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
    op.execute(
        'UPDATE ticket SET court_id = (SELECT court_id FROM "case" WHERE "case".id = ticket.case_id)'
    )
    op.execute(_BACKFILL_INBOX)
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.alter_column("court_id", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index(batch_op.f("ix_ticket_court_id"), ["court_id"], unique=False)
        batch_op.create_foreign_key("fk_ticket_court_id_court", "court", ["court_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.drop_constraint("fk_ticket_court_id_court", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_ticket_court_id"))
        batch_op.drop_column("inbox")
        batch_op.drop_column("court_id")
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.drop_column("supports")
    with op.batch_alter_table("failed_attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_failed_attempt_at")
        batch_op.drop_index("ix_failed_attempt_openid")
        batch_op.drop_index("ix_failed_attempt_case")
    op.drop_table("failed_attempt")
