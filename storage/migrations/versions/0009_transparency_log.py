"""the transparency log: each audit event's leaf index, and the signed tree heads

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# audit_event stays append-only, with one exception: the sequencer gives an event its
# leaf index once (NULL -> a number) and changes nothing else. Any other UPDATE, and every
# DELETE (and TRUNCATE on PostgreSQL), is still refused.
_PG_REFUSE = """
CREATE OR REPLACE FUNCTION audit_event_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL
           AND (to_jsonb(NEW) - 'leaf_index') = (to_jsonb(OLD) - 'leaf_index') THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'audit_event is append-only (% refused)', TG_OP;
END $$;
"""
_PG_REFUSE_BEFORE = """
CREATE OR REPLACE FUNCTION audit_event_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only (% refused)', TG_OP;
END $$;
"""
_COLUMNS = (
    "id",
    "chain",
    "seq",
    "prev_hash",
    "hash",
    "actor",
    "action",
    "subject",
    "case_id",
    "at",
    "payload",
)
_SQLITE_UPDATE = (
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
    "WHEN NOT (OLD.leaf_index IS NULL AND NEW.leaf_index IS NOT NULL AND "
    + " AND ".join(f"NEW.{c} IS OLD.{c}" for c in _COLUMNS)
    + ") BEGIN SELECT RAISE(ABORT, 'audit_event is append-only (UPDATE refused)'); END"
)
_SQLITE_UPDATE_BEFORE = (
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only (UPDATE refused)'); END"
)

# tree_head is append-only too: a head, once signed, is kept as it is.
_PG_HEAD_REFUSE = """
CREATE FUNCTION tree_head_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'tree_head is append-only (% refused)', TG_OP;
END $$;
"""


def upgrade() -> None:
    op.add_column("audit_event", sa.Column("leaf_index", sa.BigInteger(), nullable=True))
    op.create_index("ux_audit_event_leaf_index", "audit_event", ["leaf_index"], unique=True)
    op.create_index(
        "ix_audit_event_unsequenced",
        "audit_event",
        ["id"],
        unique=False,
        sqlite_where=sa.text("leaf_index IS NULL"),
        postgresql_where=sa.text("leaf_index IS NULL"),
    )
    op.create_table(
        "tree_head",
        sa.Column("size", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("root", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("signed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("signature", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("frontier", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("size"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_REFUSE)
        op.execute(_PG_HEAD_REFUSE)
        op.execute(
            "CREATE TRIGGER tree_head_no_change BEFORE UPDATE OR DELETE ON tree_head "
            "FOR EACH ROW EXECUTE FUNCTION tree_head_refuse()"
        )
        op.execute(
            "CREATE TRIGGER tree_head_no_truncate BEFORE TRUNCATE ON tree_head "
            "FOR EACH STATEMENT EXECUTE FUNCTION tree_head_refuse()"
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")
        op.execute(_SQLITE_UPDATE)
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER tree_head_no_{verb.lower()} BEFORE {verb} ON tree_head "
                f"BEGIN SELECT RAISE(ABORT, 'tree_head is append-only ({verb} refused)'); END"
            )


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("DROP TRIGGER IF EXISTS tree_head_no_change ON tree_head")
        op.execute("DROP TRIGGER IF EXISTS tree_head_no_truncate ON tree_head")
        op.execute("DROP FUNCTION IF EXISTS tree_head_refuse()")
        op.execute(_PG_REFUSE_BEFORE)
    else:
        op.execute("DROP TRIGGER IF EXISTS tree_head_no_update")
        op.execute("DROP TRIGGER IF EXISTS tree_head_no_delete")
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_update")  # it names the column
    op.drop_table("tree_head")
    op.drop_index(
        "ix_audit_event_unsequenced",
        table_name="audit_event",
        sqlite_where=sa.text("leaf_index IS NULL"),
        postgresql_where=sa.text("leaf_index IS NULL"),
    )
    op.drop_index("ux_audit_event_leaf_index", table_name="audit_event")
    # In place on both (SQLite 3.35+): a batch copy of the table would lose its triggers.
    op.execute("ALTER TABLE audit_event DROP COLUMN leaf_index")
    if not postgresql:
        op.execute(_SQLITE_UPDATE_BEFORE)
