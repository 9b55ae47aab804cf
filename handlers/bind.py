"""Scan (or type) a case code, prove you are a party with the phone's last four digits;
staff bind their own WeChat (or their WeCom) with a one-time code."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlmodel import col

from bot.core.addresses import wecom_userid
from bot.core.masking import mask_name
from bot.core.reply import Reply
from bot.rules import attempts, bindings, tickets
from bot.rules import staff as staff_accounts
from handlers import home, texts
from handlers.context import Context
from qr import codes
from storage.models import Case, Court


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
    if (refused := _elsewhere(ctx, lookup.court.name)) is not None:
        return refused  # another account serves this court: nothing recorded, nothing shown
    await bindings.record_scan(ctx.session, ctx.inbound.user, lookup, via=ctx.inbound.kind)
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
    if (refused := await _elsewhere_case(ctx, case_id)) is not None:
        ctx.state.update(step=None, pending_case=None)
        return refused
    tries = await attempts.verify_tries(ctx.session, ctx.inbound.user, case_id)
    if tries.blocked() is not None:
        return await _locked_words(ctx, case_id, tries)
    if not re.fullmatch(r"\d{4}", text):
        return Reply(texts.DIGITS_ONLY_LEAD, texts.DIGITS_ONLY_CHOICES)
    party = await bindings.party_with_tail(ctx.session, case_id, text)
    if party is None:
        tries = await _wrong_try(ctx, case_id, tries)
        if tries.blocked() is not None:
            return await _locked_words(ctx, case_id, tries)
        left = min(
            attempts.VERIFY_PER_PERSON_AND_CASE - tries.person_and_case,
            attempts.VERIFY_PER_PERSON - tries.person,
            attempts.VERIFY_PER_CASE - tries.case,
        )
        return Reply(texts.WRONG_DIGITS.format(left=left))
    await bindings.bind(ctx.session, ctx.inbound.user, case_id, party)
    await ctx.person()  # a party the court now knows: a person, whichever channel comes next
    ctx.state.update(step=None, pending_case=None, case_id=case_id, ticket_id=None)
    verified = texts.VERIFIED.format(role=party.role, name=mask_name(party.name))
    if ctx.inbound.kind == "action":  # an app shows its own menu, not the chat's numbers
        return Reply(verified, item=f"case:{case_id}")
    return Reply(verified, item=f"case:{case_id}") + await home.menu_text(ctx)


async def verify_phone(ctx: Context, case_id: int, phone_digest: str) -> Reply:
    """An app verifies with the phone number WeChat vouched for (its keyed hash, made by the
    channel): a whole-number match binds, recorded as the stronger method. Same tries and
    lockouts as the digits (a number that is not the case's counts as a wrong try)."""
    if (refused := await _elsewhere_case(ctx, case_id)) is not None:
        return refused
    tries = await attempts.verify_tries(ctx.session, ctx.inbound.user, case_id)
    if tries.blocked() is not None:
        return await _locked_words(ctx, case_id, tries)
    existing = await tickets.binding_for(ctx.session, ctx.inbound.user, case_id)
    party = await bindings.party_with_phone(ctx.session, case_id, phone_digest)
    if party is None:
        tries = await _wrong_try(ctx, case_id, tries)
        if tries.blocked() is not None:
            return await _locked_words(ctx, case_id, tries)
        return Reply(texts.PHONE_NOT_ON_CASE)
    if existing is None:
        await bindings.bind(ctx.session, ctx.inbound.user, case_id, party, method="phone_number")
        await ctx.person()
    verified = texts.VERIFIED.format(role=party.role, name=mask_name(party.name))
    return Reply(verified, item=f"case:{case_id}")


def _elsewhere(ctx: Context, court: str) -> Reply | None:
    """The answer when another Official Account serves `court` (bot.rules.accounts)."""
    account = ctx.rules.accounts.elsewhere(ctx.inbound.user, court)
    if account is None:
        return None
    where = texts.account_words(account.name, court)
    return Reply(texts.CODE_OTHER_ACCOUNT.format(court=court, account=where))


async def _elsewhere_case(ctx: Context, case_id: int) -> Reply | None:
    """As _elsewhere, for a case named by id (an app's form, a verify step)."""
    if not ctx.rules.accounts.own:
        return None  # one account serves every court: nothing to look up
    court = (
        await ctx.session.execute(
            select(col(Court.name))
            .join(Case, col(Case.court_id) == col(Court.id))
            .where(col(Case.id) == case_id)
        )
    ).scalar()
    return None if court is None else _elsewhere(ctx, court)


async def _wrong_try(
    ctx: Context, case_id: int, tries: attempts.VerifyTries
) -> attempts.VerifyTries:
    """A wrong try counted and recorded; the court told once when the case pauses."""
    tries = await bindings.wrong_digits(ctx.session, ctx.inbound.user, case_id, tries)
    if tries.case == attempts.VERIFY_PER_CASE:
        await _tell_court_case_paused(ctx, case_id)
    return tries


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
    words = texts.CASE_PAUSED_NOTICE.format(
        case_number=case.case_number, n=attempts.VERIFY_PER_CASE
    )
    await bindings.pause_case(ctx.session, case, words)


# Bind codes always hold a letter, so a litigant's number is never taken for one.
BIND_CODE = re.compile(rf"^(?=.*[A-Za-z])[0-9A-Za-z]{{{staff_accounts.BIND_CODE_LEN}}}$")


def looks_like_bind_code(text: str) -> bool:
    return bool(BIND_CODE.match(text.strip()))


async def staff_bind(ctx: Context) -> Reply | None:
    mine, everyone = await attempts.bind_tries(ctx.session, ctx.inbound.user)
    if attempts.bind_blocked(mine, everyone):
        return Reply(texts.BIND_PAUSED)  # the code is not even looked at: no answer to learn from
    member = await staff_accounts.by_bind_code(ctx.session, ctx.inbound.text.strip())
    if member is None:
        await staff_accounts.wrong_bind_code(ctx.session, ctx.inbound.user, mine, everyone)
        return Reply(texts.BIND_CODE_BAD)
    if ctx.rules.accounts.own:  # staff are told things through their court's account
        court = await ctx.session.get_one(Court, member.court_id)
        account = ctx.rules.accounts.elsewhere(ctx.inbound.user, court.name)
        if account is not None:
            where = texts.account_words(account.name, court.name)
            return Reply(texts.STAFF_OTHER_ACCOUNT.format(court=court.name, account=where))
    userid = wecom_userid(ctx.inbound.user)  # sent from the court's WeCom app
    if userid is not None:
        await staff_accounts.bind_wecom(ctx.session, member, userid)
    else:
        await staff_accounts.bind_wechat(ctx.session, member, ctx.inbound.user)
    await ctx.person()
    ctx.state.clear()
    return Reply(texts.STAFF_BOUND.format(name=member.name, username=member.username))
