"""What a verified person may see in the app (the mini-program and the H5 pages), as plain
data: their cases, a case's public facts, their items and what was said on them, and what
the court told them. Every read is scoped by `user` here, in one place: a case they are
not bound to, or an item that is not theirs, is simply not found (never "not yours").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.rules import desk, enforcement, mediation, tickets
from storage.models import (
    Binding,
    Case,
    Court,
    EnforcementEvent,
    MediationSlot,
    Outbox,
    Party,
    Staff,
    Ticket,
)


@dataclass(frozen=True)
class CaseView:
    case: Case
    court: Court
    judge: Staff | None
    party: Party | None  # who they are on it
    method: str  # how they proved it: phone_tail | phone_number | assisted


async def cases(session: AsyncSession, user: str) -> list[CaseView]:
    rows = await session.execute(
        select(Case, Court, Staff, Party, Binding)
        .join(Binding, col(Binding.case_id) == col(Case.id))
        .join(Court, col(Court.id) == col(Case.court_id))
        .outerjoin(Staff, col(Staff.id) == col(Case.judge_id))
        .outerjoin(Party, col(Party.id) == col(Binding.party_id))
        .where(col(Binding.openid) == user)
        .order_by(col(Binding.id))
    )
    return [CaseView(c, court, judge, party, b.method) for c, court, judge, party, b in rows.all()]


async def case(session: AsyncSession, user: str, case_id: int) -> CaseView | None:
    return next((v for v in await cases(session, user) if v.case.id == case_id), None)


@dataclass(frozen=True)
class CaseFacts:
    view: CaseView
    events: list[EnforcementEvent]  # the public enforcement timeline, oldest first
    received_cents: int
    paid_cents: int
    booking: Any | None  # (Booking, MediationSlot) of their next mediation, if any


async def facts(session: AsyncSession, user: str, case_id: int) -> CaseFacts | None:
    view = await case(session, user, case_id)
    if view is None:
        return None
    events, received, paid = await enforcement.timeline(session, case_id)
    booking = await mediation.current_booking(session, user, case_id)
    return CaseFacts(view, events, received, paid, booking)


@dataclass(frozen=True)
class ItemView:
    ticket: Ticket
    case: Case
    holder: Staff | None
    helper: str | None = None  # who submitted it for them at the service desk (bot.rules.desk)


# Items of a user's (`user`), with case and holder, on cases they are still bound to. Built
# once: "my items" is the app's most frequent read.
_THEIRS = (
    select(Ticket, Case, Staff)
    .join(Case, col(Case.id) == col(Ticket.case_id))
    .join(
        Binding,
        (col(Binding.case_id) == col(Ticket.case_id)) & (col(Binding.openid) == bindparam("user")),
    )
    .outerjoin(Staff, col(Staff.id) == col(Ticket.assignee_id))
    .where(col(Ticket.openid) == bindparam("user"))
)
_MINE = _THEIRS.order_by(col(Ticket.id).desc()).limit(100)
_MINE_ON_CASE = _MINE.where(col(Ticket.case_id) == bindparam("case_id"))
_ONE = _THEIRS.where(col(Ticket.id) == bindparam("ticket_id"))


async def items(session: AsyncSession, user: str, case_id: int | None = None) -> list[ItemView]:
    """Their items, newest first."""
    if case_id is None:
        rows = await session.execute(_MINE, {"user": user})
    else:
        rows = await session.execute(_MINE_ON_CASE, {"user": user, "case_id": case_id})
    found = rows.all()
    helped = await desk.helpers(session, [t for t, _, _ in found])
    return [ItemView(t, c, s, helped.get(t.id or 0)) for t, c, s in found]


async def item(session: AsyncSession, user: str, ticket_id: int) -> ItemView | None:
    found = (await session.execute(_ONE, {"user": user, "ticket_id": ticket_id})).first()
    if not found:
        return None
    helped = await desk.helpers(session, [found[0]])
    return ItemView(found[0], found[1], found[2], helped.get(ticket_id))


@dataclass(frozen=True)
class Said:
    at: datetime
    mine: bool  # said by the person (else by the court's staff)
    text: str
    staff: Staff | None


async def thread(session: AsyncSession, view: ItemView) -> list[Said]:
    """What was said on their item, oldest first: their own messages and the answers."""
    said = await tickets.thread(session, view.ticket)
    staff_ids = {m.staff_id for m in said if m.staff_id}
    staff: dict[int | None, Staff] = {}
    if staff_ids:
        found = await session.execute(select(Staff).where(col(Staff.id).in_(staff_ids)))
        staff = {member.id: member for member in found.scalars()}
    return [
        Said(m.created_at, m.direction == "in", m.content, staff.get(m.staff_id))
        for m in said
        if m.content or m.direction == "in"
    ]


@dataclass(frozen=True)
class Told:
    id: int  # the cursor: ask for what comes after it
    at: datetime
    payload: dict[str, Any]
    case_id: int | None
    ticket_id: int | None


async def told(session: AsyncSession, user: str, since: int, limit: int = 50) -> list[Told]:
    """What the court told them (answers, notices) after `since`, oldest first, whichever
    channel it reached them through."""
    rows = await session.execute(
        select(Outbox)
        .where(col(Outbox.recipient) == user, col(Outbox.id) > since, col(Outbox.kind) == "cs_text")
        .order_by(col(Outbox.id))
        .limit(limit)
    )
    return [
        Told(o.id or 0, o.created_at, json.loads(o.payload), o.case_id, o.ticket_id)
        for o in rows.scalars()
    ]


async def latest_told(session: AsyncSession, user: str) -> int:
    """The cursor of what they were told last (0: nothing yet)."""
    found = await session.execute(
        select(func.max(col(Outbox.id))).where(col(Outbox.recipient) == user)
    )
    return int(found.scalar() or 0)


async def mediators(
    session: AsyncSession, user: str, case_id: int
) -> list[mediation.Choice] | None:
    """The mediators of their case's court, with each one's next free time (None: not
    their case)."""
    view = await case(session, user, case_id)
    if view is None:
        return None
    return await mediation.mediators(session, view.case.court_id)


async def free_slots(
    session: AsyncSession, user: str, case_id: int, mediator_id: int
) -> list[MediationSlot] | None:
    """A mediator's free times, if the mediator is of their case's court (None otherwise)."""
    view = await case(session, user, case_id)
    mediator = await session.get(Staff, mediator_id)
    if view is None or mediator is None or mediator.court_id != view.case.court_id:
        return None
    if not mediator.has_role("mediator") or not mediator.active:
        return None
    return await mediation.free_slots(session, mediator_id)
