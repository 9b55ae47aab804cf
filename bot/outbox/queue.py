"""Outbound messages go through the outbox: a row written in the transaction that caused
it, delivered later by the worker, so nothing said is lost and the callback never waits
on WeChat's API."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core.addresses import channel_of
from bot.core.clock import now
from bot.core.notice import Notice
from storage import conversations
from storage.db import Database
from storage.models import Binding, Outbox

# A plain INSERT, built once: a notice goes out with nearly every message, and building an
# ORM object for it costs more than the statement.
_INSERT = insert(Outbox)


async def add(
    session: AsyncSession,
    *,
    recipient: str,
    kind: str,
    payload: dict[str, Any],
    case_id: int | None = None,
    ticket_id: int | None = None,
    channel: str | None = None,
) -> None:
    """One row to send. `channel`: the one the recipient is reached through (by default
    the one their address says: bot.core.addresses)."""
    created = now()
    row = {
        "channel": channel or channel_of(recipient),
        "recipient": recipient,
        "kind": kind,
        "payload": json.dumps(payload, ensure_ascii=False),
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": created,
        "case_id": case_id,
        "ticket_id": ticket_id,
        "created_at": created,
    }
    await (await session.connection()).execute(_INSERT, row)


async def enqueue_text(
    db: Database, recipient: str, text: str, *, channel: str | None = None
) -> None:
    """A text for one user, in its own transaction (used when the reply missed its moment)."""
    async with db.transaction() as session:
        await add(
            session, recipient=recipient, kind="cs_text", payload={"text": text}, channel=channel
        )


async def tell_party(
    session: AsyncSession,
    recipient: str,
    said: str | Notice,
    *,
    case: Any,
    ticket_id: int | None = None,
    notice: str | None = None,
) -> None:
    """A push to a litigant about `case`: it names the case when the person is not on it
    now (they follow several, and would not know which one the news is about). Whether it
    does is decided now and kept in the row (`about_case`); the words come when it is sent
    (handlers.notices.letter_text)."""
    named = await _not_current(session, recipient, case.id)
    await tell(
        session,
        recipient,
        said,
        case=case,
        ticket_id=ticket_id,
        notice=notice,
        about_case=named,
    )


async def _not_current(session: AsyncSession, openid: str, case_id: int) -> bool:
    current = (await conversations.load(session, openid)).get("case_id")
    if current is not None:
        return bool(current != case_id)
    # No case chosen (or the conversation was forgotten): named if they have another case.
    other = await session.execute(
        select(col(Binding.id))
        .where(col(Binding.openid) == openid, col(Binding.case_id) != case_id)
        .limit(1)
    )
    return other.first() is not None


async def tell(
    session: AsyncSession,
    recipient: str | None,
    said: str | Notice,
    *,
    case: Any = None,
    ticket_id: int | None = None,
    notice: str | None = None,
    about_case: bool = False,
) -> None:
    """A customer-service message to one person (nobody, when they have no WeChat bound).

    `said`: a flow's own words (already from handlers.texts), or a `Notice` — data the
    sender puts into words (handlers.notices). `notice`, with words only: the one-line
    summary used if WeChat's 48-hour window has closed and a template message goes
    instead (bot.channels.wechat.sender); a Notice brings its own. `about_case`: the words
    are to say which case they are about (tell_party)."""
    if not recipient:
        return
    payload: dict[str, Any] = said.payload() if isinstance(said, Notice) else {"text": said}
    if case is not None:
        payload["case_number"] = case.case_number
    if notice and not isinstance(said, Notice):
        payload["notice"] = notice
    if about_case and case is not None:
        payload["about_case"] = True
    await add(
        session,
        recipient=recipient,
        kind="cs_text",
        payload=payload,
        case_id=case.id if case is not None else None,
        ticket_id=ticket_id,
    )


@dataclass
class Report:
    """The outbox as an operator (`mst outbox`) and /healthz see it."""

    counts: dict[str, int]
    oldest_waiting: datetime | None  # the oldest notice not yet sent (pending or sending)
    failed: list[Outbox] = field(default_factory=list)


async def report(session: AsyncSession, *, failed_limit: int = 50) -> Report:
    counts = {
        status: int(n)
        for status, n in (
            await session.execute(
                select(col(Outbox.status), func.count()).group_by(col(Outbox.status))
            )
        ).all()
    }
    oldest = (
        await session.execute(
            select(func.min(col(Outbox.created_at))).where(
                col(Outbox.status).in_(("pending", "sending"))
            )
        )
    ).scalar()
    failed = list(
        (
            await session.execute(
                select(Outbox)
                .where(col(Outbox.status) == "failed")
                .order_by(col(Outbox.id).desc())
                .limit(failed_limit)
            )
        ).scalars()
    )
    return Report(counts, oldest, failed)


async def failed_since(session: AsyncSession, since: datetime) -> int:
    return int(
        (
            await session.execute(
                select(func.count()).where(
                    col(Outbox.status) == "failed", col(Outbox.created_at) >= since
                )
            )
        ).scalar_one()
    )


# -- rows about one message, held back and let go (a voice's notices: handlers.voice) ------


async def hold_mentioning(
    session: AsyncSession, needle: str, *, since: datetime, until: datetime
) -> None:
    """Rows queued since `since` whose payload holds `needle` (a message's link) wait until
    `until`: not sent before, and not lost (the delivery sends them then, as they are)."""
    await session.execute(
        update(Outbox)
        .where(
            col(Outbox.status) == "pending",
            col(Outbox.created_at) >= since,
            col(Outbox.payload).contains(needle, autoescape=True),
        )
        .values(next_attempt_at=until)
    )


async def untried_mentioning(
    session: AsyncSession, needle: str, *, since: datetime
) -> list[tuple[int, dict[str, Any]]]:
    """Pending, never-tried rows queued since `since` whose payload holds `needle`: their
    ids and payloads."""
    rows = await session.execute(
        select(col(Outbox.id), col(Outbox.payload)).where(
            col(Outbox.status) == "pending",
            col(Outbox.attempts) == 0,
            col(Outbox.created_at) >= since,
            col(Outbox.payload).contains(needle, autoescape=True),
        )
    )
    return [(int(row_id or 0), json.loads(raw)) for row_id, raw in rows.all()]


async def send_now(session: AsyncSession, row_id: int, payload: dict[str, Any]) -> bool:
    """A pending row goes now, with this payload; False if it is no longer pending."""
    done = await session.execute(
        update(Outbox)
        .where(col(Outbox.id) == row_id, col(Outbox.status) == "pending")
        .values(payload=json.dumps(payload, ensure_ascii=False), next_attempt_at=now())
    )
    return bool(getattr(done, "rowcount", 0))
