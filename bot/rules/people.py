"""Who a person is, whichever channel they come through.

A channel names its users its own way: WeChat's Official Account an openid, the
mini-program another openid for the same person, WeCom a userid. Each is a ChannelIdentity
of one Person. `person_for` is asked for every message (bot.dialog.dispatch), so a person
already known costs one SELECT on the (channel, external_id) unique index; the first
message of someone new creates them, safely against a concurrent first message.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.core.clock import now
from storage.models import ChannelIdentity, Person, core_table

_PERSON = core_table(Person)
_IDENTITY = core_table(ChannelIdentity)

# Built once: the first runs for every message.
_FIND = select(_IDENTITY.c.person_id, _IDENTITY.c.unionid).where(
    _IDENTITY.c.channel == bindparam("channel"),
    _IDENTITY.c.external_id == bindparam("external_id"),
)
_BY_UNIONID = (
    select(_IDENTITY.c.person_id)
    .where(_IDENTITY.c.unionid == bindparam("unionid"), _IDENTITY.c.channel != bindparam("channel"))
    .order_by(_IDENTITY.c.id)
    .limit(1)
)
_SET_UNIONID = (
    update(_IDENTITY)
    .where(
        _IDENTITY.c.channel == bindparam("b_channel"),
        _IDENTITY.c.external_id == bindparam("b_external_id"),
        _IDENTITY.c.unionid.is_(None),
    )
    .values(unionid=bindparam("b_unionid"))
)
_NEW_PERSON = insert(_PERSON).returning(_PERSON.c.id)
_DROP_PERSON = delete(_PERSON).where(_PERSON.c.id == bindparam("person_id"))
# A concurrent first message of the same identity inserts nothing here instead of failing
# the flow (PostgreSQL waits for the other transaction, then sees its row; SQLite's writers
# queue, so the other's row is already there).
_NEW_IDENTITY = {
    name: dialect_insert(_IDENTITY)
    .on_conflict_do_nothing(index_elements=["channel", "external_id"])
    .returning(_IDENTITY.c.person_id)
    for name, dialect_insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}
_IDENTITIES = (
    select(_IDENTITY.c.channel, _IDENTITY.c.external_id)
    .where(_IDENTITY.c.person_id == bindparam("person_id"))
    .order_by(_IDENTITY.c.id)
)


async def person_for(
    session: AsyncSession, channel: str, external_id: str, *, unionid: str | None = None
) -> int:
    """The id of the person `channel` calls `external_id`, created with that identity on first
    sight, in the caller's transaction. With a `unionid` (WeChat's, the same for one person
    across the Official Account and mini-program of one 开放平台 account), a new identity
    joins the person another channel's identity with that unionid belongs to; a known
    identity without one is given it. Two people already created apart are not merged."""
    conn = await session.connection()
    key = {"channel": channel, "external_id": external_id}
    found = (await conn.execute(_FIND, key)).first()
    if found is not None:
        if unionid is not None and found.unionid is None:
            await conn.execute(
                _SET_UNIONID,
                {"b_channel": channel, "b_external_id": external_id, "b_unionid": unionid},
            )
        return int(found.person_id)
    return await _first_sight(conn, channel, external_id, unionid)


async def _first_sight(
    conn: AsyncConnection, channel: str, external_id: str, unionid: str | None
) -> int:
    """Create the identity (and its person, unless the unionid names one). If a concurrent
    transaction created it first, theirs stands and the person made here is taken back."""
    at = now()
    person_id: int | None = None
    if unionid is not None:
        person_id = (
            await conn.execute(_BY_UNIONID, {"unionid": unionid, "channel": channel})
        ).scalar()
    created = person_id is None
    if person_id is None:
        person_id = (await conn.execute(_NEW_PERSON, {"created_at": at})).scalar_one()
    row: dict[str, Any] = {
        "person_id": person_id,
        "channel": channel,
        "external_id": external_id,
        "unionid": unionid,
        "created_at": at,
    }
    inserted = (await conn.execute(_NEW_IDENTITY[conn.dialect.name], row)).scalar()
    if inserted is not None:
        return int(inserted)
    if created:
        await conn.execute(_DROP_PERSON, {"person_id": person_id})
    winner = (await conn.execute(_FIND, {"channel": channel, "external_id": external_id})).first()
    assert winner is not None  # the conflicting row is committed: this statement sees it
    return int(winner.person_id)


async def identities(session: AsyncSession, person_id: int) -> list[tuple[str, str]]:
    """The person's (channel, external_id) pairs, oldest first."""
    conn = await session.connection()
    rows = await conn.execute(_IDENTITIES, {"person_id": person_id})
    return [(channel, external_id) for channel, external_id in rows.all()]
