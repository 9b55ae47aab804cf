"""Issuing, revoking and looking up a case's code."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from qr import tokens
from storage import audit
from storage.clock import now
from storage.models import Case, CaseCode, Court


@dataclass(frozen=True)
class Lookup:
    """What a scanned or typed code leads to. `status`: ok | revoked | unknown | mistyped."""

    status: str
    code: CaseCode | None = None
    case: Case | None = None
    court: Court | None = None


def url_for(public_base_url: str, token: str) -> str:
    return f"{public_base_url}/q/{token}"


async def active_code(session: AsyncSession, case_id: int) -> CaseCode | None:
    return (
        await session.execute(
            select(CaseCode).where(
                col(CaseCode.case_id) == case_id, col(CaseCode.revoked_at).is_(None)
            )
        )
    ).scalar_one_or_none()


async def issue(session: AsyncSession, case: Case, *, actor: str) -> CaseCode:
    """A new code for the case; any live one is revoked first (re-issue)."""
    assert case.id is not None
    old = await active_code(session, case.id)
    if old is not None:
        await revoke(session, case, reason="reissued", actor=actor)
    # Collisions are astronomically rare for tokens, merely rare for short codes: retry.
    while True:
        short = tokens.new_short_code()
        taken = await session.execute(
            select(col(CaseCode.id)).where(col(CaseCode.short_code) == short)
        )
        if taken.first() is None:
            break
    code = CaseCode(case_id=case.id, token=tokens.new_token(), short_code=short)
    session.add(code)
    await session.flush()
    await audit.append(
        session,
        actor=actor,
        action="code.issued",
        subject=f"code:{code.id}",
        case_id=case.id,
        payload={"short_code": short, "replaces": old.id if old else None},
    )
    return code


async def revoke(session: AsyncSession, case: Case, *, reason: str, actor: str) -> CaseCode | None:
    assert case.id is not None
    code = await active_code(session, case.id)
    if code is None:
        return None
    code.revoked_at = now()
    code.revoke_reason = reason[:200]
    session.add(code)
    await session.flush()
    await audit.append(
        session,
        actor=actor,
        action="code.revoked",
        subject=f"code:{code.id}",
        case_id=case.id,
        payload={"short_code": code.short_code, "reason": reason},
    )
    return code


async def _resolve(session: AsyncSession, code: CaseCode | None) -> Lookup:
    if code is None:
        return Lookup("unknown")
    row = (
        await session.execute(
            select(Case, Court)
            .join(Court, col(Court.id) == col(Case.court_id))
            .where(col(Case.id) == code.case_id)
        )
    ).one()
    return Lookup("revoked" if code.revoked_at else "ok", code, row[0], row[1])


async def by_token(session: AsyncSession, token: str) -> Lookup:
    if not tokens.looks_like_token(token):
        return Lookup("unknown")
    found = await session.execute(select(CaseCode).where(col(CaseCode.token) == token))
    return await _resolve(session, found.scalar_one_or_none())


async def by_typed_text(session: AsyncSession, text: str) -> Lookup | None:
    """A short code or token typed into chat; None when the text is neither."""
    text = text.strip()
    if tokens.looks_like_token(text):
        return await by_token(session, text)
    status = tokens.short_code_status(text)
    if status == "no":
        return None
    if status == "mistyped":
        return Lookup("mistyped")
    found = await session.execute(
        select(CaseCode).where(col(CaseCode.short_code) == tokens.normalize(text))
    )
    return await _resolve(session, found.scalar_one_or_none())
