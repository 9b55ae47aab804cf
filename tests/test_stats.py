"""`mst stats` counted by the database (bot.rules.stats.compute): the same figures as the
rows counted one by one in Python, as it was once done, over many kinds of ticket."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, insert, select
from sqlmodel import col

from bot.core.clock import now
from bot.dialog.dispatch import Deps
from bot.rules import stats
from bot.rules.deadlines import Deadlines
from storage.models import AuditEvent, Case, Court, Rating, Staff, Ticket

SATISFIED = (1, 2)


async def _by_rows(session: Any, scope: stats.Scope, deadlines: Deadlines) -> dict[str, Any]:
    """The figures as compute gave them before issue 20: every row into Python."""
    cases = stats._cases(scope).scalar_subquery()
    visitors = await session.scalar(
        select(func.count(func.distinct(col(AuditEvent.actor)))).where(
            col(AuditEvent.action) == "code.scanned",
            col(AuditEvent.case_id).in_(cases),
            *stats._period(col(AuditEvent.at), scope),
        )
    )
    in_scope = and_(
        col(Ticket.case_id).in_(stats._cases(scope).scalar_subquery()),
        *stats._period(col(Ticket.created_at), scope),
        *([col(Ticket.team) == scope.team] if scope.team else []),
    )
    rows = (
        await session.execute(
            select(
                col(Ticket.kind),
                col(Ticket.status),
                col(Ticket.first_reply_at),
                col(Ticket.due_at),
                col(Ticket.closed_at),
                col(Ticket.close_due_at),
            ).where(in_scope)
        )
    ).all()
    by_kind: dict[str, int] = {}
    by_status: dict[str, int] = {}
    for kind, status, *_ in rows:
        by_kind[kind] = by_kind.get(kind, 0) + 1
        by_status[status] = by_status.get(status, 0) + 1
    ticket_scores = [
        s
        for (s,) in (
            await session.execute(
                select(col(Rating.score))
                .join(Ticket, col(Ticket.id) == col(Rating.ticket_id))
                .where(in_scope)
            )
        ).all()
    ]
    all_scores = [
        s
        for (s,) in (
            await session.execute(
                select(col(Rating.score)).where(
                    col(Rating.case_id).in_(stats._cases(scope).scalar_subquery()),
                    *stats._period(col(Rating.created_at), scope),
                )
            )
        ).all()
    ]
    moment = now()
    due_rows = [(r[2], r[3]) for r in rows if r[3] is not None]
    judged = [(r, d) for r, d in due_rows if r is not None or d <= moment]
    close_rows = [(r[4], r[5]) for r in rows if r[5] is not None]
    close_judged = [(c, d) for c, d in close_rows if c is not None or d <= moment]
    return {
        "visitors": int(visitors or 0),
        "feedback": len(rows),
        "feedback_by_kind": dict(sorted(by_kind.items())),
        "feedback_by_status": dict(sorted(by_status.items())),
        "feedback_rated": len(ticket_scores),
        "feedback_satisfaction": stats.share(
            sum(1 for s in ticket_scores if s in SATISFIED), len(ticket_scores)
        ),
        "ratings": len(all_scores),
        "rating_satisfaction": stats.share(
            sum(1 for s in all_scores if s in SATISFIED), len(all_scores)
        ),
        "on_time_rate": stats.share(
            sum(1 for r, d in judged if r is not None and r <= d), len(judged)
        ),
        "on_time_judged": len(judged),
        "close_on_time_rate": stats.share(
            sum(1 for c, d in close_judged if c is not None and c <= d), len(close_judged)
        ),
        "close_on_time_judged": len(close_judged),
        "overdue_now": sum(1 for r, d in due_rows if r is None and d <= moment),
        "calendar_warnings": deadlines.calendar_warnings(),
    }


async def _fill(deps: Deps, n: int) -> datetime:
    """Two courts, judges, cases; `n` tickets of every shape (no deadline, due right now,
    answered exactly on time, a second late, never, closed or not), ratings of some of them
    and of the service, scans. Returns the moment the figures are taken at."""
    rnd = random.Random(20)
    moment = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # conftest's settled clock
    t0 = moment - timedelta(days=90)

    def maybe(base: datetime) -> datetime | None:
        return rnd.choice(
            [
                None,
                base,
                base + timedelta(seconds=1),
                base - timedelta(seconds=1),
                base + timedelta(hours=rnd.randint(1, 200)),
            ]
        )

    async with deps.db.transaction() as s:
        conn = await s.connection()
        await conn.execute(insert(Court), [{"id": 1, "name": "甲院"}, {"id": 2, "name": "乙院"}])
        await conn.execute(
            insert(Staff),
            [
                {
                    "id": i,
                    "username": f"j{i}",
                    "name": f"法官{i}",
                    "court_id": 1 + i % 2,
                    "roles": "judge",
                }
                for i in (1, 2, 3)
            ],
        )
        await conn.execute(
            insert(Case),
            [
                {
                    "id": i,
                    "court_id": 1 + i % 2,
                    "case_number": f"(2026)案{i}",
                    "case_type": "民事",
                    "judge_id": None if i % 5 == 0 else 1 + i % 3,
                }
                for i in range(1, 21)
            ],
        )
        tickets, ratings, scans = [], [], []
        for i in range(1, n + 1):
            created = t0 + timedelta(minutes=rnd.randint(0, 130 * 24 * 60))
            due = maybe(moment if rnd.random() < 0.2 else created + timedelta(days=2))
            close_due = maybe(moment if rnd.random() < 0.2 else created + timedelta(days=10))
            tickets.append(
                {
                    "id": i,
                    "case_id": rnd.randint(1, 20),
                    "court_id": 1,
                    "kind": rnd.choice(["question", "complaint", "asset_lead", "mediation"]),
                    "status": rnd.choice(["open", "answered", "closed"]),
                    "openid": f"u{i % 7}",
                    "team": rnd.choice([None, "集约接待", "第一庭"]),
                    "created_at": created,
                    "holder_since": created,
                    "due_at": due,
                    "close_due_at": close_due,
                    "first_reply_at": maybe(due) if due else maybe(created),
                    "closed_at": maybe(close_due) if close_due else None,
                }
            )
            if rnd.random() < 0.5:
                ratings.append(
                    {
                        "ticket_id": i,
                        "case_id": tickets[-1]["case_id"],
                        "openid": "u",
                        "score": rnd.randint(1, 3),
                        "created_at": created + timedelta(days=rnd.randint(0, 20)),
                    }
                )
        for j in range(n // 3):
            ratings.append(
                {
                    "ticket_id": None,
                    "case_id": rnd.randint(1, 20),
                    "openid": "v",
                    "score": rnd.randint(1, 3),
                    "created_at": t0 + timedelta(days=rnd.randint(0, 130)),
                }
            )
            scans.append(
                {
                    "chain": "bench",
                    "seq": j + 1,
                    "prev_hash": "",
                    "hash": f"{j:064x}",
                    "actor": f"u{rnd.randint(1, 30)}",
                    "action": "code.scanned",
                    "subject": "",
                    "case_id": rnd.randint(1, 20),
                    "at": t0 + timedelta(days=rnd.randint(0, 130)),
                    "payload": "{}",
                }
            )
        await conn.execute(insert(Ticket), tickets)
        await conn.execute(insert(Rating), ratings)
        await conn.execute(insert(AuditEvent), scans)
    return moment


async def test_counted_by_the_database_as_by_hand(deps: Deps, frozen_clock: Any) -> None:
    moment = await _fill(deps, 600)
    frozen_clock[0] = moment
    deadlines = Deadlines()
    d = moment - timedelta(days=40)
    scopes = [
        stats.Scope(),
        stats.Scope(court="甲院"),
        stats.Scope(court="乙院"),
        stats.Scope(court="无此院"),
        stats.Scope(judge="j1"),
        stats.Scope(team="集约接待"),
        stats.Scope(since=d, until=d + timedelta(days=30)),
        stats.Scope(since=d),
        stats.Scope(until=d),
        stats.Scope(court="甲院", judge="j2", since=d - timedelta(days=30), team="第一庭"),
        stats.Scope(since=moment + timedelta(days=1)),  # nothing at all: None, not 0
    ]
    async with deps.db.sessions() as s:
        for scope in scopes:
            assert await stats.compute(s, scope, deadlines) == await _by_rows(
                s, scope, deadlines
            ), scope
        everything = await stats.compute(s, stats.Scope(), deadlines)
    # The fill reaches every branch: judged and not, on time and late, overdue, rated.
    assert everything["feedback"] == 600
    assert 0 < everything["on_time_judged"] < 600 and everything["overdue_now"] > 0
    assert 0 < everything["close_on_time_judged"] < 600
    assert 0 < everything["feedback_rated"] < everything["ratings"]
    assert everything["visitors"] > 0
    nothing = await _nothing(deps, deadlines)
    assert nothing["on_time_rate"] is None and nothing["feedback"] == 0


async def _nothing(deps: Deps, deadlines: Deadlines) -> dict[str, Any]:
    async with deps.db.sessions() as s:
        return await stats.compute(s, stats.Scope(court="无此院"), deadlines)
