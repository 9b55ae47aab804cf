"""A person becomes a party of a case: the case code they scanned or typed, then the last
four digits of the phone the court registered for a party. Wrong digits are limited
(bot.rules.attempts); too many on one case pause it, and the court's reception is told."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.outbox import queue as outbox
from bot.rules import access, attempts
from qr import codes
from storage import audit
from storage.models import Binding, Case, Party


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
        if member.openid:
            await outbox.tell(session, member.openid, words, case=case)


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
    return binding
