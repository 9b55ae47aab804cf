"""Receipts a litigant can check themselves: the short link given with every item they
open leads to a page saying what the court recorded, that the record is unchanged, and that
the event is in the court's signed transparency log (storage.transparency) — with the proof,
so the page can check it in the person's own browser."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from storage import audit
from storage import transparency as tlog
from storage.models import AuditEvent, Case, Court, PublishedHead

SHOWN = 16  # hex characters of the event's hash: 64 bits, not guessable, short to print


def url(public_base_url: str, event_hash: str) -> str:
    return f"{public_base_url}/v/{event_hash[:SHOWN]}"


@dataclass(frozen=True)
class Check:
    kind: str  # the item's kind: question, complaint, … (its words: handlers.texts)
    ticket_id: int | None
    at: datetime
    case_number: str
    court: str
    intact: bool  # the case's record, up to now, is as it was written
    event_id: int = 0  # the ticket.opened event the receipt names


async def check(session: AsyncSession, receipt: str) -> Check | None:
    """What the receipt stands for, or None for one the court never gave (or a guess)."""
    found = [
        ev for ev in await audit.find_receipt(session, receipt) if ev.action == "ticket.opened"
    ]
    if len(receipt) != SHOWN or len(found) != 1:
        return None
    event = found[0]
    case = await session.get(Case, event.case_id) if event.case_id else None
    court = await session.get(Court, case.court_id) if case else None
    if case is None or court is None:
        return None
    verdict = await audit.verify(session, chain=event.chain, limit_problems=1)
    subject = event.subject.split(":", 1)
    return Check(
        kind=str(json.loads(event.payload).get("kind", "")),
        ticket_id=int(subject[1]) if len(subject) == 2 and subject[1].isdigit() else None,
        at=event.at,
        case_number=case.case_number,
        court=court.name,
        intact=verdict.ok,
        event_id=event.id or 0,
    )


@dataclass(frozen=True)
class Logged:
    """Where the receipt's event stands in the transparency log. `proof` None: not in a
    signed head yet (sequenced and signed by the job every minute); `damaged`: the log's
    stored leaves do not give its heads (check_log says more). `published`: the first head
    the court posted that holds it, and then the proof is against that head, the one on
    the notice board (None: not posted yet; the proof is against the latest head)."""

    proof: tlog.Inclusion | None
    damaged: bool = False
    published: PublishedHead | None = None


async def logged(session: AsyncSession, event_id: int) -> Logged:
    """The event's inclusion proof: in the first published head that holds it, else in
    the latest signed head, when it is in one (one proof either way)."""
    leaf = (
        await session.execute(
            select(col(AuditEvent.leaf_index)).where(col(AuditEvent.id) == event_id)
        )
    ).scalar()
    posted = await tlog.first_published_over(session, leaf) if leaf is not None else None
    try:
        proof = await tlog.inclusion(
            session, event_id=event_id, size=posted.size if posted is not None else None
        )
    except (tlog.NoSuchHead, tlog.NotInLog, tlog.OutOfRange):
        # A posted head no longer kept as it was is damage; no head yet is only waiting.
        return Logged(None, damaged=posted is not None)
    except tlog.LogDamaged:
        return Logged(None, damaged=True)
    if posted is not None and proof.head.root != posted.root:
        return Logged(None, damaged=True)
    return Logged(proof, published=posted)
