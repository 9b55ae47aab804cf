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

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.clock import now
from storage.models import Conversation, core_table
from storage.state import CONVERSATION_TTL_S

TTL = timedelta(seconds=CONVERSATION_TTL_S)  # as in Redis: a day idle, and it is forgotten

_TABLE = core_table(Conversation)


def _upsert(insert: Any) -> Any:
    stmt = insert(_TABLE)
    return stmt.on_conflict_do_update(
        index_elements=[_TABLE.c.user],
        set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
    )


# Built once per dialect, in Core: a flow that moves a step saves it with every message,
# and building an ORM upsert each time cost more than running it.
_UPSERT = {"postgresql": _upsert(pg_insert), "sqlite": _upsert(sqlite_insert)}
_FORGET = delete(_TABLE).where(_TABLE.c.user == bindparam("user"))


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
    conn = await session.connection()
    if not state:
        await conn.execute(_FORGET, {"user": user})
        return
    values = {"user": user, "state": json.dumps(state, ensure_ascii=False), "updated_at": now()}
    await conn.execute(_UPSERT[conn.dialect.name], values)
