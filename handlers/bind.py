"""Scan (or type) a case code, prove you are a party with the phone's last four digits;
staff bind their own WeChat with a one-time code."""

from __future__ import annotations

import re
from functools import partial

from sqlalchemy import select

from bot import staff as staff_accounts
from bot import tickets
from bot.context import Context
from bot.masking import mask_name
from handlers import menu, texts
from qr import codes
from storage import audit, state
from storage.models import Binding, Party, Staff

MAX_WRONG = 5
LOCK_S = 3600


async def welcome(ctx: Context) -> str | None:
    return texts.WELCOME


async def scan(ctx: Context) -> str | None:
    """A scan event carrying a token (subscribe with qrscene_, or SCAN)."""
    return await open_case(ctx, await codes.by_token(ctx.session, ctx.inbound.code or ""))


async def open_case(ctx: Context, lookup: codes.Lookup) -> str | None:
    if lookup.status == "mistyped":
        return texts.CODE_MISTYPED
    if lookup.status == "unknown" or lookup.case is None or lookup.court is None:
        return texts.CODE_UNKNOWN
    case = lookup.case
    await audit.append(
        ctx.session,
        actor=ctx.inbound.user,
        action="code.scanned",
        subject=f"code:{lookup.code.id if lookup.code else ''}",
        case_id=case.id,
        payload={"status": lookup.status, "via": ctx.inbound.kind},
    )
    if lookup.status == "revoked":
        return texts.CODE_REVOKED
    greeting = texts.CODE_OK.format(
        court=lookup.court.name, case_number=case.case_number, cause=case.cause
    )
    if await tickets.binding_for(ctx.session, ctx.inbound.user, case.id or 0) is not None:
        ctx.state.update(case_id=case.id, step=None, ticket_id=None)
        return greeting + texts.ALREADY_BOUND + await menu.menu_text(ctx)
    ctx.state.update(step="verify", pending_case=case.id)
    return greeting + texts.ASK_DIGITS


async def verify(ctx: Context) -> str | None:
    """The user answers with the last four digits of the registered phone."""
    case_id = ctx.state.get("pending_case")
    text = ctx.inbound.text.strip()
    if text == "0" or case_id is None:
        ctx.state.update(step=None, pending_case=None)
        return await menu.menu_text(ctx) if ctx.state.get("case_id") else texts.WELCOME
    counter = f"verify:{ctx.inbound.user}:{case_id}"
    failed = await state.failures(ctx.redis, counter)
    if failed >= MAX_WRONG:
        return texts.LOCKED
    if not re.fullmatch(r"\d{4}", text):
        return texts.DIGITS_ONLY
    party = (
        await ctx.session.execute(
            select(Party)
            .where(Party.case_id == case_id, Party.phone_tail == text)
            .order_by(Party.id)
            .limit(1)
        )
    ).scalar_one_or_none()
    if party is None:
        # Counted after commit: a rolled-back or re-run attempt must not count twice.
        # (The user's messages are handled one at a time, so `failed` is still current.)
        wrong = failed + 1
        ctx.after_commit.append(partial(state.add_failure, ctx.redis, counter, LOCK_S))
        await audit.append(
            ctx.session,
            actor=ctx.inbound.user,
            action="bind.failed",
            case_id=case_id,
            payload={"attempt": wrong},
        )
        if wrong >= MAX_WRONG:
            return texts.LOCKED
        return texts.WRONG_DIGITS.format(left=MAX_WRONG - wrong)
    binding = Binding(
        openid=ctx.inbound.user, case_id=case_id, party_id=party.id or 0, method="phone_tail"
    )
    ctx.session.add(binding)
    await ctx.session.flush()
    ctx.after_commit.append(partial(state.clear_failures, ctx.redis, counter))
    await audit.append(
        ctx.session,
        actor=ctx.inbound.user,
        action="bind.verified",
        subject=f"party:{party.id}",
        case_id=case_id,
        payload={"method": "phone_tail", "role": party.role},
    )
    ctx.state.update(step=None, pending_case=None, case_id=case_id, ticket_id=None)
    return texts.VERIFIED.format(
        role=party.role, name=mask_name(party.name)
    ) + await menu.menu_text(ctx)


# Bind codes always hold a letter, so a litigant's number is never taken for one.
BIND_CODE = re.compile(rf"^(?=.*[A-Za-z])[0-9A-Za-z]{{{staff_accounts.BIND_CODE_LEN}}}$")


def looks_like_bind_code(text: str) -> bool:
    return bool(BIND_CODE.match(text.strip()))


async def staff_bind(ctx: Context) -> str | None:
    code_hash = staff_accounts.code_hash(ctx.inbound.text.strip())
    member = (
        await ctx.session.execute(
            select(Staff).where(Staff.bind_code_hash == code_hash, Staff.active)
        )
    ).scalar_one_or_none()
    if member is None:
        await audit.append(ctx.session, actor=ctx.inbound.user, action="staff.bind_failed")
        return texts.BIND_CODE_BAD
    # One WeChat per staff member, one staff member per WeChat.
    previous = (
        await ctx.session.execute(select(Staff).where(Staff.openid == ctx.inbound.user))
    ).scalar_one_or_none()
    if previous is not None and previous.id != member.id:
        previous.openid = None
        ctx.session.add(previous)
        await ctx.session.flush()
    member.openid = ctx.inbound.user
    member.bind_code_hash = None  # one use only
    ctx.session.add(member)
    await audit.append(
        ctx.session,
        actor=ctx.inbound.user,
        action="staff.bound",
        subject=f"staff:{member.username}",
    )
    ctx.state.clear()
    return texts.STAFF_BOUND.format(name=member.name, username=member.username)
