"""Who a person is: one Person, many channel identities (bot.rules.people), the people
already known when the table came (migration 0008), and the desk's "staff X for party Y"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import func, insert, inspect, select, text
from sqlalchemy.engine import Connection

from bot.app.config import Settings
from bot.dialog.deps import Deps
from bot.rules import people
from storage import db as database
from storage.models import (
    Binding,
    Booking,
    Case,
    ChannelIdentity,
    Conversation,
    Court,
    MediationSlot,
    Message,
    Party,
    Person,
    Rating,
    Staff,
    Ticket,
    core_table,
)
from tests.world import LITIGANT, World, verify_litigant

T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


# -- the backfill: one person per WeChat openid already in the schema -------------------


@pytest.fixture
async def old_db(settings: Settings) -> AsyncIterator[database.Database]:
    """An empty database at revision 0007, the schema before people."""
    if settings.database_url.startswith("sqlite"):
        db = database.connect(f"sqlite+aiosqlite:///{settings.data_dir}/old.db")
    else:
        db = database.connect(settings.database_url)
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    await database.migrate(db, "0007")
    yield db
    await db.dispose()


async def _downgrade(db: database.Database, revision: str) -> None:
    def run(sync_conn: Connection) -> None:
        cfg = database.alembic_config(str(db.engine.url))
        cfg.attributes["connection"] = sync_conn
        command.downgrade(cfg, revision)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def _seed_openids(db: database.Database) -> None:
    """Openids in every table that holds one, some in several, one of another channel."""
    hour = timedelta(hours=1)
    async with db.transaction() as s:
        court = Court(name="法院")
        s.add(court)
        await s.flush()
        # The staff as the schema at 0007 has them (the model has grown since): its columns.
        table = core_table(Staff)
        old = {"court_id": court.id, "active": True, "created_at": T0}
        await s.execute(
            insert(table),
            [
                {**old, "username": "j", "name": "法官", "roles": "judge", "openid": "oStaff"},
                {**old, "username": "m", "name": "调解员", "roles": "mediator", "openid": None},
            ],
        )
        mediator = (await s.execute(select(Staff.id).where(Staff.username == "m"))).scalar_one()
        case = Case(court_id=court.id, case_number="(2026)1号", case_type="民事")
        s.add(case)
        await s.flush()
        party = Party(
            case_id=case.id,
            role="原告",
            name="王",
            phone_tail="1",
            phone_masked="1",
            phone_hash="h",
        )
        s.add(party)
        await s.flush()
        slot = MediationSlot(mediator_id=mediator, start_at=T0, end_at=T0 + hour, room_url="/room")
        s.add(slot)
        await s.flush()
        assert case.id and party.id and slot.id and court.id
        s.add(Binding(openid="oA", case_id=case.id, party_id=party.id, method="x", verified_at=T0))
        # The ticket as the schema at 0007 has it (the model has grown since): its columns.
        await s.execute(
            insert(core_table(Ticket)),
            [
                {
                    "case_id": case.id,
                    "court_id": court.id,
                    "kind": "question",
                    "status": "open",
                    "openid": "oA",
                    "created_at": T0 + hour,
                    "holder_since": T0 + hour,
                    "level": 0,
                }
            ],
        )
        s.add_all(
            [
                Message(direction="in", openid="oB", msg_type="text", created_at=T0 + 2 * hour),
                Message(direction="out", openid="oA", msg_type="text", created_at=T0 - hour),
                Message(direction="in", openid="oStaff", msg_type="text", created_at=T0 + hour),
                Message(
                    direction="in", channel="wecom", openid="zhangsan", msg_type="text"
                ),  # a WeCom userid: not a WeChat openid
            ]
        )
        s.add(Booking(slot_id=slot.id, case_id=case.id, party_id=party.id, openid="oC"))
        s.add(Rating(case_id=case.id, openid="oD", score=1))
        s.add(Conversation(user="oE", state="{}"))
        s.add(Conversation(user="oB", state="{}"))


async def _people(db: database.Database) -> dict[str, tuple[int, str, datetime]]:
    """external_id → (person id, channel, the person's created_at), checking that every
    person has exactly one identity and no name."""
    async with db.sessions() as s:
        rows = (
            await s.execute(
                select(
                    ChannelIdentity.external_id,
                    ChannelIdentity.person_id,
                    ChannelIdentity.channel,
                    Person.created_at,
                    Person.display_name,
                ).join(Person, Person.id == ChannelIdentity.person_id)
            )
        ).all()
        persons = (await s.execute(select(func.count()).select_from(Person))).scalar_one()
    assert persons == len(rows) == len({r.person_id for r in rows})
    assert all(r.display_name is None for r in rows)
    return {r.external_id: (r.person_id, r.channel, r.created_at) for r in rows}


async def test_the_migration_gives_every_known_openid_one_person(old_db: database.Database) -> None:
    await _seed_openids(old_db)
    await database.migrate(old_db)
    found = await _people(old_db)
    assert set(found) == {"oStaff", "oA", "oB", "oC", "oD", "oE"}  # not the WeCom userid
    assert {channel for _, channel, _ in found.values()} == {"wechat"}
    assert found["oA"][2] == T0 - timedelta(hours=1)  # first seen: the earliest row naming it
    assert found["oStaff"][2] == T0

    # Down and up again: the same people, once each.
    await _downgrade(old_db, "0007")
    async with old_db.engine.connect() as conn:
        tables = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert not {"person", "channel_identity"} & tables
    await database.migrate(old_db)
    again = await _people(old_db)
    assert {k: v[1:] for k, v in again.items()} == {k: v[1:] for k, v in found.items()}

    # A backfilled person is the one the dialog finds; nobody new is made.
    async with old_db.transaction() as s:
        assert await people.person_for(s, "wechat", "oA") == again["oA"][0]
        assert await people.identities(s, again["oA"][0]) == [("wechat", "oA")]
    assert len(await _people(old_db)) == 6

    # New rows get ids past the backfilled ones (PostgreSQL's sequences moved on).
    async with old_db.transaction() as s:
        fresh = await people.person_for(s, "wechat", "oNew")
    assert fresh > max(pid for pid, _, _ in again.values())


# -- person_for ----------------------------------------------------------------------------


async def _count(deps: Deps, model: type[Person] | type[ChannelIdentity]) -> int:
    async with deps.db.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def test_a_person_is_created_once_and_found_again(deps: Deps) -> None:
    async with deps.db.transaction() as s:
        first = await people.person_for(s, "wechat", "oOnce")
        assert await people.person_for(s, "wechat", "oOnce") == first
    async with deps.db.transaction() as s:
        assert await people.person_for(s, "wechat", "oOnce") == first
        other = await people.person_for(s, "wecom", "oOnce")  # another channel's id: another person
        assert other != first
        assert await people.identities(s, first) == [("wechat", "oOnce")]
    assert await _count(deps, Person) == 2 and await _count(deps, ChannelIdentity) == 2


async def test_a_unionid_joins_the_mini_program_to_the_wechat_person(deps: Deps) -> None:
    async with deps.db.transaction() as s:
        wechat = await people.person_for(s, "wechat", "oOA", unionid="uAlice")
        mini = await people.person_for(s, "miniprogram", "oMP", unionid="uAlice")
        assert mini == wechat
        assert await people.identities(s, wechat) == [("wechat", "oOA"), ("miniprogram", "oMP")]
        # Someone else's unionid: someone else.
        assert await people.person_for(s, "miniprogram", "oBob", unionid="uBob") != wechat
        # Known first without a unionid (the Official Account does not always give one):
        # given it later, a mini-program identity with it still finds them.
        carol = await people.person_for(s, "wechat", "oCarol")
        assert await people.person_for(s, "wechat", "oCarol", unionid="uCarol") == carol
        assert await people.person_for(s, "miniprogram", "oCarolMP", unionid="uCarol") == carol
    assert await _count(deps, Person) == 3


async def test_two_first_messages_at_once_make_one_person(deps: Deps) -> None:
    async def first_sight() -> int:
        async with deps.db.transaction() as s:
            return await people.person_for(s, "wechat", "oTwice")

    a, b = await asyncio.gather(first_sight(), first_sight())
    assert a == b
    assert await _count(deps, Person) == 1 and await _count(deps, ChannelIdentity) == 1


async def test_the_loser_of_a_first_sight_race_takes_the_winners_person(deps: Deps) -> None:
    """B looks while A's new identity is not committed yet (PostgreSQL: B then waits on A's
    row; SQLite: on A's write lock). B gets A's person and leaves no person of its own."""
    async with deps.db.transaction() as s:
        a = await people.person_for(s, "wechat", "oRace")
        b_task = asyncio.create_task(_person_in_own_transaction(deps, "oRace"))
        await asyncio.sleep(0.2)
        assert not b_task.done()
    assert await b_task == a
    # And the branch itself, as B would take it with the identity already there:
    async with deps.db.transaction() as s:
        conn = await s.connection()
        assert await people._first_sight(conn, "wechat", "oRace", None) == a
    assert await _count(deps, Person) == 1 and await _count(deps, ChannelIdentity) == 1


async def _person_in_own_transaction(deps: Deps, openid: str) -> int:
    async with deps.db.transaction() as s:
        return await people.person_for(s, "wechat", openid)


# -- the dialog ----------------------------------------------------------------------------


async def test_a_message_through_the_callback_leaves_the_litigants_identity(
    world: World,
) -> None:
    await verify_litigant(world)
    async with world.deps.db.sessions() as s:
        rows = (
            await s.execute(
                select(ChannelIdentity.person_id).where(
                    ChannelIdentity.channel == "wechat", ChannelIdentity.external_id == LITIGANT
                )
            )
        ).all()
        assert len(rows) == 1
        assert await people.identities(s, rows[0].person_id) == [("wechat", LITIGANT)]
