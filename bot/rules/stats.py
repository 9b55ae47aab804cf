"""The figures a court reports (驾驶舱): visitors, feedback items and how satisfied people
were with their handling, ratings, and replies on time. By court, judge, period.

feedback_satisfaction: of the tickets that were rated, the share rated 满意 or 基本满意.
ratings / rating_satisfaction: every rating given (of a ticket, or of the service in
general) and the share of those that were 满意 or 基本满意."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped
from sqlmodel import col

from bot.core.clock import now
from bot.rules.deadlines import Deadlines
from storage.models import AuditEvent, Case, Court, Rating, Staff, Ticket

SATISFIED = (1, 2)  # 满意, 基本满意


@dataclass(frozen=True)
class Scope:
    court: str | None = None  # court name
    judge: str | None = None  # staff username: the case's handling judge
    since: datetime | None = None
    until: datetime | None = None
    team: str | None = None  # items held by this team


def _cases(scope: Scope) -> Select[Any]:
    q = select(col(Case.id))
    if scope.court:
        q = q.join(Court, col(Court.id) == col(Case.court_id)).where(col(Court.name) == scope.court)
    if scope.judge:
        q = q.join(Staff, col(Staff.id) == col(Case.judge_id)).where(
            col(Staff.username) == scope.judge
        )
    return q


def _period(column: Mapped[datetime], scope: Scope) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if scope.since:
        conditions.append(column >= scope.since)
    if scope.until:
        conditions.append(column < scope.until)
    return conditions


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


async def compute(session: AsyncSession, scope: Scope, deadlines: Deadlines) -> dict[str, Any]:
    cases = _cases(scope).scalar_subquery()
    visitors = await session.scalar(
        select(func.count(func.distinct(col(AuditEvent.actor)))).where(
            col(AuditEvent.action) == "code.scanned",
            col(AuditEvent.case_id).in_(cases),
            *_period(col(AuditEvent.at), scope),
        )
    )
    in_scope = and_(
        col(Ticket.case_id).in_(_cases(scope).scalar_subquery()),
        *_period(col(Ticket.created_at), scope),
        *([col(Ticket.team) == scope.team] if scope.team else []),
    )
    feedback = await session.scalar(select(func.count()).select_from(Ticket).where(in_scope)) or 0
    by_kind = dict(
        (
            await session.execute(
                select(col(Ticket.kind), func.count()).where(in_scope).group_by(col(Ticket.kind))
            )
        ).all()
    )
    by_status = dict(
        (
            await session.execute(
                select(col(Ticket.status), func.count())
                .where(in_scope)
                .group_by(col(Ticket.status))
            )
        ).all()
    )
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
    # Every rating: of tickets' handling and of the service in general (menu 5, choice 9).
    all_scores = [
        s
        for (s,) in (
            await session.execute(
                select(col(Rating.score)).where(
                    col(Rating.case_id).in_(_cases(scope).scalar_subquery()),
                    *_period(col(Rating.created_at), scope),
                )
            )
        ).all()
    ]
    # On time: of the tickets whose first reply was due by now or already given, the share
    # answered by the due time the litigant was promised (due_at; escalation gives a new
    # holder its own holder_due_at, but the promise is what counts).
    moment = now()
    due_rows = [
        (r, d)
        for r, d in (
            await session.execute(
                select(col(Ticket.first_reply_at), col(Ticket.due_at)).where(
                    in_scope, col(Ticket.due_at).is_not(None)
                )
            )
        ).all()
        if d is not None  # the query's own condition, for the type checker
    ]
    judged = [(r, d) for r, d in due_rows if r is not None or d <= moment]
    on_time = sum(1 for r, d in judged if r is not None and r <= d)
    close_rows = [
        (c, d)
        for c, d in (
            await session.execute(
                select(col(Ticket.closed_at), col(Ticket.close_due_at)).where(
                    in_scope, col(Ticket.close_due_at).is_not(None)
                )
            )
        ).all()
        if d is not None  # the query's own condition, for the type checker
    ]
    close_judged = [(c, d) for c, d in close_rows if c is not None or d <= moment]
    closed_on_time = sum(1 for c, d in close_judged if c is not None and c <= d)
    return {
        "visitors": int(visitors or 0),
        "feedback": int(feedback),
        "feedback_by_kind": by_kind,
        "feedback_by_status": by_status,
        "feedback_rated": len(ticket_scores),
        "feedback_satisfaction": share(
            sum(1 for s in ticket_scores if s in SATISFIED), len(ticket_scores)
        ),
        "ratings": len(all_scores),
        "rating_satisfaction": share(sum(1 for s in all_scores if s in SATISFIED), len(all_scores)),
        "on_time_rate": share(on_time, len(judged)),
        "on_time_judged": len(judged),
        "close_on_time_rate": share(closed_on_time, len(close_judged)),
        "close_on_time_judged": len(close_judged),
        "overdue_now": sum(1 for r, d in due_rows if r is None and d <= moment),
        # Years whose working days are a Monday–Friday guess (no official or court data).
        "calendar_warnings": deadlines.calendar_warnings(),
    }
