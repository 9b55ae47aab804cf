"""Staff accounts: one-time bind codes that tie a staff member to their own WeChat."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

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
