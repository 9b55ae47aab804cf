"""The audit log: hash chains per case plus `global`, verify, tampering, anchors, concurrency.

Tampering is done the way a rogue DBA would: the append-only triggers are dropped
(SQLite) or disabled (PostgreSQL; the tests connect as superuser) and then rows are
edited, removed or reordered with plain SQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import jobs
from bot.core.clock import say_time
from bot.core.events import Inbound
from bot.dialog import dispatch
from bot.dialog.deps import Deps
from bot.fakes.wechat.callbacks import media_xml
from storage import audit, state
from storage import db as database
from storage.models import AuditEvent, Message, Outbox
from tests.conftest import CASE_NUMBER, REDIS_URL
from tests.world import JUDGE_WX, LITIGANT, World, ask, bind_judge, mst_in_process, verify_litigant

CASE_A = 101
CASE_B = 202


# -- helpers -------------------------------------------------------------------------------


async def add(
    db: database.Database, case_id: int | None, n: int, *, actor: str = "clerk"
) -> list[AuditEvent]:
    """`n` events on one chain, each in its own transaction (as the handlers write them)."""
    out: list[AuditEvent] = []
    for i in range(n):
        async with db.transaction() as s:
            out.append(
                await audit.append(
                    s,
                    actor=actor,
                    action="note",
                    subject=f"item {i}",
                    case_id=case_id,
                    payload={"i": i, "text": f"第{i}条"},
                )
            )
    return out


async def rows(db: database.Database, chain: str) -> list[AuditEvent]:
    async with db.sessions() as s:
        result = await s.execute(
            select(AuditEvent).where(AuditEvent.chain == chain).order_by(AuditEvent.seq)
        )
        return list(result.scalars())


async def all_rows(db: database.Database) -> list[AuditEvent]:
    async with db.sessions() as s:
        return list((await s.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars())


async def check(db: database.Database) -> audit.Verdict:
    async with db.sessions() as s:
        return await audit.verify(s)


async def anchors(db: database.Database) -> list[AuditEvent]:
    async with db.sessions() as s:
        result = await s.execute(
            select(AuditEvent)
            .where(AuditEvent.chain == audit.GLOBAL_CHAIN, AuditEvent.action == audit.ANCHOR)
            .order_by(AuditEvent.seq)
        )
        return list(result.scalars())


async def take_anchor(db: database.Database) -> AuditEvent | None:
    async with db.transaction() as s:
        return await audit.anchor(s)


def assert_chain(events: list[AuditEvent], chain: str) -> None:
    """One unbroken chain: seq 1..n, each prev_hash the hash before it, each hash recomputable."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    prev = audit.GENESIS
    for e in events:
        assert e.chain == chain
        assert e.prev_hash == prev, f"#{e.seq} does not link"
        assert audit.compute_hash(e) == e.hash, f"#{e.seq} hash mismatch"
        prev = e.hash


def names_event(problem: str, ev: AuditEvent, seq: int | None = None) -> bool:
    """The problem is about `ev` (at position `seq`, by default where it was written)."""
    return f"event id={ev.id} ({ev.chain} #{ev.seq if seq is None else seq}," in problem


@asynccontextmanager
async def rogue(db: database.Database) -> AsyncIterator[AsyncSession]:
    """A transaction with the append-only protection switched off."""
    async with db.transaction() as s:
        if db.dialect == "postgresql":
            await s.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
        else:
            await s.execute(text("DROP TRIGGER IF EXISTS audit_event_no_update"))
            await s.execute(text("DROP TRIGGER IF EXISTS audit_event_no_delete"))
        yield s


async def remove(db: database.Database, *ids: int | None) -> None:
    async with rogue(db) as s:
        await s.execute(delete(AuditEvent).where(AuditEvent.id.in_(ids)))  # type: ignore[union-attr]


async def edit(db: database.Database, ev_id: int | None, **values: Any) -> None:
    async with rogue(db) as s:
        await s.execute(update(AuditEvent).where(AuditEvent.id == ev_id).values(**values))


def second_redis(r: Redis) -> Redis:
    """Another client on the same server: a second process's view of Redis."""
    if REDIS_URL:
        return state.connect(REDIS_URL)
    # The stand-in keeps one in-memory server per (host, port); each connect() gets its own.
    where = r.connection_pool.connection_kwargs
    return fakeredis.FakeAsyncRedis(host=where["host"], port=where["port"], decode_responses=True)


# -- building chains -----------------------------------------------------------------------


def test_chain_names() -> None:
    assert audit.chain_for(None) == "global"
    assert audit.chain_for(7) == "case:7"
    assert audit.chain_for(0) == "case:0"
    assert audit.chain_for(7, "oStranger") == "case:7"  # a case's events: its chain, always
    # A person on no case: one of the shards of `global`, the same one every time.
    shard = audit.chain_for(None, "oStranger")
    assert shard == audit.chain_for(None, "oStranger")
    assert shard.startswith("global.") and 0 <= int(shard.split(".")[1]) < audit.GLOBAL_SHARDS
    strangers = {audit.chain_for(None, f"o{n:04d}") for n in range(400)}
    assert len(strangers) == audit.GLOBAL_SHARDS  # spread over all of them


async def test_strangers_messages_go_on_their_shard_and_anchors_cover_it(deps: Deps) -> None:
    """Messages of people bound to no case are chained per shard of `global` (so strangers
    writing at once do not queue for one lock); verify walks the shards and the anchor
    records their heads, so a removed tail of a shard is caught as a case chain's is."""
    users = ["oStrangerA", "oStrangerB", "oStrangerC"]
    for k, user in enumerate(users * 2):
        await dispatch.handle(deps, Inbound("wechat", user, "text", f"wx:{k}", text="你好"))
    shards = {user: audit.chain_for(None, user) for user in users}
    for user, chain in shards.items():
        events = await rows(deps.db, chain)
        assert_chain(events, chain)
        mine = [e for e in events if e.actor == user]
        assert [e.action for e in mine] == ["message.in", "message.in"]
    assert await rows(deps.db, "global") == []  # nothing of theirs on the anchor chain
    verdict = await check(deps.db)
    assert verdict.ok, verdict.problems

    anchor = await take_anchor(deps.db)
    assert anchor is not None
    heads = json.loads(anchor.payload)["heads"]
    assert set(shards.values()) <= set(heads)
    chain = shards["oStrangerA"]
    tail = (await rows(deps.db, chain))[-1]
    assert heads[chain] == [tail.seq, tail.hash]

    await remove(deps.db, tail.id)
    verdict = await check(deps.db)
    assert not verdict.ok
    assert any(p.startswith(f"{chain}: ") and "removed" in p for p in verdict.problems)


async def test_appends_build_one_chain_per_case_plus_global(deps: Deps) -> None:
    receipts: dict[int, str] = {}
    # Interleaved chains, some events several to a transaction.
    for round_ in range(3):
        async with deps.db.transaction() as s:
            for case_id in (CASE_A, None, CASE_B, CASE_A):
                ev = await audit.append(
                    s, actor="clerk", action="note", case_id=case_id, payload={"r": round_}
                )
                assert ev.id is not None
                receipts[ev.id] = ev.hash

    a = await rows(deps.db, "case:101")
    b = await rows(deps.db, "case:202")
    g = await rows(deps.db, "global")
    assert (len(a), len(b), len(g)) == (6, 3, 3)
    assert_chain(a, "case:101")
    assert_chain(b, "case:202")
    assert_chain(g, "global")
    assert {e.case_id for e in a} == {CASE_A}
    assert {e.case_id for e in g} == {None}
    assert a[0].prev_hash == audit.GENESIS

    # Every receipt handed out at append time is exactly what is stored and recomputed.
    stored = await all_rows(deps.db)
    assert len(stored) == len(receipts) == 12
    for e in stored:
        assert e.id is not None
        assert receipts[e.id] == e.hash == audit.compute_hash(e)
    assert len({e.hash for e in stored}) == 12

    verdict = await check(deps.db)
    assert verdict.ok, verdict.problems
    assert (verdict.events, verdict.chains, verdict.anchors) == (12, 3, 0)


async def test_a_rolled_back_savepoint_does_not_leave_a_gap_in_the_chain(deps: Deps) -> None:
    """Appends in one transaction chain on from the head they remember; a savepoint that
    is rolled back takes its events with it, and the next append must not chain on them."""
    from storage.models import Court

    async with deps.db.transaction() as s:
        await audit.append(s, actor="clerk", action="note", case_id=CASE_A)
        s.add(Court(name="某法院"))
        await s.flush()  # a flush between appends keeps what they remember
        await audit.append(s, actor="clerk", action="note", case_id=CASE_A)
        nested = await s.begin_nested()
        await audit.append(s, actor="clerk", action="dropped", case_id=CASE_A)
        await nested.rollback()
        await audit.append(s, actor="clerk", action="note", case_id=CASE_A)
    a = await rows(deps.db, "case:101")
    assert [e.seq for e in a] == [1, 2, 3]
    assert [e.action for e in a] == ["note"] * 3
    assert_chain(a, "case:101")
    assert (await check(deps.db)).ok


async def test_a_batch_writes_its_events_together_when_it_ends(deps: Deps) -> None:
    async with deps.db.transaction() as s:
        await audit.append(s, actor="clerk", action="before", case_id=CASE_A)
        async with audit.batch(s):
            inside = [
                await audit.append(s, actor="clerk", action=f"in {i}", case_id=c)
                for i, c in enumerate((CASE_A, None, CASE_A))
            ]
            assert all(e.id is None for e in inside)  # not written yet
            assert len(await all_rows_in(s)) == 1
        assert len(await all_rows_in(s)) == 4
        await audit.append(s, actor="clerk", action="after", case_id=CASE_A)
    a = await rows(deps.db, "case:101")
    assert [e.action for e in a] == ["before", "in 0", "in 2", "after"]
    assert [e.hash for e in a[1:3]] == [inside[0].hash, inside[2].hash]  # receipts hold
    assert_chain(a, "case:101")
    assert (await check(deps.db)).ok


async def test_a_batch_that_fails_writes_nothing(deps: Deps) -> None:
    with pytest.raises(RuntimeError):
        async with deps.db.transaction() as s, audit.batch(s):
            await audit.append(s, actor="clerk", action="lost", case_id=CASE_A)
            raise RuntimeError("the flow failed")
    await add(deps.db, CASE_A, 1)
    a = await rows(deps.db, "case:101")
    assert [(e.seq, e.action) for e in a] == [(1, "note")]


async def all_rows_in(s: AsyncSession) -> list[AuditEvent]:
    return list((await s.execute(select(AuditEvent))).scalars())


async def test_event_fields_are_stored_as_given(deps: Deps) -> None:
    async with deps.db.transaction() as s:
        ev = await audit.append(
            s,
            actor="x" * 100,
            action="case.code_issued",
            subject="y" * 200,
            case_id=CASE_A,
            payload={"b": 1, "a": "王某某"},
        )
    [row] = await rows(deps.db, "case:101")
    assert row.actor == "x" * 64  # truncated to the column, and hashed as stored
    assert row.subject == "y" * 128
    assert row.action == "case.code_issued"
    assert json.loads(row.payload) == {"a": "王某某", "b": 1}
    assert row.at == ev.at  # microseconds and UTC survive the round trip
    assert row.at.utcoffset() is not None
    assert audit.compute_hash(row) == ev.hash
    assert (await check(deps.db)).ok


async def test_verify_on_an_empty_log_is_ok(deps: Deps) -> None:
    verdict = await check(deps.db)
    assert verdict.ok
    assert (verdict.events, verdict.chains, verdict.anchors) == (0, 0, 0)


# -- the database refuses changes ------------------------------------------------------------


REFUSED = (
    "UPDATE audit_event SET actor = 'mallory'",
    "UPDATE audit_event SET payload = '{}' WHERE seq = 2",
    "DELETE FROM audit_event WHERE seq = 3",
    "DELETE FROM audit_event WHERE id > 0",
)


async def test_update_and_delete_are_refused(deps: Deps) -> None:
    before = [(e.id, e.actor, e.payload, e.hash) for e in await add(deps.db, CASE_A, 3)]
    for statement in REFUSED:
        with pytest.raises(DBAPIError, match="append-only"):
            async with deps.db.transaction() as s:
                await s.execute(text(statement))
    after = [(e.id, e.actor, e.payload, e.hash) for e in await rows(deps.db, "case:101")]
    assert after == before
    assert (await check(deps.db)).ok


async def test_emptying_the_table_is_refused(deps: Deps) -> None:
    """TRUNCATE on PostgreSQL; SQLite has none, and its DELETE-all shortcut is blocked too."""
    await add(deps.db, CASE_A, 2)
    statement = (
        "TRUNCATE audit_event" if deps.db.dialect == "postgresql" else "DELETE FROM audit_event"
    )
    with pytest.raises(DBAPIError, match="append-only"):
        async with deps.db.transaction() as s:
            await s.execute(text(statement))
    assert len(await rows(deps.db, "case:101")) == 2


async def test_appends_still_work_next_to_the_triggers(deps: Deps) -> None:
    await add(deps.db, CASE_A, 2)
    with pytest.raises(DBAPIError):
        async with deps.db.transaction() as s:
            await s.execute(text("DELETE FROM audit_event WHERE seq = 2"))
    await add(deps.db, CASE_A, 1)
    assert_chain(await rows(deps.db, "case:101"), "case:101")


# -- verify catches tampering ---------------------------------------------------------------


EDITS: list[dict[str, Any]] = [
    {"actor": "mallory"},
    {"payload": '{"i":1,"text":"改过的"}'},
    {"subject": "something else"},
    {"action": "note.deleted"},
    {"case_id": CASE_B},
    {"at": datetime(2020, 1, 1, 12, 0, 0).astimezone()},
]


async def test_verify_catches_an_edited_row(deps: Deps) -> None:
    """Each kind of edit on its own chain (#2 of 3); each is reported, and nothing else."""
    edited: list[AuditEvent] = []
    for n, changes in enumerate(EDITS):
        events = await add(deps.db, 1000 + n, 3)
        await edit(deps.db, events[1].id, **changes)
        edited.append(events[1])
    untouched = await add(deps.db, CASE_B, 3)

    verdict = await check(deps.db)
    assert verdict.events == 3 * len(EDITS) + 3
    assert len(verdict.problems) == len(EDITS), verdict.problems
    for ev, changes, problem in zip(edited, EDITS, verdict.problems, strict=True):
        assert names_event(problem, ev), (changes, problem)
        assert problem.endswith("content does not match its hash (edited)")
    assert not any(names_event(p, e) for p in verdict.problems for e in untouched)


async def test_verify_catches_an_edit_whose_hash_was_recomputed(deps: Deps) -> None:
    """Fixing up the edited row's own hash breaks the link from the row after it."""
    events = await add(deps.db, CASE_A, 4)
    [target] = [e for e in await rows(deps.db, "case:101") if e.seq == 2]
    target.payload = '{"forged":true}'
    await edit(deps.db, target.id, payload=target.payload, hash=audit.compute_hash(target))

    verdict = await check(deps.db)
    assert len(verdict.problems) == 1, verdict.problems
    assert names_event(verdict.problems[0], events[2])
    assert "does not link" in verdict.problems[0]


async def test_verify_catches_a_removed_middle_row(deps: Deps) -> None:
    events = await add(deps.db, CASE_A, 5)
    await add(deps.db, None, 2)
    await remove(deps.db, events[2].id)

    verdict = await check(deps.db)
    assert len(verdict.problems) == 1, verdict.problems
    [problem] = verdict.problems
    assert names_event(problem, events[3])
    assert "#3..#3 removed" in problem


async def test_verify_catches_a_removed_first_row(deps: Deps) -> None:
    events = await add(deps.db, CASE_A, 3)
    await remove(deps.db, events[0].id)

    [problem] = (await check(deps.db)).problems
    assert names_event(problem, events[1])
    assert "#1..#1 removed" in problem


async def test_verify_catches_swapped_sequence_numbers(deps: Deps) -> None:
    """Reordering by renumbering: rows #2 and #3 trade places."""
    events = await add(deps.db, CASE_A, 4)
    two, three = events[1], events[2]
    async with rogue(deps.db) as s:
        for ev_id, seq in ((two.id, -1), (three.id, 2), (two.id, 3)):
            await s.execute(update(AuditEvent).where(AuditEvent.id == ev_id).values(seq=seq))

    problems = (await check(deps.db)).problems
    # The old #3, now at #2, neither links to #1 nor matches its hash (which covers seq);
    # the old #2, now at #3, does not link to it; and #4 no longer links to what precedes it.
    assert any(names_event(p, three, 2) and "does not link" in p for p in problems), problems
    assert any(names_event(p, three, 2) and "edited" in p for p in problems), problems
    assert any(names_event(p, two, 3) and "does not link" in p for p in problems), problems
    assert any(names_event(p, events[3]) and "does not link" in p for p in problems), problems
    assert not any(names_event(p, events[0]) for p in problems)


async def test_verify_catches_swapped_row_contents(deps: Deps) -> None:
    """Reordering by swapping everything but the position: #2 and #3 trade contents."""
    events = await add(deps.db, CASE_A, 4)
    cols = ("prev_hash", "hash", "actor", "action", "subject", "at", "payload")
    two = {c: getattr(events[1], c) for c in cols}
    three = {c: getattr(events[2], c) for c in cols}
    async with rogue(deps.db) as s:
        await s.execute(update(AuditEvent).where(AuditEvent.id == events[1].id).values(**three))
        await s.execute(update(AuditEvent).where(AuditEvent.id == events[2].id).values(**two))

    verdict = await check(deps.db)
    assert not verdict.ok
    assert any(names_event(p, events[1]) for p in verdict.problems), verdict.problems
    assert any(names_event(p, events[2]) for p in verdict.problems), verdict.problems
    assert all(not names_event(p, events[0]) for p in verdict.problems)


async def test_a_removed_tail_without_an_anchor_goes_unnoticed(deps: Deps) -> None:
    """Why anchors exist: a chain cut short is still a valid chain."""
    events = await add(deps.db, CASE_A, 5)
    await remove(deps.db, events[3].id, events[4].id)
    verdict = await check(deps.db)
    assert verdict.ok
    assert verdict.events == 3


async def test_the_anchor_catches_a_removed_tail(deps: Deps) -> None:
    a = await add(deps.db, CASE_A, 5)
    await add(deps.db, CASE_B, 5)
    anchor = await take_anchor(deps.db)
    assert anchor is not None
    b_late = await add(deps.db, CASE_B, 2)  # after the anchor: #6, #7

    # Cut both tails: A's anchored #4..#5, and B's unanchored #6..#7.
    await remove(deps.db, a[3].id, a[4].id, b_late[0].id, b_late[1].id)

    verdict = await check(deps.db)
    assert verdict.anchors == 1
    assert len(verdict.problems) == 1, verdict.problems
    [problem] = verdict.problems
    assert problem.startswith("case:101: ")
    assert f"anchor id={anchor.id} saw #5" in problem
    assert "ends at #3" in problem
    assert "#4..#5 removed" in problem


async def test_the_anchor_catches_a_whole_chain_removed(deps: Deps) -> None:
    events = await add(deps.db, CASE_A, 2)
    anchor = await take_anchor(deps.db)
    assert anchor is not None
    await remove(deps.db, *(e.id for e in events))

    [problem] = (await check(deps.db)).problems
    assert f"anchor id={anchor.id} saw #2" in problem
    assert "#1..#2 removed" in problem


async def test_the_anchor_catches_a_consistently_rewritten_tail(deps: Deps) -> None:
    """Rewriting #3..#4 with every hash recomputed leaves a valid chain; the anchor
    still remembers the original head."""
    await add(deps.db, CASE_A, 4)
    anchor = await take_anchor(deps.db)
    assert anchor is not None

    chain = await rows(deps.db, "case:101")
    async with rogue(deps.db) as s:
        prev = chain[1].hash
        for ev in chain[2:]:
            ev.actor = "mallory"
            ev.prev_hash = prev
            ev.hash = audit.compute_hash(ev)
            prev = ev.hash
            await s.execute(
                update(AuditEvent)
                .where(AuditEvent.id == ev.id)
                .values(actor=ev.actor, prev_hash=ev.prev_hash, hash=ev.hash)
            )
    assert_chain(await rows(deps.db, "case:101"), "case:101")  # locally consistent

    [problem] = (await check(deps.db)).problems
    assert problem == f"case:101 #4: differs from what anchor id={anchor.id} recorded"


MANGLED = ("not json", "[1, 2]", '{"heads": [1, 2]}', '{"heads": {"case:101": 5}}')


async def test_verify_reports_mangled_anchors_instead_of_crashing(deps: Deps) -> None:
    """Neither verify nor the next anchor chokes on an anchor whose payload was mangled."""
    mangled: list[AuditEvent] = []
    for payload in MANGLED:
        await add(deps.db, CASE_A, 1)
        anchor = await take_anchor(deps.db)
        assert anchor is not None
        await edit(deps.db, anchor.id, payload=payload)
        mangled.append(anchor)

    verdict = await check(deps.db)
    assert verdict.anchors == len(MANGLED)
    assert len(verdict.problems) == len(MANGLED), verdict.problems
    for anchor, problem in zip(mangled, verdict.problems, strict=True):
        assert names_event(problem, anchor), problem
        assert "edited" in problem


async def test_verify_reports_a_forged_anchor_with_a_valid_hash(deps: Deps) -> None:
    await add(deps.db, CASE_A, 2)
    anchor = await take_anchor(deps.db)
    assert anchor is not None
    anchor.payload = "garbage"
    await edit(deps.db, anchor.id, payload=anchor.payload, hash=audit.compute_hash(anchor))

    [problem] = (await check(deps.db)).problems
    assert names_event(problem, anchor)
    assert "unreadable anchor payload" in problem


async def test_verify_stops_at_the_problem_limit(deps: Deps) -> None:
    events = await add(deps.db, CASE_A, 6)
    async with rogue(deps.db) as s:
        await s.execute(
            update(AuditEvent).where(AuditEvent.chain == "case:101").values(actor="mallory")
        )
    async with deps.db.sessions() as s:
        verdict = await audit.verify(s, limit_problems=3)
    assert len(verdict.problems) == 3
    assert names_event(verdict.problems[0], events[0])


# -- anchors ---------------------------------------------------------------------------------


async def test_anchor_records_moved_heads_and_only_when_something_moved(deps: Deps) -> None:
    assert await take_anchor(deps.db) is None  # empty log: nothing to anchor
    await add(deps.db, None, 2)
    assert await take_anchor(deps.db) is None  # global events alone are not anchored

    a = await add(deps.db, CASE_A, 3)
    b = await add(deps.db, CASE_B, 1)
    first = await take_anchor(deps.db)
    assert first is not None
    assert (first.chain, first.action, first.actor) == ("global", audit.ANCHOR, "system")
    assert json.loads(first.payload) == {
        "heads": {"case:101": [3, a[-1].hash], "case:202": [1, b[-1].hash]}
    }
    assert await take_anchor(deps.db) is None  # nothing moved since

    a2 = await add(deps.db, CASE_A, 1)
    second = await take_anchor(deps.db)
    assert second is not None
    assert second.seq == first.seq + 1
    assert second.prev_hash == first.hash
    assert json.loads(second.payload)["heads"]["case:101"] == [4, a2[0].hash]
    assert await take_anchor(deps.db) is None

    assert [e.id for e in await anchors(deps.db)] == [first.id, second.id]
    verdict = await check(deps.db)
    assert verdict.ok, verdict.problems
    assert verdict.anchors == 2


async def test_anchor_audit_job_records_an_anchor(deps: Deps) -> None:
    assert await jobs.anchor_audit(deps) is False
    await add(deps.db, CASE_A, 2)
    assert await jobs.anchor_audit(deps) is True
    assert await jobs.anchor_audit(deps) is False
    [anchor] = await anchors(deps.db)
    assert list(json.loads(anchor.payload)["heads"]) == ["case:101"]
    # The lock is released afterwards.
    assert await deps.redis.exists(f"{state.PREFIX}lock:audit-anchor") == 0


async def test_anchor_audit_job_skips_while_another_process_holds_the_lock(deps: Deps) -> None:
    await add(deps.db, CASE_A, 2)
    other = second_redis(deps.redis)
    try:
        async with state.try_lock(other, "audit-anchor") as got:
            assert got
            assert await jobs.anchor_audit(deps) is False
            assert await anchors(deps.db) == []
        assert await jobs.anchor_audit(deps) is True
    finally:
        await other.aclose()
    assert len(await anchors(deps.db)) == 1


async def test_concurrent_anchor_jobs_record_at_most_one_anchor(deps: Deps) -> None:
    await add(deps.db, CASE_A, 3)
    await add(deps.db, CASE_B, 3)
    # A second "process": its own engine and its own Redis connection.
    other = Deps(
        settings=deps.settings,
        db=database.connect(deps.settings.database_url),
        redis=second_redis(deps.redis),
    )
    try:
        # Warm both pools so the jobs really overlap instead of queueing behind connects.
        await asyncio.gather(*(db.ping() for db in (deps.db, other.db) for _ in range(2)))
        await asyncio.gather(other.redis.ping(), deps.redis.ping())
        results = await asyncio.gather(
            jobs.anchor_audit(deps),
            jobs.anchor_audit(other),
            jobs.anchor_audit(deps),
            jobs.anchor_audit(other),
        )
    finally:
        await other.redis.aclose()
        await other.db.dispose()
    assert results.count(True) == 1, results
    assert len(await anchors(deps.db)) == 1
    assert (await check(deps.db)).ok


# -- concurrency -----------------------------------------------------------------------------


async def _append_many(dbs: list[database.Database], case_id: int | None, n: int) -> None:
    async def one(i: int) -> AuditEvent:
        async with dbs[i % len(dbs)].transaction() as s:
            return await audit.append(
                s, actor=f"worker{i}", action="note", case_id=case_id, payload={"i": i}
            )

    receipts = await asyncio.gather(*(one(i) for i in range(n)))
    assert sorted(e.seq for e in receipts) == list(range(1, n + 1))


async def _assert_one_chain_of(db: database.Database, chain: str, n: int) -> None:
    events = await rows(db, chain)
    assert len(events) == n
    assert_chain(events, chain)
    assert sorted(json.loads(e.payload)["i"] for e in events) == list(range(n))
    async with db.sessions() as s:
        dup = await s.execute(
            select(AuditEvent.seq)
            .where(AuditEvent.chain == chain)
            .group_by(AuditEvent.seq)
            .having(func.count() > 1)
        )
        assert dup.all() == []
    verdict = await check(db)
    assert verdict.ok, verdict.problems


async def test_concurrent_appends_to_one_chain_from_many_tasks(deps: Deps) -> None:
    await _append_many([deps.db], CASE_A, 30)
    await _assert_one_chain_of(deps.db, "case:101", 30)


async def test_concurrent_appends_from_two_engines(deps: Deps) -> None:
    """Two engines on one database behave like two processes."""
    second = database.connect(deps.settings.database_url)
    try:
        await asyncio.gather(
            _append_many([deps.db, second], CASE_A, 24),
            _append_many([second, deps.db], None, 10),
        )
    finally:
        await second.dispose()
    await _assert_one_chain_of(deps.db, "case:101", 24)
    await _assert_one_chain_of(deps.db, "global", 10)


# -- export ----------------------------------------------------------------------------------


async def test_export_case_returns_the_cases_events_in_order(deps: Deps) -> None:
    written: list[AuditEvent] = []
    for i in range(4):
        async with deps.db.transaction() as s:
            written.append(
                await audit.append(
                    s,
                    actor="judge",
                    action=f"step{i}",
                    subject=f"#{i}",
                    case_id=CASE_A,
                    payload={"n": i, "名": "王某某"},
                )
            )
            await audit.append(s, actor="judge", action="other", case_id=CASE_B)
            await audit.append(s, actor="system", action="global")

    async with deps.db.sessions() as s:
        exported = await audit.export_case(s, CASE_A)
        unknown = await audit.export_case(s, 999)
    assert unknown == []
    assert [e["seq"] for e in exported] == [1, 2, 3, 4]
    assert [e["action"] for e in exported] == ["step0", "step1", "step2", "step3"]
    assert [e["hash"] for e in exported] == [e.hash for e in written]
    assert exported[0]["prev_hash"] == audit.GENESIS
    for before, after in zip(exported, exported[1:], strict=False):
        assert after["prev_hash"] == before["hash"]
    first = exported[0]
    assert first["actor"] == "judge"
    assert first["subject"] == "#0"
    assert first["payload"] == {"n": 0, "名": "王某某"}
    assert datetime.fromisoformat(first["at"]) == written[0].at
    assert set(first) == {
        "seq",
        "at",
        "actor",
        "action",
        "subject",
        "payload",
        "prev_hash",
        "hash",
    }
    json.dumps(exported, ensure_ascii=False)  # serializable as JSON Lines


# -- messages against the digests their events recorded -------------------------------------


async def stored(db: database.Database, text_: str) -> Message:
    """The one message row holding exactly `text_`."""
    async with db.sessions() as s:
        return (await s.execute(select(Message).where(Message.content == text_))).scalar_one()


async def edit_message(db: database.Database, message_id: int | None, **values: Any) -> None:
    """What a rogue DBA does to the message table (it has no triggers to switch off)."""
    async with db.transaction() as s:
        await s.execute(update(Message).where(Message.id == message_id).values(**values))


async def erase(w: World, cli_env: dict[str, str], tmp_path: Path, *args: str) -> Any:
    return await mst_in_process(cli_env, tmp_path, "audit", "erase", *args)


async def verify_json(cli_env: dict[str, str], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    # --full: these tests read whole-log figures (a second plain verify is incremental).
    run = await mst_in_process(cli_env, tmp_path, "audit", "verify", "--full", "--json")
    return run.code, json.loads(run.out)


QUESTION = "请问12月10日开庭吗？"


def test_the_digest_is_the_one_the_dialog_records() -> None:
    for said in ("", "请问12月10日开庭吗？", "#1 12月10日上午九点"):
        assert audit.content_digest(said) == dispatch.content_digest(said)


async def test_an_untouched_world_is_intact_message_by_message(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    number = await ask(w, QUESTION)
    await w.say(JUDGE_WX, f"#{number} 12月10日上午九点开庭。")

    verdict = await check(w.deps.db)
    assert verdict.ok, verdict.problems
    assert verdict.messages >= 8  # every message in and out, and the judge's answer
    assert (verdict.not_covered, verdict.unrecorded) == (0, 0)
    assert verdict.edited == verdict.deleted == verdict.erased == []

    run = await mst_in_process(cli_env, tmp_path, "audit", "verify")
    assert run.code == 0, run.err
    said = run.out.strip().splitlines()
    assert said[0] == f"消息：{verdict.messages} 条已与审计记录核对。"
    assert said[-1].startswith("audit log intact: ")  # the verdict stays the last line
    code, report = await verify_json(cli_env, tmp_path)
    assert code == 0 and report["intact"] is True and report["problems"] == []
    assert report["messages"] == {
        "checked": verdict.messages,
        "not_covered": 0,
        "unrecorded": 0,
        "edited": [],
        "deleted": [],
        "erased": [],
    }


async def test_an_edited_litigant_message_is_named(world: World) -> None:
    w = world
    await verify_litigant(w)
    await ask(w, QUESTION)
    msg = await stored(w.deps.db, QUESTION)
    assert (await check(w.deps.db)).ok

    await edit_message(w.deps.db, msg.id, content="请问12月11日开庭吗？")

    verdict = await check(w.deps.db)
    assert not verdict.ok
    [found] = verdict.edited
    assert (found.message_id, found.state, found.case_id) == (msg.id, "edited", w.case["case_id"])
    assert found.event.startswith(f"case:{w.case['case_id']} #") and "message.in" in found.event
    [problem] = verdict.problems
    assert problem.startswith(f"message id={msg.id}: ") and problem.endswith("(edited)")
    assert f"event id={found.event_id} " in problem
    assert verdict.deleted == verdict.erased == []
    # A receipt's check (its case's chain alone) sees it too.
    async with w.deps.db.sessions() as s:
        assert not (await audit.verify(s, chain=f"case:{w.case['case_id']}")).ok


async def test_a_swapped_or_removed_attachment_is_named(world: World) -> None:
    """A photo a litigant sent is covered by its media id's digest: pointing the message at
    another picture, or removing it, is named; the text alone untouched is not enough."""
    w = world
    await verify_litigant(w)
    await w.send(media_xml(LITIGANT, "image", PicUrl="http://p/1.jpg", MediaId="MEDIA_photo_1"))
    async with w.deps.db.sessions() as s:
        photo = (
            await s.execute(select(Message).where(Message.media_id == "MEDIA_photo_1"))  # type: ignore[arg-type]
        ).scalar_one()
    assert (await check(w.deps.db)).ok
    for swapped in ("MEDIA_another_photo", None):
        await edit_message(w.deps.db, photo.id, media_id=swapped)
        verdict = await check(w.deps.db)
        [found] = verdict.edited
        assert found.message_id == photo.id
        [problem] = verdict.problems
        assert problem.startswith(f"message id={photo.id}: its attachment is not the one")
    await edit_message(w.deps.db, photo.id, media_id="MEDIA_photo_1")
    assert (await check(w.deps.db)).ok


async def test_an_edited_judges_answer_is_named(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The issue's case: the judge's "12月10日" made "12月11日" in the message table."""
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    number = await ask(w, "什么时候开庭？")
    await w.say(JUDGE_WX, f"#{number} 12月10日上午九点开庭。")
    async with w.deps.db.sessions() as s:
        answer = (
            await s.execute(select(Message).where(Message.staff_id.is_not(None)))  # type: ignore[union-attr]
        ).scalar_one()
    assert "12月10日" in answer.content

    await edit_message(w.deps.db, answer.id, content=answer.content.replace("10日", "11日"))

    verdict = await check(w.deps.db)
    [found] = verdict.edited
    assert (found.message_id, found.case_id) == (answer.id, w.case["case_id"])
    assert found.event.endswith(", ticket.answered")
    assert any(p.startswith(f"message id={answer.id}: ") for p in verdict.problems)

    run = await mst_in_process(cli_env, tmp_path, "audit", "verify")
    assert run.code == 1
    assert f"message id={answer.id}: " in run.err.splitlines()[0]
    assert "被改动 1 条" in run.out
    assert (
        f"消息 {answer.id}（{CASE_NUMBER}，" in run.out and "内容与审计记录中的摘要不符" in run.out
    )
    assert say_time(found.at) in run.out  # when it was recorded, in the court's time zone
    code, report = await verify_json(cli_env, tmp_path)
    assert code == 1 and report["intact"] is False
    [edited] = report["messages"]["edited"]
    assert edited["message_id"] == answer.id and edited["case_number"] == CASE_NUMBER
    assert edited["event_id"] == found.event_id and edited["recorded_at"].endswith("+08:00")

    # The judge's own message (`#n …`, recorded on its way in) is covered as well.
    said = await stored(w.deps.db, f"#{number} 12月10日上午九点开庭。")
    await edit_message(w.deps.db, said.id, content=f"#{number} 12月11日上午九点开庭。")
    assert [f.message_id for f in (await check(w.deps.db)).edited] == sorted([answer.id, said.id])


async def test_a_deleted_message_is_named(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    w = world
    await verify_litigant(w)
    await ask(w, QUESTION)
    msg = await stored(w.deps.db, QUESTION)
    async with w.deps.db.transaction() as s:
        await s.execute(delete(Message).where(Message.id == msg.id))

    verdict = await check(w.deps.db)
    [found] = verdict.deleted
    assert (found.message_id, found.state, found.case_id) == (msg.id, "deleted", w.case["case_id"])
    [problem] = verdict.problems
    assert problem.startswith(f"message id={msg.id}: ") and problem.endswith("(deleted)")
    assert verdict.edited == []

    run = await mst_in_process(cli_env, tmp_path, "audit", "verify")
    assert run.code == 1
    assert "被删除的消息：" in run.out and f"消息 {msg.id}（{CASE_NUMBER}，" in run.out


async def test_a_message_inserted_outside_the_record_is_named(world: World) -> None:
    """A forged message (a row no event records) fails verify, however plausible it looks."""
    w = world
    await verify_litigant(w)
    await ask(w, QUESTION)
    msg = await stored(w.deps.db, QUESTION)
    async with w.deps.db.transaction() as s:
        forged = Message(
            direction="out",
            channel="wechat",
            openid=msg.openid,
            msg_type="text",
            content="法官：您的案件已撤诉。",
            case_id=msg.case_id,
            created_at=msg.created_at,
        )
        s.add(forged)
        await s.flush()
        forged_id = forged.id
    verdict = await check(w.deps.db)
    assert not verdict.ok and verdict.unrecorded == 1
    assert verdict.problems == [
        f"message id={forged_id}: no event records it (inserted outside the record)"
    ]


async def test_an_erased_message_is_reported_erased_not_tampered(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    w = world
    await verify_litigant(w)
    await ask(w, QUESTION)
    msg = await stored(w.deps.db, QUESTION)

    run = await erase(
        w, cli_env, tmp_path, "--message", str(msg.id), "--reason", "当事人申请删除个人信息",
        "--by", "李书记员", "--json",
    )  # fmt: skip
    assert run.code == 0, run.err
    done = json.loads(run.out)
    assert done["message_id"] == msg.id and done["case_number"] == CASE_NUMBER
    assert (done["by"], done["reason"]) == ("李书记员", "当事人申请删除个人信息")
    assert done["sha256"] == audit.content_digest(QUESTION)
    async with w.deps.db.sessions() as s:
        row = await s.get(Message, msg.id)
        [event] = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == audit.ERASED))
        ).scalars()
    assert row is not None and (row.content, row.media_id) == ("", None)
    assert (event.subject, event.case_id, event.hash) == (
        f"message:{msg.id}",
        w.case["case_id"],
        done["receipt"],
    )
    payload = json.loads(event.payload)
    assert payload["sha256"] == done["sha256"] and payload["by"] == "李书记员"
    assert payload["reason"] == "当事人申请删除个人信息" and payload["message_id"] == msg.id

    verdict = await check(w.deps.db)
    assert verdict.ok, verdict.problems
    [found] = verdict.erased
    assert (found.message_id, found.erased_by, found.reason) == (
        msg.id,
        "李书记员",
        "当事人申请删除个人信息",
    )
    assert verdict.edited == verdict.deleted == []

    shown = await mst_in_process(cli_env, tmp_path, "audit", "verify")
    assert shown.code == 0, shown.err
    assert "audit log intact" in shown.out and "依法删除 1 条" in shown.out
    assert found.erased_at is not None
    assert (
        f"消息 {msg.id}（{CASE_NUMBER}，" in shown.out
        and f"{say_time(found.erased_at)}，由 李书记员 依法删除，原因：当事人申请删除个人信息"
        in shown.out
    )
    code, report = await verify_json(cli_env, tmp_path)
    assert code == 0 and report["intact"] is True
    [listed] = report["messages"]["erased"]
    assert listed["message_id"] == msg.id and listed["erased_by"] == "李书记员"
    assert listed["erased_at"].endswith("+08:00") and listed["case_number"] == CASE_NUMBER

    # Blank is what the erasure left: text put back afterwards is an edit.
    await edit_message(w.deps.db, msg.id, content=QUESTION)
    verdict = await check(w.deps.db)
    assert [f.message_id for f in verdict.edited] == [msg.id] and verdict.erased == []
    assert "holds content again" in verdict.problems[0]


async def test_erasing_blanks_the_texts_quotes_in_notices(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The judge's notice quoted the litigant's words: the erasure blanks them there too
    (sent or not), and says how many; other notices are left as they were."""
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    long_question = (
        "我叫王某某，身份证号码是一一〇一〇一一九八〇，住在桃城区某某小区三号楼，请问开庭时间？"
    )
    await ask(w, long_question)
    msg = await stored(w.deps.db, long_question)

    async def quoting() -> list[str]:
        async with w.deps.db.sessions() as s:
            payloads = (await s.execute(select(Outbox.payload))).scalars().all()
        return [p for p in payloads if "王某某" in p]

    before = await quoting()
    assert before, "the judge's notice quotes the question"
    async with w.deps.db.sessions() as s:
        untouched = (
            await s.execute(
                select(Outbox.id, Outbox.payload).where(
                    ~Outbox.payload.contains("王某某")  # type: ignore[attr-defined]
                )
            )
        ).all()

    # The operator finds the message's id by the case and a few of its words.
    found = await mst_in_process(
        cli_env, tmp_path, "audit", "messages", "--case", CASE_NUMBER, "--text", "身份证"
    )
    assert found.code == 0, found.err
    [line] = found.out.splitlines()
    assert line.startswith(f"消息 {msg.id}  ") and "原告王**" in line and "我叫王某某" in line
    listed = await mst_in_process(
        cli_env, tmp_path, "audit", "messages", "--case", CASE_NUMBER, "--json"
    )
    rows = [json.loads(x) for x in listed.out.splitlines()]
    assert msg.id in [r["message_id"] for r in rows] and len(rows) > 1
    assert all(r["at"].endswith("+08:00") for r in rows)

    run = await erase(
        w, cli_env, tmp_path, "--message", str(msg.id), "--reason", "当事人申请删除个人信息",
        "--json",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert json.loads(run.out)["copies_blanked"] == len(before)
    after = await mst_in_process(
        cli_env, tmp_path, "audit", "messages", "--case", CASE_NUMBER, "--text", "身份证"
    )
    assert after.out == f"{CASE_NUMBER} 没有含“身份证”的消息。\n"
    assert await quoting() == []
    async with w.deps.db.sessions() as s:
        payloads = (await s.execute(select(Outbox.payload))).scalars().all()
        assert sum(audit.ERASED_WORDS in p for p in payloads) == len(before)
        still = (
            await s.execute(
                select(Outbox.id, Outbox.payload).where(
                    Outbox.id.in_([row.id for row in untouched])  # type: ignore[union-attr]
                )
            )
        ).all()
    assert sorted(still) == sorted(untouched)
    assert (await check(w.deps.db)).ok
    # What is still to be sent goes out with the words blanked, not stuck.
    await w.deliver()
    assert not any("王某某" in m for m in w.inbox(JUDGE_WX))


async def test_erasing_twice_or_an_unknown_message_is_refused(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    w = world
    await verify_litigant(w)
    await ask(w, QUESTION)
    msg = await stored(w.deps.db, QUESTION)
    first = await erase(w, cli_env, tmp_path, "--message", str(msg.id), "--reason", "依法删除")
    assert first.code == 0, first.err
    assert f"已删除消息 {msg.id}（{CASE_NUMBER}）的内容" in first.out and "admin" in first.out

    again = await erase(w, cli_env, tmp_path, "--message", str(msg.id), "--reason", "再删一次")
    assert again.code == 1
    assert again.out == ""
    assert f"消息 {msg.id} 已于" in again.err and "由 admin 删除" in again.err
    assert "不能再删除一次" in again.err

    unknown = await erase(w, cli_env, tmp_path, "--message", "99999", "--reason", "依法删除")
    assert unknown.code == 2 and "没有编号为 99999 的消息" in unknown.err
    blank = await erase(w, cli_env, tmp_path, "--message", str(msg.id), "--reason", "  ")
    assert blank.code == 2 and "--reason" in blank.err

    async with w.deps.db.sessions() as s:
        erasures = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == audit.ERASED))
        ).all()
    assert len(erasures) == 1
    verdict = await check(w.deps.db)
    assert verdict.ok and [f.message_id for f in verdict.erased] == [msg.id]


async def test_an_edit_is_not_laundered_by_erasing_the_message(world: World) -> None:
    """Erasure records the digest of what it blanked: an edit before it still shows."""
    w = world
    await verify_litigant(w)
    await ask(w, QUESTION)
    msg = await stored(w.deps.db, QUESTION)
    await edit_message(w.deps.db, msg.id, content="请问12月11日开庭吗？")
    assert msg.id is not None
    async with w.deps.db.transaction() as s:
        done = await audit.erase_message(s, msg.id, by="admin", reason="依法删除")
    assert done.sha256 == audit.content_digest(QUESTION)  # the original, as recorded

    verdict = await check(w.deps.db)
    [found] = verdict.edited
    assert found.message_id == msg.id and found.erased_by == "admin"
    assert "edited before it was erased" in verdict.problems[0]


async def test_an_answer_recorded_without_a_digest_is_not_covered_not_failed(
    deps: Deps, sample_case: dict[str, Any]
) -> None:
    """Answers stored before their event held a digest: reported as not covered; a row
    of theirs that is gone is still named."""
    case_id = sample_case["case_id"]
    async with deps.db.transaction() as s:
        old = Message(
            direction="out", openid="oX", msg_type="text", content="旧答复", case_id=case_id
        )
        s.add(old)
        await s.flush()
        await audit.append(
            s,
            actor="staff:zhangwei",
            action=audit.ANSWERED,
            subject="ticket:1",
            case_id=case_id,
            payload={"message_id": old.id, "first_reply": True},
        )
    verdict = await check(deps.db)
    assert verdict.ok and (verdict.not_covered, verdict.messages) == (1, 0)

    await edit_message(deps.db, old.id, content="改过的旧答复")
    assert (await check(deps.db)).ok  # nothing to compare it with

    async with deps.db.transaction() as s:
        await s.execute(delete(Message).where(Message.id == old.id))
    verdict = await check(deps.db)
    assert [f.message_id for f in verdict.deleted] == [old.id] and not verdict.ok


async def test_the_judge_reads_an_erased_message_as_erased(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    w = world
    await bind_judge(w)
    await verify_litigant(w)
    number = await ask(w, QUESTION)
    msg = await stored(w.deps.db, QUESTION)
    run = await erase(w, cli_env, tmp_path, "--message", str(msg.id), "--reason", "依申请删除")
    assert run.code == 0, run.err
    thread = await w.say(JUDGE_WX, f"#{number}")
    assert "（此条内容已依法删除）" in thread and QUESTION not in thread


def test_the_fast_hash_is_the_canonical_one() -> None:
    """compute_hash builds its JSON without sort_keys, for speed: it must stay byte for byte
    the canonical form every stored hash was made with."""
    at = datetime(2026, 12, 4, 8, 30, 1, 123456, tzinfo=UTC)
    for case_id, payload in [
        (None, "{}"),
        (7, '{"名":"王某某","t":"引号\\" \\\\ 和换行\\n"}'),
        (2**40, "\u2028\x00 \ud7ff emoji 😀"),
    ]:
        ev = SimpleNamespace(
            chain=audit.chain_for(case_id),
            seq=3,
            prev_hash="a" * 64,
            actor="judge:王法官",
            action="message.in",
            subject='message:"9"',
            case_id=case_id,
            at=at,
            payload=payload,
        )
        body = {
            "chain": ev.chain,
            "seq": ev.seq,
            "prev": ev.prev_hash,
            "actor": ev.actor,
            "action": ev.action,
            "subject": ev.subject,
            "case_id": ev.case_id,
            "at": "2026-12-04T08:30:01.123456Z",
            "payload": ev.payload,
        }
        expected = hashlib.sha256(audit.canonical(body).encode()).hexdigest()
        assert audit.compute_hash(ev) == expected
