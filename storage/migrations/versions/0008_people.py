"""people and their channel identities; one person per WeChat openid already known

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Every WeChat openid the schema holds, with when it was first seen. Messages of another
# channel carry that channel's id, not an openid. `user` is quoted: PostgreSQL reserves it.
_SEEN = """
SELECT openid, created_at AS at FROM staff WHERE openid IS NOT NULL
UNION ALL SELECT openid, verified_at FROM binding
UNION ALL SELECT openid, created_at FROM ticket
UNION ALL SELECT openid, created_at FROM message WHERE channel = 'wechat' OR channel IS NULL
UNION ALL SELECT openid, created_at FROM booking
UNION ALL SELECT openid, created_at FROM rating
UNION ALL SELECT "user", updated_at FROM conversation
"""

# Plain SQL for both databases, a statement a table. The new person's display_name holds
# its openid for the moment it takes to give the person its identity (the only way to pair
# the ids the database hands out with the openids without a scratch table), then is cleared.
_PEOPLE = f"""
INSERT INTO person (display_name, created_at)
SELECT openid, MIN(at) FROM ({_SEEN}) AS seen
WHERE openid <> ''
GROUP BY openid
ORDER BY MIN(at), openid
"""
_IDENTITIES = """
INSERT INTO channel_identity (person_id, channel, external_id, created_at)
SELECT id, 'wechat', display_name, created_at FROM person
"""
_CLEAR = "UPDATE person SET display_name = NULL"


def upgrade() -> None:
    op.create_table(
        "person",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("display_name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "channel_identity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("external_id", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("unionid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("channel", "external_id", name="uq_channel_identity_external"),
    )
    with op.batch_alter_table("channel_identity", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_channel_identity_person_id"), ["person_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_channel_identity_unionid"), ["unionid"], unique=False)

    op.execute(_PEOPLE)
    op.execute(_IDENTITIES)
    op.execute(_CLEAR)


def downgrade() -> None:
    with op.batch_alter_table("channel_identity", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_channel_identity_unionid"))
        batch_op.drop_index(batch_op.f("ix_channel_identity_person_id"))
    op.drop_table("channel_identity")
    op.drop_table("person")
