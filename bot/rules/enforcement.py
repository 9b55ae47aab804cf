"""Enforcement progress: public events from the court's enforcement system, imported by
file (`mst import-events`) or pushed over HTTP, idempotent by their external id. Parties
who follow the case are told of each new public event through the outbox."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core import notice
from bot.core.clock import court_tz
from bot.core.notice import Notice, iso
from bot.outbox import queue as outbox
from bot.rules.importer import RowError
from storage import audit
from storage.models import Binding, Case, EnforcementEvent

# The events the enforcement system sends (their names for people: handlers.texts).
KINDS = (
    "filing",
    "notice",
    "asset_search",
    "freeze",
    "valuation",
    "received",
    "paid_out",
    "closed",
)


@dataclass
class Outcome:
    added: int = 0
    unchanged: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)


def parse_event(row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise RowError("an event must be a JSON object")
    external_id = str(row.get("event_id") or "").strip()
    if not external_id or len(external_id) > 64:
        raise RowError("missing event_id (the enforcement system's own id, up to 64 characters)")
    kind = row.get("kind")
    if kind not in KINDS:
        raise RowError(f"kind must be one of {', '.join(KINDS)}")
    case_number = str(row.get("case_number") or "").strip()
    if not case_number:
        raise RowError("missing case_number")
    try:
        happened = datetime.fromisoformat(str(row.get("at")))
    except ValueError as exc:
        raise RowError("at must be a time like 2026-11-20T10:30:00+08:00") from exc
    if happened.tzinfo is None:
        happened = happened.replace(
            tzinfo=court_tz()
        )  # the court's systems speak the court's local time
    amount = row.get("amount")
    cents = None
    if amount is not None:
        try:
            value = Decimal(str(amount))
        except InvalidOperation as exc:
            raise RowError("amount must be a number of yuan, e.g. 12000.50") from exc
        if value < 0 or value != value.quantize(Decimal("0.01")):
            raise RowError("amount must be yuan with at most two decimals, not negative")
        cents = int(value * 100)
    note = str(row.get("note") or "")[:500]
    return {
        "external_id": external_id,
        "kind": kind,
        "case_number": case_number,
        "happened_at": happened.astimezone(UTC),
        "amount_cents": cents,
        "note": note,
        "public": bool(row.get("public", True)),
    }


async def ingest(
    session: AsyncSession, rows: list[tuple[int, Any]], outcome: Outcome, *, actor: str
) -> None:
    """Store new events (known ids change nothing) and queue a push for each new public one."""
    for line, raw in rows:
        try:
            data = parse_event(raw)
        except RowError as exc:
            outcome.skipped.append((line, str(exc)))
            continue
        known = await session.execute(
            select(col(EnforcementEvent.id)).where(
                col(EnforcementEvent.external_id) == data["external_id"]
            )
        )
        if known.first() is not None:
            outcome.unchanged += 1
            continue
        case = (
            await session.execute(
                select(Case).where(col(Case.case_number) == data.pop("case_number"))
            )
        ).scalar_one_or_none()
        if case is None:
            outcome.skipped.append((line, "no such case number"))
            continue
        event = EnforcementEvent(case_id=case.id or 0, **data)
        session.add(event)
        await session.flush()
        if event.public:
            await _push(session, case, event)
        await audit.append(
            session,
            actor=actor,
            action="enforcement.event",
            subject=f"event:{event.external_id}",
            case_id=case.id,
            payload={
                "kind": event.kind,
                "amount_cents": event.amount_cents,
                "public": event.public,
            },
        )
        outcome.added += 1


async def _push(session: AsyncSession, case: Case, event: EnforcementEvent) -> None:
    followers = (
        await session.execute(
            select(col(Binding.openid)).where(col(Binding.case_id) == case.id).distinct()
        )
    ).scalars()
    for openid in followers:
        await outbox.tell(
            session,
            openid,
            Notice(
                notice.ENFORCEMENT_PROGRESS,
                {
                    "case_number": case.case_number,
                    "event": event.kind,
                    "at": iso(event.happened_at),
                    "amount_cents": event.amount_cents,
                    "note": event.note,
                },
            ),
            case=case,
        )


async def timeline(session: AsyncSession, case_id: int) -> tuple[list[EnforcementEvent], int, int]:
    """Public events oldest first, with the money received and paid out so far (cents)."""
    events = list(
        (
            await session.execute(
                select(EnforcementEvent)
                .where(col(EnforcementEvent.case_id) == case_id, col(EnforcementEvent.public))
                .order_by(col(EnforcementEvent.happened_at), col(EnforcementEvent.id))
            )
        ).scalars()
    )
    received = sum(e.amount_cents or 0 for e in events if e.kind == "received")
    paid = sum(e.amount_cents or 0 for e in events if e.kind == "paid_out")
    return events, received, paid
