"""audit_check: each successful `mst audit verify`, where the next incremental one starts

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Append-only, as audit_event and tree_head: a check, once recorded, is kept as it is.
_PG_REFUSE = """
CREATE FUNCTION audit_check_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_check is append-only (% refused)', TG_OP;
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "audit_check",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("checked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("mode", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_REFUSE)
        op.execute(
            "CREATE TRIGGER audit_check_no_change BEFORE UPDATE OR DELETE ON audit_check "
            "FOR EACH ROW EXECUTE FUNCTION audit_check_refuse()"
        )
        op.execute(
            "CREATE TRIGGER audit_check_no_truncate BEFORE TRUNCATE ON audit_check "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_check_refuse()"
        )
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_check_no_{verb.lower()} BEFORE {verb} ON audit_check "
                f"BEGIN SELECT RAISE(ABORT, 'audit_check is append-only ({verb} refused)'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_check_no_change ON audit_check")
        op.execute("DROP TRIGGER IF EXISTS audit_check_no_truncate ON audit_check")
        op.execute("DROP FUNCTION IF EXISTS audit_check_refuse()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_check_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_check_no_delete")
    op.drop_table("audit_check")
