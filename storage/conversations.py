"""Where a person is in a flow, kept in the database with the message that moved it.

Redis holds the same conversation as a cache (storage.state); when Redis has none — a
restart with persistence off, a flush — the dialog reads it from here, so a person who
was asked for their question and then lost Redis is still asked for their question, and
their next text becomes one (no text is ever stored without reaching a person).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.clock import now
from storage.models import Conversation
from storage.state import CONVERSATION_TTL_S

TTL = timedelta(seconds=CONVERSATION_TTL_S)  # as in Redis: a day idle, and it is forgotten


async def load(session: AsyncSession, user: str) -> dict[str, Any]:
    row = (
        await session.execute(
            select(col(Conversation.state), col(Conversation.updated_at)).where(
                col(Conversation.user) == user
            )
        )
    ).first()
    if row is None or row.updated_at < now() - TTL:
        return {}
    state = json.loads(row.state)
    return state if isinstance(state, dict) else {}


async def save(session: AsyncSession, user: str, state: dict[str, Any]) -> None:
    """Keep `state` as the user's conversation, in the caller's transaction."""
    if not state:
        await session.execute(delete(Conversation).where(col(Conversation.user) == user))
        return
    values = {"user": user, "state": json.dumps(state, ensure_ascii=False), "updated_at": now()}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(Conversation).values(**values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Conversation.user],
            set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
        )
    )
