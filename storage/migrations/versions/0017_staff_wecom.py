"""staff: the WeCom (企业微信) userid a staff member is linked to (unique)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-20
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("staff", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("wecom_userid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.create_index("ix_staff_wecom_userid", ["wecom_userid"], unique=True)


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+), as 0013: batch mode would copy `staff`, which the
    # foreign keys pointing at it refuse.
    op.drop_index("ix_staff_wecom_userid", table_name="staff")
    op.drop_column("staff", "wecom_userid")
