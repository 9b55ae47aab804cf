"""An item's history from the audit log: who did what to it when, who held it after each
move, and why it moved. `mst ticket history` and the web console put it in words."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage.models import AuditEvent, Staff, Ticket

# Events that move an item; their reason is a code (bot.rules.escalation).
MOVES = frozenset({"ticket.escalated", "ticket.moved", "ticket.claimed", "ticket.transferred"})


@dataclass(frozen=True)
class Holder:
    """Who held the item after a move: a person, else a team."""

    staff: Staff | None
    team: str | None
    level: int | None


@dataclass(frozen=True)
class Step:
    at: datetime
    action: str  # ticket.opened, ticket.answered, … (the audit event's)
    actor: str  # as recorded: staff:<username>, system, admin, import, or the litigant's id
    by: Staff | None  # the staff member behind `actor`, when it names one still on record
    to: Holder | None  # events that name a new holder
    reason: str | None  # a move's code (MOVES), or the reason a refusal was recorded with
    note: str | None  # a transfer's own words


async def of_ticket(session: AsyncSession, ticket: Ticket) -> list[Step]:
    """The item's events, oldest first."""
    events = list(
        (
            await session.execute(
                select(AuditEvent)
                .where(col(AuditEvent.subject) == f"ticket:{ticket.id}")
                .order_by(col(AuditEvent.at), col(AuditEvent.id))
            )
        ).scalars()
    )
    payloads: list[dict[str, Any]] = [json.loads(ev.payload) for ev in events]
    names = {ev.actor[6:] for ev in events if ev.actor.startswith("staff:")}
    ids = {(p.get("to") or {}).get("assignee_id") for p in payloads} - {None}
    people = (
        list(
            (
                await session.execute(
                    select(Staff).where(col(Staff.username).in_(names) | col(Staff.id).in_(ids))
                )
            ).scalars()
        )
        if names or ids
        else []
    )
    by_name = {s.username: s for s in people}
    by_id = {s.id: s for s in people}
    steps = []
    for ev, payload in zip(events, payloads, strict=True):
        held = payload.get("to") or None
        reason = payload.get("reason")
        note = payload.get("note")
        steps.append(
            Step(
                at=ev.at,
                action=ev.action,
                actor=ev.actor,
                by=by_name.get(ev.actor[6:]) if ev.actor.startswith("staff:") else None,
                to=Holder(by_id.get(held.get("assignee_id")), held.get("team"), held.get("level"))
                if isinstance(held, dict)
                else None,
                reason=None if reason is None else str(reason),
                note=note if isinstance(note, str) else None,
            )
        )
    return steps
