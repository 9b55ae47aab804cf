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
