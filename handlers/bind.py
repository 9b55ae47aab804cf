"""Scanning a case code (or typing it) opens the case for this user."""

from __future__ import annotations

from bot.context import Context
from handlers import texts
from qr import codes
from storage import audit


async def welcome(ctx: Context) -> str | None:
    return texts.WELCOME


async def scan(ctx: Context) -> str | None:
    """A scan event carrying a token (subscribe with qrscene_, or SCAN)."""
    lookup = await codes.by_token(ctx.session, ctx.inbound.code or "")
    return await open_case(ctx, lookup)


async def typed_code(ctx: Context, lookup: codes.Lookup) -> str | None:
    return await open_case(ctx, lookup)


async def open_case(ctx: Context, lookup: codes.Lookup) -> str | None:
    if lookup.status == "mistyped":
        return texts.CODE_MISTYPED
    if lookup.status == "unknown" or lookup.case is None or lookup.court is None:
        return texts.CODE_UNKNOWN
    await audit.append(
        ctx.session,
        actor=ctx.inbound.user,
        action="code.scanned",
        subject=f"code:{lookup.code.id if lookup.code else ''}",
        case_id=lookup.case.id,
        payload={"status": lookup.status, "via": ctx.inbound.kind},
    )
    if lookup.status == "revoked":
        return texts.CODE_REVOKED
    ctx.state["case_id"] = lookup.case.id
    return texts.CODE_OK.format(
        court=lookup.court.name, case_number=lookup.case.case_number, cause=lookup.case.cause
    )
