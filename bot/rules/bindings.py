"""A person becomes a party of a case: the case code they scanned or typed, then the last
four digits of the phone the court registered for a party. Wrong digits are limited
(bot.rules.attempts); too many on one case pause it, and the court's reception is told."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core.addresses import DESK_PREFIX, desk_user
from bot.outbox import queue as outbox
from bot.rules import access, attempts
from qr import codes
from storage import audit
from storage.models import Binding, Booking, Case, Party, Rating, Ticket


async def record_scan(session: AsyncSession, openid: str, lookup: codes.Lookup, via: str) -> None:
    """A code that leads to a case was scanned or typed (`via`): kept in the record."""
    await audit.append(
        session,
        actor=openid,
        action="code.scanned",
        subject=f"code:{lookup.code.id if lookup.code else ''}",
        case_id=lookup.case.id if lookup.case else None,
        payload={"status": lookup.status, "via": via},
    )


async def party_with_tail(session: AsyncSession, case_id: int, digits: str) -> Party | None:
    """The case's (first) party whose registered phone ends with `digits`."""
    return (
        await session.execute(
            select(Party)
            .where(col(Party.case_id) == case_id, col(Party.phone_tail) == digits)
            .order_by(col(Party.id))
            .limit(1)
        )
    ).scalar_one_or_none()


async def party_with_phone(session: AsyncSession, case_id: int, phone_digest: str) -> Party | None:
    """The case's (first) party whose registered phone is the one WeChat vouched for (by the
    keyed hash the import kept: bot.rules.importer.phone_hash)."""
    return (
        await session.execute(
            select(Party)
            .where(col(Party.case_id) == case_id, col(Party.phone_hash) == phone_digest)
            .order_by(col(Party.id))
            .limit(1)
        )
    ).scalar_one_or_none()


async def wrong_digits(
    session: AsyncSession, openid: str, case_id: int, tries: attempts.VerifyTries
) -> attempts.VerifyTries:
    """A wrong guess, counted in this transaction (a rolled-back or re-run one counts once)
    and recorded; the tries with it (`tries`: before it)."""
    await attempts.record(session, "verify", openid, case_id)
    tries = attempts.VerifyTries(tries.person_and_case + 1, tries.case + 1, tries.person + 1)
    await audit.append(
        session,
        actor=openid,
        action="bind.failed",
        case_id=case_id,
        payload={"attempt": tries.person_and_case, "on_case": tries.case},
    )
    return tries


async def pause_case(session: AsyncSession, case: Case, words: str) -> None:
    """Too many wrong digits on one case from everyone together: someone may be guessing.
    Recorded, and the court's reception team told (`words`: the flow's), once, when the
    pause begins."""
    await audit.append(
        session,
        actor="system",
        action="bind.case_paused",
        case_id=case.id,
        payload={"wrong_tries": attempts.VERIFY_PER_CASE, "window_s": attempts.WINDOW.seconds},
    )
    for member in await access.inbox_members(session, case.court_id, "reception"):
        if to := access.address_of(member):
            await outbox.tell(session, to, words, case=case)


async def bind(
    session: AsyncSession, openid: str, case_id: int, party: Party, method: str = "phone_tail"
) -> Binding:
    """The person proved to be `party`: bound to the case. `method`: phone_tail (the last
    four digits they typed), or phone_number (the whole number, as WeChat vouched for it:
    the stronger proof)."""
    binding = Binding(openid=openid, case_id=case_id, party_id=party.id or 0, method=method)
    session.add(binding)
    await session.flush()
    await audit.append(
        session,
        actor=openid,
        action="bind.verified",
        subject=f"party:{party.id}",
        case_id=case_id,
        payload={"method": method, "role": party.role},
    )
    if not openid.startswith(DESK_PREFIX):
        await hand_over(session, party, openid)
    return binding


async def hand_over(session: AsyncSession, party: Party, to_user: str) -> int:
    """The party now has their own account: what staff did for them at the service desk
    (bot.rules.desk) is theirs: its items, bookings and ratings follow them, so they see
    them in 我的诉求 and hear the answers. The desk's record stays as it was. Returns how
    many items moved."""
    user = desk_user(party.id or 0)
    moved = await session.execute(
        update(Ticket).where(col(Ticket.openid) == user).values(openid=to_user)
    )
    await session.execute(update(Booking).where(col(Booking.openid) == user).values(openid=to_user))
    await session.execute(update(Rating).where(col(Rating.openid) == user).values(openid=to_user))
    count = int(getattr(moved, "rowcount", 0) or 0)
    if count:
        await audit.append(
            session,
            actor=to_user,
            action="desk.handed_over",
            subject=f"party:{party.id}",
            case_id=party.case_id,
            payload={"from": user, "items": count},
        )
    return count
