"""a court's service desk: phone, address, hours

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("court") as batch:
        batch.add_column(sa.Column("phone", sqlmodel.sql.sqltypes.AutoString(length=40)))
        batch.add_column(sa.Column("address", sqlmodel.sql.sqltypes.AutoString(length=200)))
        batch.add_column(sa.Column("hours", sqlmodel.sql.sqltypes.AutoString(length=100)))


def downgrade() -> None:
    with op.batch_alter_table("court") as batch:
        batch.drop_column("hours")
        batch.drop_column("address")
        batch.drop_column("phone")
