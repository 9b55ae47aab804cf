"""The `ask` scenario's world: one court, one judge with a bound WeChat, N cases with one
party each, and one verified litigant (a Binding) per case.

Written straight into a freshly migrated database with SQLAlchemy Core on the project's own
tables (storage.models) and engine (storage.db.connect), *before* `mst serve` starts. On
PostgreSQL+Redis each litigant's conversation is also put in Redis in the ask step
(storage.state's key and TTL), so their next text is a question. With SQLite the server's
Redis is in-process and cannot be written from here: the litigants enter the ask step by
typing their case code and then "1" (see bench.callback), which is what this seeds the
case codes for.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from datetime import date

from sqlalchemy import insert

from bot.core.clock import now
from qr import tokens
from storage import db as database
from storage import state
from storage.models import Binding, Case, CaseCode, Conversation, Court, Party, Staff

COURT = "衡水市桃城区人民法院"
JUDGE_OPENID = "oBenchJudge000000000000000001"
JUDGE_USERNAME = "bench_judge"


@dataclass(frozen=True)
class Litigant:
    openid: str
    case_id: int
    token: str  # the case code's token, typed as text to open the case (SQLite path)


@dataclass(frozen=True)
class World:
    judge_openid: str
    litigants: list[Litigant]


def litigant_openid(k: int) -> str:
    return f"oBenchL{k:07d}"


async def _seed(db_url: str, n: int) -> World:
    db = database.connect(db_url)
    stamp = now()
    try:
        async with db.engine.begin() as conn:
            court_id = (
                await conn.execute(
                    insert(Court.__table__).returning(Court.__table__.c.id), {"name": COURT}
                )
            ).scalar_one()
            judge_id = (
                await conn.execute(
                    insert(Staff.__table__).returning(Staff.__table__.c.id),
                    {
                        "username": JUDGE_USERNAME,
                        "name": "张伟",
                        "court_id": court_id,
                        "roles": "judge",
                        "team": "民一庭",
                        "openid": JUDGE_OPENID,
                        "active": True,
                        "created_at": stamp,
                    },
                )
            ).scalar_one()
            case_rows = [
                {
                    "court_id": court_id,
                    "case_number": f"(2026)冀1102民初{k + 1}号",
                    "case_type": "民事",
                    "cause": "买卖合同纠纷",
                    "judge_id": judge_id,
                    "filed_on": date(2026, 11, 2),
                    "created_at": stamp,
                    "updated_at": stamp,
                }
                for k in range(n)
            ]
            case_ids = await _insert_many(conn, Case, case_rows)
            party_rows = [
                {
                    "case_id": cid,
                    "role": "原告",
                    "name": "李秀兰",
                    "phone_tail": f"{k % 10000:04d}",
                    "phone_masked": f"138****{k % 10000:04d}",
                    "phone_hash": hashlib.sha256(f"bench-phone-{k}".encode()).hexdigest(),
                }
                for k, cid in enumerate(case_ids)
            ]
            party_ids = await _insert_many(conn, Party, party_rows)
            openids = [litigant_openid(k) for k in range(n)]
            await _insert_many(
                conn,
                Binding,
                [
                    {
                        "openid": oid,
                        "case_id": cid,
                        "party_id": pid,
                        "method": "assisted",
                        "verified_at": stamp,
                    }
                    for oid, cid, pid in zip(openids, case_ids, party_ids, strict=True)
                ],
            )
            # Each in the ask step, kept where the server keeps it (and caches it in Redis).
            await conn.execute(
                insert(Conversation.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "user": oid,
                        "state": json.dumps({"case_id": cid, "step": "ask"}),
                        "updated_at": stamp,
                    }
                    for oid, cid in zip(openids, case_ids, strict=True)
                ],
            )
            code_tokens = [tokens.new_token() for _ in case_ids]
            shorts: set[str] = set()
            while len(shorts) < n:
                shorts.add(tokens.new_short_code())
            await _insert_many(
                conn,
                CaseCode,
                [
                    {"case_id": cid, "token": tok, "short_code": short, "issued_at": stamp}
                    for cid, tok, short in zip(case_ids, code_tokens, sorted(shorts), strict=True)
                ],
            )
    finally:
        await db.dispose()
    return World(
        JUDGE_OPENID,
        [
            Litigant(oid, cid, tok)
            for oid, cid, tok in zip(openids, case_ids, code_tokens, strict=True)
        ],
    )


async def _insert_many(conn, model, rows):  # type: ignore[no-untyped-def]
    table = model.__table__
    result = await conn.execute(
        insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
    )
    return [int(i) for i in result.scalars()]


def seed_database(db_url: str, n: int) -> World:
    """The court, the judge, n cases/parties/bindings/codes. The server must not be running."""
    return asyncio.run(_seed(db_url, n))


def seed_redis(redis_url: str, world: World) -> int:
    """Each litigant in the ask step of their case (what handlers.ask.start leaves behind)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=30, socket_connect_timeout=5)
    try:
        pipe = client.pipeline(transaction=False)
        for lit in world.litigants:
            pipe.set(
                state.conversation_key(lit.openid),
                json.dumps({"case_id": lit.case_id, "step": "ask"}),
                ex=state.CONVERSATION_TTL_S,
            )
        return sum(bool(ok) for ok in pipe.execute())
    finally:
        client.close()


CHECK_SQL = {
    "tickets": "SELECT count(*) FROM ticket",
    "ticket_users": "SELECT count(DISTINCT openid) FROM ticket",
    "ticket_kinds": "SELECT count(*) FROM ticket WHERE kind <> 'question'",
    "outbox": "SELECT count(*) FROM outbox",
    "outbox_to_judge": f"SELECT count(*) FROM outbox WHERE recipient = '{JUDGE_OPENID}'",
    "questions": "SELECT count(*) FROM message WHERE direction = 'in' AND ticket_id IS NOT NULL",
}


async def _counts(db_url: str) -> dict[str, int]:
    from sqlalchemy import text

    db = database.connect(db_url)
    try:
        async with db.engine.connect() as conn:
            return {
                k: int((await conn.execute(text(q))).scalar_one()) for k, q in CHECK_SQL.items()
            }
    finally:
        await db.dispose()


def counts(db_url: str) -> dict[str, int]:
    """What the run left behind: tickets, the litigants holding them, outbox rows, questions."""
    return asyncio.run(_counts(db_url))
