"""Staff accounts: one-time bind codes that tie a staff member to their own WeChat (or to
their userid in the court's WeCom), and finding a colleague by name."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core.addresses import WECOM, wecom_user
from bot.rules import attempts
from qr.tokens import ALPHABET, normalize
from storage import audit
from storage.models import Staff

BIND_CODE_LEN = 8


def code_hash(code: str) -> str:
    return hashlib.sha256(normalize(code).encode()).hexdigest()


async def by_username(session: AsyncSession, username: str) -> Staff | None:
    return (
        await session.execute(select(Staff).where(col(Staff.username) == username))
    ).scalar_one_or_none()


async def issue_bind_code(session: AsyncSession, staff: Staff, *, actor: str) -> str:
    """A fresh one-time code; only its hash is kept, and any earlier code stops working."""
    code = ""
    while not any(ch.isalpha() for ch in code):  # never all digits: see handlers.bind
        code = "".join(secrets.choice(ALPHABET) for _ in range(BIND_CODE_LEN))
    staff.bind_code_hash = code_hash(code)
    session.add(staff)
    await audit.append(
        session, actor=actor, action="staff.bind_code_issued", subject=f"staff:{staff.username}"
    )
    return code


async def by_bind_code(session: AsyncSession, code: str) -> Staff | None:
    """The active staff member a one-time bind code was issued to, if it still stands."""
    return (
        await session.execute(
            select(Staff).where(col(Staff.bind_code_hash) == code_hash(code), col(Staff.active))
        )
    ).scalar_one_or_none()


async def wrong_bind_code(session: AsyncSession, openid: str, mine: int, everyone: int) -> None:
    """A wrong code: one row per try (bot.rules.attempts); the audit log hears only of the
    lockout it causes, once. `mine`, `everyone`: the wrong tries before this one."""
    await attempts.record(session, "bind", openid)
    if attempts.bind_blocked(mine + 1, everyone + 1) and not attempts.bind_blocked(mine, everyone):
        await audit.append(
            session,
            actor=openid,
            action="staff.bind_locked",
            payload={"wrong_tries": mine + 1, "everyone": everyone + 1},
        )


async def bind_wechat(session: AsyncSession, member: Staff, openid: str) -> None:
    """Tie `member` to this WeChat with their code, used up: one WeChat per staff member,
    one staff member per WeChat (whoever had it before loses it)."""
    previous = (
        await session.execute(select(Staff).where(col(Staff.openid) == openid))
    ).scalar_one_or_none()
    if previous is not None and previous.id != member.id:
        previous.openid = None
        session.add(previous)
        await session.flush()
    member.openid = openid
    member.bind_code_hash = None  # one use only
    session.add(member)
    await audit.append(
        session, actor=openid, action="staff.bound", subject=f"staff:{member.username}"
    )


async def bind_wecom(session: AsyncSession, member: Staff, userid: str) -> None:
    """Tie `member` to their WeCom userid with their code, used up: one userid per staff
    member, one staff member per userid (whoever had it before loses it). Their WeChat
    binding, if any, stays: one person, told from now on through WeCom."""
    userid = userid.lower()  # as WeCom compares them
    previous = await by_wecom_userid(session, userid, active_only=False)
    if previous is not None and previous.id != member.id:
        previous.wecom_userid = None
        session.add(previous)
        await session.flush()
    member.wecom_userid = userid
    member.bind_code_hash = None  # one use only
    session.add(member)
    await audit.append(
        session,
        actor=wecom_user(userid),
        action="staff.bound",
        subject=f"staff:{member.username}",
        payload={"channel": WECOM},
    )


async def by_wecom_userid(
    session: AsyncSession, userid: str, *, active_only: bool = True
) -> Staff | None:
    """The staff member linked to this WeCom userid (compared without case, as WeCom does)."""
    found = select(Staff).where(col(Staff.wecom_userid) == userid.lower())
    if active_only:
        found = found.where(col(Staff.active))
    return (await session.execute(found)).scalar_one_or_none()


async def named(session: AsyncSession, court_id: int, who: str) -> list[Staff]:
    """The court's active staff whose username or name is `who`: by username if one is,
    else everyone of that name (a name two people share gives two)."""
    found = list(
        (
            await session.execute(
                select(Staff)
                .where(
                    col(Staff.court_id) == court_id,
                    col(Staff.active),
                    (col(Staff.username) == who) | (col(Staff.name) == who),
                )
                .order_by(col(Staff.id))
            )
        ).scalars()
    )
    return [s for s in found if s.username == who] or found
