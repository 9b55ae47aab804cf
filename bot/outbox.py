"""Outbound messages go through the outbox: a row written in the transaction that caused
it, delivered later by the worker, so nothing said is lost and the callback never waits
on WeChat's API."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from storage.db import Database
from storage.models import Outbox


def add(
    session: AsyncSession,
    *,
    recipient: str,
    kind: str,
    payload: dict[str, Any],
    case_id: int | None = None,
    ticket_id: int | None = None,
    channel: str = "wechat",
) -> Outbox:
    row = Outbox(
        channel=channel,
        recipient=recipient,
        kind=kind,
        payload=json.dumps(payload, ensure_ascii=False),
        case_id=case_id,
        ticket_id=ticket_id,
    )
    session.add(row)
    return row


async def enqueue_text(db: Database, recipient: str, text: str) -> None:
    """A text for one user, in its own transaction (used when the reply missed the callback)."""
    async with db.transaction() as session:
        add(session, recipient=recipient, kind="cs_text", payload={"text": text})


def tell(
    session: AsyncSession,
    recipient: str | None,
    text: str,
    *,
    case: Any = None,
    ticket_id: int | None = None,
    notice: str | None = None,
) -> None:
    """A customer-service text to one person (nobody, when they have no WeChat bound).

    `notice` is the one-line summary used if WeChat's 48-hour window has closed and a
    template message goes instead (bot.delivery)."""
    if not recipient:
        return
    payload: dict[str, Any] = {"text": text}
    if case is not None:
        payload["case_number"] = case.case_number
    if notice:
        payload["notice"] = notice
    add(
        session,
        recipient=recipient,
        kind="cs_text",
        payload=payload,
        case_id=case.id if case is not None else None,
        ticket_id=ticket_id,
    )
