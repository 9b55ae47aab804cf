"""Delivering the outbox: claim due rows, send each through its channel's sender
(`Deps.senders[row.channel]`, bot.outbox.senders), record the outcome.

Several workers may run: a row is claimed (status `sending`, a claim token, a lease) in
one transaction — `FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite — so
no two workers hold it. A worker that dies after claiming leaves the lease to run out;
the row is then claimed again and sent once. Failures back off exponentially.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol, cast

from sqlalchemy import ColumnElement, CursorResult, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core import metrics
from bot.core.clock import now
from bot.outbox.senders import Letter, Refused, Retry, Sender
from storage import audit
from storage.db import Database
from storage.models import Outbox


class Outlet(Protocol):
    """What delivery needs of a process: its database and its senders (Deps has both)."""

    @property
    def db(self) -> Database: ...

    @property
    def senders(self) -> Mapping[str, Sender]: ...


log = logging.getLogger(__name__)

# A claim's lease: past the API client's 10 s timeout, and renewed before a send when a
# long batch has used half of it. A worker killed mid-send leaves the row to be sent again
# once the lease runs out: delivery is at least once, the window as small as the lease.
LEASE = timedelta(seconds=30)
BACKOFF_BASE_S = 5
BACKOFF_MAX_S = 3600
# A row that could not be sent for this long is failed (and listed by `mst outbox`), even
# for errors that might pass: by then a person must look at it.
GIVE_UP_AFTER = timedelta(days=3)
GIVE_UP_TRIES = 8


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S))


async def claim(deps: Outlet, limit: int = 20) -> list[Outbox]:
    """Take up to `limit` due rows for this worker."""
    token = secrets.token_hex(8)
    moment = now()
    async with deps.db.transaction() as session:
        due = (
            select(col(Outbox.id))
            .where(
                or_(
                    and_(col(Outbox.status) == "pending", col(Outbox.next_attempt_at) <= moment),
                    and_(
                        col(Outbox.status) == "sending", col(Outbox.claimed_until) < moment
                    ),  # lease ran out
                )
            )
            .order_by(col(Outbox.id))
            .limit(limit)
        )
        if deps.db.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        ids = list((await session.execute(due)).scalars())
        if not ids:
            return []
        await session.execute(
            update(Outbox)
            .where(col(Outbox.id).in_(ids))
            .values(
                status="sending",
                claim_token=token,
                claimed_until=moment + LEASE,
                attempts=col(Outbox.attempts) + 1,
            )
        )
        rows = (
            await session.execute(
                select(Outbox).where(col(Outbox.id).in_(ids)).order_by(col(Outbox.id))
            )
        ).scalars()
        return list(rows)


async def deliver_due(deps: Outlet, limit: int = 20) -> int:
    """One pass: claim and deliver what is due. Returns how many rows were handled."""
    rows = await claim(deps, limit)
    for row in rows:
        if not await _still_ours(deps, row):
            continue  # the lease ran out during the batch and another worker took it
        await deliver_one(deps, row)
    return len(rows)


async def _still_ours(deps: Outlet, row: Outbox) -> bool:
    """Renew the row's lease if half of it is gone, so it is not sent twice meanwhile."""
    moment = now()
    if row.claimed_until is not None and row.claimed_until - moment > LEASE / 2:
        return True
    async with deps.db.transaction() as session:
        ours = await _mark(session, row, claimed_until=moment + LEASE)
    row.claimed_until = moment + LEASE
    return ours


async def deliver_one(deps: Outlet, row: Outbox) -> None:
    """Send one claimed row through the sender of its channel. Only what no retry can
    change (`Refused`: the person unfollowed, blocked us, is no user of ours) fails it at
    once; anything else — the channel down, tokens refused, our own configuration, no
    sender for the channel here — is tried again with a growing pause, and fails only
    after GIVE_UP_AFTER, with its reason kept. A quota (`Retry` with a wait) is tried
    again not before its wait, then with the usual growing pause, and is not given up on."""
    sender = deps.senders.get(row.channel)
    if sender is None:
        log.error(
            "outbox %s: no sender for channel %r in this process (it has: %s)",
            row.id,
            row.channel,
            ", ".join(sorted(deps.senders)) or "none",
        )
        await _retry_or_give_up(deps, row, f"no sender for channel {row.channel}")
        return
    letter = Letter(
        id=row.id or 0,
        channel=row.channel,
        recipient=row.recipient,
        kind=row.kind,
        payload=json.loads(row.payload),
        ticket_id=row.ticket_id,
    )
    try:
        via = await sender.send(letter)
    except Refused as exc:
        await _give_up(deps, row, f"{exc}")
        return
    except Retry as exc:
        if exc.wait is not None:
            # Not before the wait, then the usual growing pause (a daily quota cleared by
            # the operator is noticed within the hour, not the next day).
            wait = max(exc.wait, backoff(row.attempts))
            await _retry_later(deps, row, f"{exc}", now() + wait)
        else:
            await _retry_or_give_up(deps, row, f"{exc}")
        return
    await _finish(deps, row, via)


async def _retry_or_give_up(deps: Outlet, row: Outbox, error: str) -> None:
    # Old and tried many times (a requeued row starts counting its tries afresh).
    if row.created_at < now() - GIVE_UP_AFTER and row.attempts >= GIVE_UP_TRIES:
        await _give_up(deps, row, f"{error} (not sent in {GIVE_UP_AFTER.days} days)")
    else:
        await _retry_later(deps, row, error, now() + backoff(row.attempts))


async def _mark(session: AsyncSession, row: Outbox, **values: Any) -> bool:
    """Update the row only while our claim holds it."""
    result = await session.execute(
        update(Outbox)
        .where(col(Outbox.id) == row.id, col(Outbox.claim_token) == row.claim_token)
        .values(**values)
    )
    return bool(cast(CursorResult[Any], result).rowcount)


async def _finish(deps: Outlet, row: Outbox, via: str) -> None:
    async with deps.db.transaction() as session:
        if not await _mark(
            session, row, status="sent", sent_at=now(), claimed_until=None, last_error=None
        ):
            log.warning("outbox %s: claim lost before it was marked sent", row.id)
            return
        metrics.DELIVERIES.labels(via).inc()
        await audit.append(
            session,
            actor="worker",
            action="message.delivered",
            subject=f"outbox:{row.id}",
            case_id=row.case_id,
            payload={
                "to": row.recipient,
                "via": via,
                "ticket": row.ticket_id,
                "attempts": row.attempts,
            },
        )


async def _retry_later(deps: Outlet, row: Outbox, error: str, when: Any) -> None:
    log.warning("outbox %s: attempt %d failed (%s); next try %s", row.id, row.attempts, error, when)
    metrics.DELIVERIES.labels("retry").inc()
    async with deps.db.transaction() as session:
        await _mark(
            session,
            row,
            status="pending",
            next_attempt_at=when,
            claimed_until=None,
            last_error=error[:500],
        )


async def _give_up(deps: Outlet, row: Outbox, error: str) -> None:
    log.error("outbox %s: giving up: %s", row.id, error)
    metrics.DELIVERIES.labels("failed").inc()
    async with deps.db.transaction() as session:
        if await _mark(session, row, status="failed", claimed_until=None, last_error=error[:500]):
            await audit.append(
                session,
                actor="worker",
                action="delivery.failed",
                subject=f"outbox:{row.id}",
                case_id=row.case_id,
                payload={"to": row.recipient, "error": error[:200], "ticket": row.ticket_id},
            )


async def requeue_failed(db: Database, ids: list[int] | None, *, actor: str) -> int:
    """`mst outbox retry`: failed rows (all, or those `ids`) are tried again from now."""
    async with db.transaction() as session:
        which: list[ColumnElement[bool]] = [col(Outbox.status) == "failed"]
        if ids:
            which.append(col(Outbox.id).in_(ids))
        rows = list(
            (await session.execute(select(col(Outbox.id), col(Outbox.case_id)).where(*which))).all()
        )
        if not rows:
            return 0
        await session.execute(
            update(Outbox)
            .where(col(Outbox.id).in_([r.id for r in rows]))
            .values(status="pending", next_attempt_at=now(), attempts=0, last_error=None)
        )
        for row_id, case_id in rows:
            await audit.append(
                session,
                actor=actor,
                action="delivery.requeued",
                subject=f"outbox:{row_id}",
                case_id=case_id,
            )
    return len(rows)
