"""Scan (or type) a case code, prove you are a party with the phone's last four digits;
staff bind their own WeChat with a one-time code."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlmodel import col

from bot.core.context import Context
from bot.core.masking import mask_name
from bot.core.reply import Reply
from bot.outbox import queue as outbox
from bot.rules import access, attempts, tickets
from bot.rules import staff as staff_accounts
from handlers import home, texts
from qr import codes
from storage import audit
from storage.models import Binding, Case, Court, Party, Staff


async def welcome(ctx: Context) -> Reply | None:
    return Reply(texts.WELCOME)


async def scan(ctx: Context) -> Reply | None:
    """A scan event carrying a token (subscribe with qrscene_, or SCAN)."""
    return await open_case(ctx, await codes.by_token(ctx.session, ctx.inbound.code or ""))


async def open_case(ctx: Context, lookup: codes.Lookup) -> Reply | None:
    if lookup.status == "mistyped":
        return Reply(texts.CODE_MISTYPED)
    if lookup.status == "unknown" or lookup.case is None or lookup.court is None:
        return Reply(texts.CODE_UNKNOWN)
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
        return Reply(texts.CODE_REVOKED.format(call=texts.call(lookup.court)))
    greeting = Reply(
        texts.CODE_OK.format(
            how=texts.CODE_TYPED if ctx.inbound.kind == "text" else texts.CODE_SCANNED,
            court=lookup.court.name,
            case_number=case.case_number,
            cause=case.cause,
        ),
        item=f"case:{case.id}",
    )
    if await tickets.binding_for(ctx.session, ctx.inbound.user, case.id or 0) is not None:
        ctx.state.update(case_id=case.id, step=None, ticket_id=None)
        return greeting + texts.ALREADY_BOUND + await home.menu_text(ctx)
    ctx.state.update(step="verify", pending_case=case.id)
    return greeting + texts.ASK_DIGITS


async def verify(ctx: Context) -> Reply | None:
    """The user answers with the last four digits of the registered phone."""
    case_id = ctx.state.get("pending_case")
    text = ctx.inbound.plain
    if text == "0" or case_id is None:
        ctx.state.update(step=None, pending_case=None)
        return await home.menu_text(ctx) if ctx.state.get("case_id") else Reply(texts.WELCOME)
    tries = await attempts.verify_tries(ctx.session, ctx.inbound.user, case_id)
    if tries.blocked() is not None:
        return await _locked_words(ctx, case_id, tries)
    if not re.fullmatch(r"\d{4}", text):
        return Reply(texts.DIGITS_ONLY_LEAD, texts.DIGITS_ONLY_CHOICES)
    party = (
        await ctx.session.execute(
            select(Party)
            .where(col(Party.case_id) == case_id, col(Party.phone_tail) == text)
            .order_by(col(Party.id))
            .limit(1)
        )
    ).scalar_one_or_none()
    if party is None:
        # Counted in this transaction: a rolled-back or re-run attempt counts once.
        await attempts.record(ctx.session, "verify", ctx.inbound.user, case_id)
        tries = attempts.VerifyTries(tries.person_and_case + 1, tries.case + 1, tries.person + 1)
        await audit.append(
            ctx.session,
            actor=ctx.inbound.user,
            action="bind.failed",
            case_id=case_id,
            payload={"attempt": tries.person_and_case, "on_case": tries.case},
        )
        if tries.case == attempts.VERIFY_PER_CASE:
            await _tell_court_case_paused(ctx, case_id)
        if tries.blocked() is not None:
            return await _locked_words(ctx, case_id, tries)
        left = min(
            attempts.VERIFY_PER_PERSON_AND_CASE - tries.person_and_case,
            attempts.VERIFY_PER_PERSON - tries.person,
            attempts.VERIFY_PER_CASE - tries.case,
        )
        return Reply(texts.WRONG_DIGITS.format(left=left))
    binding = Binding(
        openid=ctx.inbound.user, case_id=case_id, party_id=party.id or 0, method="phone_tail"
    )
    ctx.session.add(binding)
    await ctx.session.flush()
    await audit.append(
        ctx.session,
        actor=ctx.inbound.user,
        action="bind.verified",
        subject=f"party:{party.id}",
        case_id=case_id,
        payload={"method": "phone_tail", "role": party.role},
    )
    ctx.state.update(step=None, pending_case=None, case_id=case_id, ticket_id=None)
    verified = texts.VERIFIED.format(role=party.role, name=mask_name(party.name))
    return Reply(verified, item=f"case:{case_id}") + await home.menu_text(ctx)


async def _locked_words(ctx: Context, case_id: int, tries: attempts.VerifyTries) -> Reply:
    case = await ctx.session.get(Case, case_id)
    court = await ctx.session.get(Court, case.court_id) if case else None
    if tries.blocked() != "case":
        return Reply(texts.LOCKED.format(desk=texts.desk(court)))
    return Reply(texts.CASE_PAUSED.format(desk=texts.desk(court)))


async def _tell_court_case_paused(ctx: Context, case_id: int) -> None:
    """Too many wrong digits on one case from everyone together: someone may be guessing.
    The court's reception team is told once, when the pause begins, and it is recorded."""
    case = await ctx.session.get_one(Case, case_id)
    await audit.append(
        ctx.session,
        actor="system",
        action="bind.case_paused",
        case_id=case_id,
        payload={"wrong_tries": attempts.VERIFY_PER_CASE, "window_s": attempts.WINDOW.seconds},
    )
    for member in await access.inbox_members(ctx.session, case.court_id, "reception"):
        if member.openid:
            await outbox.tell(
                ctx.session,
                member.openid,
                texts.CASE_PAUSED_NOTICE.format(
                    case_number=case.case_number, n=attempts.VERIFY_PER_CASE
                ),
                case=case,
            )


# Bind codes always hold a letter, so a litigant's number is never taken for one.
BIND_CODE = re.compile(rf"^(?=.*[A-Za-z])[0-9A-Za-z]{{{staff_accounts.BIND_CODE_LEN}}}$")


def looks_like_bind_code(text: str) -> bool:
    return bool(BIND_CODE.match(text.strip()))


async def staff_bind(ctx: Context) -> Reply | None:
    mine, everyone = await attempts.bind_tries(ctx.session, ctx.inbound.user)
    if attempts.bind_blocked(mine, everyone):
        return Reply(texts.BIND_PAUSED)  # the code is not even looked at: no answer to learn from
    code_hash = staff_accounts.code_hash(ctx.inbound.text.strip())
    member = (
        await ctx.session.execute(
            select(Staff).where(col(Staff.bind_code_hash) == code_hash, col(Staff.active))
        )
    ).scalar_one_or_none()
    if member is None:
        # One row per wrong try; the audit log hears only of a lockout, once.
        await attempts.record(ctx.session, "bind", ctx.inbound.user)
        if attempts.bind_blocked(mine + 1, everyone + 1) and not attempts.bind_blocked(
            mine, everyone
        ):
            await audit.append(
                ctx.session,
                actor=ctx.inbound.user,
                action="staff.bind_locked",
                payload={"wrong_tries": mine + 1, "everyone": everyone + 1},
            )
        return Reply(texts.BIND_CODE_BAD)
    # One WeChat per staff member, one staff member per WeChat.
    previous = (
        await ctx.session.execute(select(Staff).where(col(Staff.openid) == ctx.inbound.user))
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
    return Reply(texts.STAFF_BOUND.format(name=member.name, username=member.username))
