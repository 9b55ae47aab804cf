"""Limits on guessing: a case's phone digits and staff bind codes.

Wrong tries are rows in the database (`FailedAttempt`), written in the flow's transaction:
a try that was rolled back does not count, and a Redis restart hands out no fresh guesses.
Digits are limited three ways within an hour — per person and case, per case across
everyone (so many new WeChat accounts cannot share out the 10,000 numbers), and per person
across cases; bind codes per person and across everyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, case, func, insert, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core.clock import now
from storage.models import Case, FailedAttempt

WINDOW = timedelta(hours=1)
VERIFY_PER_PERSON_AND_CASE = 5
VERIFY_PER_CASE = 10  # all WeChat accounts together: what a fresh attacker gets per case per hour
VERIFY_PER_PERSON = 10  # across all cases
BIND_PER_PERSON = 5
BIND_EVERYONE = 100


@dataclass(frozen=True)
class VerifyTries:
    person_and_case: int
    case: int
    person: int

    def blocked(self) -> str | None:
        """Which limit is used up: 'case' (the case pauses), 'person', or None."""
        if self.case >= VERIFY_PER_CASE:
            return "case"
        if self.person_and_case >= VERIFY_PER_PERSON_AND_CASE or self.person >= VERIFY_PER_PERSON:
            return "person"
        return None


async def verify_tries(session: AsyncSession, openid: str, case_id: int) -> VerifyTries:
    """Wrong digits within the window. On PostgreSQL the case row is locked for the rest of
    the transaction, so concurrent guesses on one case are counted one after the other
    (SQLite's writers are serial already)."""
    await session.execute(select(col(Case.id)).where(col(Case.id) == case_id).with_for_update())
    mine, this_case = col(FailedAttempt.openid) == openid, col(FailedAttempt.case_id) == case_id
    row = (
        await session.execute(
            select(
                func.count(case((and_(mine, this_case), 1))),
                func.count(case((this_case, 1))),
                func.count(case((mine, 1))),
            ).where(
                col(FailedAttempt.kind) == "verify",
                col(FailedAttempt.at) > now() - WINDOW,
                or_(mine, this_case),
            )
        )
    ).one()
    return VerifyTries(int(row[0]), int(row[1]), int(row[2]))


async def bind_tries(session: AsyncSession, openid: str) -> tuple[int, int]:
    """(this person's wrong bind codes, everyone's) within the window."""
    mine = col(FailedAttempt.openid) == openid
    row = (
        await session.execute(
            select(func.count(case((mine, 1))), func.count()).where(
                col(FailedAttempt.kind) == "bind", col(FailedAttempt.at) > now() - WINDOW
            )
        )
    ).one()
    return int(row[0]), int(row[1])


def bind_blocked(mine: int, everyone: int) -> bool:
    return mine >= BIND_PER_PERSON or everyone >= BIND_EVERYONE


async def record(session: AsyncSession, kind: str, openid: str, case_id: int | None = None) -> None:
    await session.execute(
        insert(FailedAttempt),
        {"kind": kind, "openid": openid[:64], "case_id": case_id, "at": now()},
    )
