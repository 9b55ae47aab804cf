"""The figures a court reports (驾驶舱): visitors, feedback items and how satisfied people
were with their handling, ratings, and replies on time. By court, judge, period.

feedback_satisfaction: of the tickets that were rated, the share rated 满意 or 基本满意.
ratings / rating_satisfaction: every rating given (of a ticket, or of the service in
general) and the share of those that were 满意 or 基本满意."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped
from sqlmodel import col

from bot.core.clock import now
from bot.rules import dashboard
from bot.rules.deadlines import Deadlines
from storage.models import AuditEvent, Case, Court, Rating, Staff, Ticket

SATISFIED = dashboard.SATISFIED  # 满意, 基本满意


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


def _of_cases(column: Mapped[int | None] | Mapped[int], scope: Scope) -> ColumnElement[bool]:
    """Rows of the scope's cases. With no court or judge named that is every row with a case
    (a foreign key: the case exists), asked without looking at the case table, so that an
    installation's all-time figures do not join a million tickets to their cases."""
    if not scope.court and not scope.judge:
        return column.is_not(None)
    return column.in_(_cases(scope).scalar_subquery())


def _period(column: Mapped[datetime], scope: Scope) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if scope.since:
        conditions.append(column >= scope.since)
    if scope.until:
        conditions.append(column < scope.until)
    return conditions


share = dashboard.share  # round(part / whole, 4), None when there is nothing to divide


async def compute(session: AsyncSession, scope: Scope, deadlines: Deadlines) -> dict[str, Any]:
    """The figures, counted by the database: three statements (scans, tickets with their
    ratings, all ratings), each an aggregate, so no row of the period comes to Python."""
    await dashboard.tune_aggregates(session)
    moment = now()
    visitors = await session.scalar(
        select(func.count(func.distinct(col(AuditEvent.actor)))).where(
            col(AuditEvent.action) == "code.scanned",
            _of_cases(col(AuditEvent.case_id), scope),
            *_period(col(AuditEvent.at), scope),
        )
    )
    in_scope = and_(
        _of_cases(col(Ticket.case_id), scope),
        *_period(col(Ticket.created_at), scope),
        *([col(Ticket.team) == scope.team] if scope.team else []),
    )
    # The same conditions as the dashboard's (bot.rules.dashboard): what "judged", "on
    # time" and "satisfied" mean is written once. A ticket has at most one rating.
    cond = dashboard.ticket_conditions(moment)
    due = col(Ticket.due_at)
    close_due, closed = col(Ticket.close_due_at), col(Ticket.closed_at)
    close_judged = and_(close_due.is_not(None), or_(closed.is_not(None), close_due <= moment))
    counted = {
        "rated": cond["rated"],
        "satisfied": cond["satisfied"],
        "judged": cond["judged"],
        "on_time": cond["on_time"],
        "close_judged": close_judged,
        "closed_on_time": and_(close_due.is_not(None), closed.is_not(None), closed <= close_due),
        # Past what was promised and never answered, whatever the ticket's status.
        "overdue": and_(due.is_not(None), col(Ticket.first_reply_at).is_(None), due <= moment),
    }
    tickets = (
        select(
            col(Ticket.kind),
            col(Ticket.status),
            func.count(),
            *[func.count().filter(c) for c in counted.values()],
        )
        .select_from(Ticket)
        .outerjoin(Rating, col(Rating.ticket_id) == col(Ticket.id))
        .where(in_scope)
        .group_by(col(Ticket.kind), col(Ticket.status))
    )
    by_kind: dict[str, int] = {}
    by_status: dict[str, int] = {}
    sums = dict.fromkeys(counted, 0)
    for kind, status, count, *values in (await session.execute(tickets)).all():
        by_kind[kind] = by_kind.get(kind, 0) + count
        by_status[status] = by_status.get(status, 0) + count
        for name, value in zip(counted, values, strict=True):
            sums[name] += int(value or 0)
    # Every rating: of tickets' handling and of the service in general (menu 5, choice 9).
    ratings, ratings_satisfied = (
        await session.execute(
            select(func.count(), func.count().filter(col(Rating.score).in_(SATISFIED))).where(
                _of_cases(col(Rating.case_id), scope),
                *_period(col(Rating.created_at), scope),
            )
        )
    ).one()
    # On time: of the tickets whose first reply was due by now or already given, the share
    # answered by the due time the litigant was promised (due_at; escalation gives a new
    # holder its own holder_due_at, but the promise is what counts).
    return {
        "visitors": int(visitors or 0),
        "feedback": sum(by_kind.values()),
        "feedback_by_kind": dict(sorted(by_kind.items())),
        "feedback_by_status": dict(sorted(by_status.items())),
        "feedback_rated": sums["rated"],
        "feedback_satisfaction": share(sums["satisfied"], sums["rated"]),
        "ratings": int(ratings or 0),
        "rating_satisfaction": share(int(ratings_satisfied or 0), int(ratings or 0)),
        "on_time_rate": share(sums["on_time"], sums["judged"]),
        "on_time_judged": sums["judged"],
        "close_on_time_rate": share(sums["closed_on_time"], sums["close_judged"]),
        "close_on_time_judged": sums["close_judged"],
        "overdue_now": sums["overdue"],
        # Years whose working days are a Monday–Friday guess (no official or court data).
        "calendar_warnings": deadlines.calendar_warnings(),
    }
