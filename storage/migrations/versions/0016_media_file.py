"""media_file: voice messages' audio, fetched from WeChat and kept; an index on the voice
messages of the message table, for the job that fetches them

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "media_file",
        sa.Column("message_id", sa.Integer(), sa.ForeignKey("message.id"), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("content_type", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("body", sa.LargeBinary(), nullable=True),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("play_type", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column("play_body", sa.LargeBinary(), nullable=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("next_try_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("fetched_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("message_id"),
    )
    op.create_index(
        "ix_message_voice_created",
        "message",
        ["created_at"],
        sqlite_where=sa.text("msg_type = 'voice'"),
        postgresql_where=sa.text("msg_type = 'voice'"),
    )


def downgrade() -> None:
    op.drop_index("ix_message_voice_created", table_name="message")
    op.drop_table("media_file")
