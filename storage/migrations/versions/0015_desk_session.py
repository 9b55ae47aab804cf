"""desk_session: staff at the service desk acting for a party; ticket.assisted_by_id

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "desk_session",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("court_id", sa.Integer(), sa.ForeignKey("court.id"), nullable=False),
        sa.Column("staff_id", sa.Integer(), sa.ForeignKey("staff.id"), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("case.id"), nullable=False),
        sa.Column("party_id", sa.Integer(), sa.ForeignKey("party.id"), nullable=False),
        sa.Column("user", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("via", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("consent", sa.Text(), nullable=False),
        sa.Column("id_checked", sa.Boolean(), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("last_active_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("ended_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("end_reason", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    )
    op.create_index("ix_desk_session_court_id", "desk_session", ["court_id"])
    op.create_index("ix_desk_session_case_id", "desk_session", ["case_id"])
    op.create_index("ix_desk_session_party_id", "desk_session", ["party_id"])
    for column in ("staff_id", "party_id"):
        op.create_index(
            f"ux_desk_session_{column.removesuffix('_id')}_open",
            "desk_session",
            [column],
            unique=True,
            sqlite_where=sa.text("ended_at IS NULL"),
            postgresql_where=sa.text("ended_at IS NULL"),
        )
    with op.batch_alter_table("ticket") as batch:
        batch.add_column(sa.Column("assisted_by_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_ticket_assisted_by", "staff", ["assisted_by_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch:
        batch.drop_constraint("fk_ticket_assisted_by", type_="foreignkey")
        batch.drop_column("assisted_by_id")
    op.drop_table("desk_session")
