"""Signing in to the app (the mini-program, or the H5 pages in WeChat's browser): who the
person is, and an opaque session token for them.

The token is 32 random bytes (URL-safe base64) given to the client once; the server keeps
only its SHA-256, with the person's `user` (bot.core.addresses), when it expires, and
whether it was revoked. A mini-program user is the Official Account user WeChat's unionid
says they are, when that user is known with the unionid (one person: the same cases, the
same lockouts); otherwise they are `mp:<openid>`.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from bot.core.addresses import MINIPROGRAM, WECHAT, mp_user, wechat_user
from bot.core.clock import now
from bot.rules import people
from storage.models import AppSession, ChannelIdentity


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def user_for_miniprogram(session: AsyncSession, openid: str, unionid: str | None) -> str:
    """The user a mini-program openid is: the Official Account user of the same person
    (joined by unionid: bot.rules.people), else `mp:<openid>`."""
    person_id = await people.person_for(session, MINIPROGRAM, openid, unionid=unionid)
    official = (
        await session.execute(
            select(col(ChannelIdentity.external_id))
            .where(
                col(ChannelIdentity.person_id) == person_id,
                col(ChannelIdentity.channel) == WECHAT,
            )
            .order_by(col(ChannelIdentity.id))
            .limit(1)
        )
    ).scalar()
    return official or mp_user(openid)


async def user_for_official_account(
    session: AsyncSession, openid: str, unionid: str | None, account: str | None = None
) -> str:
    """The H5 pages' user: web authorisation gives the Official Account openid itself (and,
    where WeChat has one, the unionid that lets the mini-program find the same person).
    `account`: the slug of the court's own account it was given by (MST_COURTS_FILE); the
    user is then who that account's chat knows, `wx:<slug>:<openid>` (the callback's own
    bot.core.addresses.wechat_user), the same person (bot.rules.people) as in the chat."""
    user = wechat_user(openid, account)
    await people.person_for(session, WECHAT, user, unionid=unionid)
    return user


async def start(
    session: AsyncSession,
    *,
    user: str,
    channel: str,
    openid: str,
    unionid: str | None = None,
    session_key: str | None = None,
    days: int = 7,
) -> tuple[str, AppSession]:
    """A new session; the token (given to the client, kept here only as its digest)."""
    token = secrets.token_urlsafe(32)
    at = now()
    row = AppSession(
        token_sha256=digest(token),
        user=user,
        channel=channel,
        openid=openid,
        unionid=unionid,
        session_key=session_key,
        created_at=at,
        expires_at=at + timedelta(days=days),
    )
    session.add(row)
    await session.flush()
    return token, row


async def find(session: AsyncSession, token: str | None) -> AppSession | None:
    """The live session a token names (None: unknown, expired or revoked)."""
    if not token or len(token) > 100:
        return None
    row = await session.get(AppSession, digest(token))
    if row is None or row.revoked_at is not None or row.expires_at <= now():
        return None
    return row


async def end(session: AsyncSession, token: str) -> bool:
    """Sign out: the token is refused from now on."""
    done = await session.execute(
        update(AppSession)
        .where(col(AppSession.token_sha256) == digest(token), col(AppSession.revoked_at).is_(None))
        .values(revoked_at=now())
    )
    return bool(getattr(done, "rowcount", 0))


async def end_all(session: AsyncSession, user: str) -> int:
    """Every session of a user revoked (the court's lever: a lost phone)."""
    done = await session.execute(
        update(AppSession)
        .where(col(AppSession.user) == user, col(AppSession.revoked_at).is_(None))
        .values(revoked_at=now())
    )
    return int(getattr(done, "rowcount", 0))
