"""代办 from a staff member's own WeChat: help a person who is at the desk (bot.rules.desk).

`代办`, then scan the person's case code with the staff phone (or type it), choose the
party, type the last four digits of the phone the person states after seeing their ID,
read the consent statement aloud and confirm it was accepted. From then on the staff
member's messages are the party's (bot.dialog.dispatch runs them as `desk:<party>`),
until `结束代办` or 30 idle minutes.
"""

from __future__ import annotations

from bot.core.events import Inbound
from bot.core.masking import mask_name
from bot.core.reply import Choice, Reply
from bot.rules import desk
from handlers import texts
from handlers.context import Context
from qr import codes
from storage.models import Case, DeskSession, Party, Staff

BEGIN = "代办"
END = "结束代办"


def own_word(inbound: Inbound) -> bool:
    """While acting for a party, what a staff member still says as themselves: ending it.
    A scan is theirs too: a party at the desk is helped on one case only."""
    return inbound.plain == END or inbound.kind in ("scan", "subscribe", "unsubscribe")


async def begin(ctx: Context, staff: Staff) -> Reply:
    """`代办`: start helping someone at the desk."""
    if not desk.may_help(staff):
        return Reply(texts.DESK_NOT_ALLOWED)
    current = await desk.open_for(ctx.session, staff.id or 0)
    if current is not None:
        return Reply(texts.DESK_ALREADY.format(name=await _party_name(ctx, current)))
    ctx.state.clear()
    ctx.state.update(step="desk", sub="code")
    return Reply(texts.DESK_SCAN)


async def finish(ctx: Context, staff: Staff) -> Reply:
    """`结束代办`."""
    ctx.state.pop("desk", None)
    _forget(ctx)
    current = await desk.open_for(ctx.session, staff.id or 0)
    if current is None:
        return Reply(texts.DESK_NONE)
    await desk.end(ctx.session, current, staff)
    return Reply(texts.DESK_ENDED.format(name=await _party_name(ctx, current)))


async def step(ctx: Context, staff: Staff) -> Reply | None:
    """The steps between `代办` and an open session."""
    word, sub = ctx.inbound.plain, ctx.state.get("sub")
    if word in ("0", "取消", END):
        _forget(ctx)
        return Reply(texts.DESK_CANCELLED)
    if sub == "code":
        return await _code(ctx, staff)
    case = await ctx.session.get(Case, ctx.state.get("desk_case") or 0)
    if case is None or case.court_id != staff.court_id:
        _forget(ctx)
        return Reply(texts.DESK_CANCELLED)
    parties = await desk.parties_of(ctx.session, case)
    if sub == "party":
        if not (word.isdigit() and 1 <= int(word) <= len(parties)):
            return _party_list(case, parties)
        ctx.state.update(sub="digits", desk_party=parties[int(word) - 1].id)
        return Reply(texts.DESK_DIGITS)
    if sub == "digits":
        if not (word.isdigit() and len(word) == 4):
            return Reply(texts.DESK_DIGITS)
        ctx.state.update(sub="consent", desk_digits=word)
        return Reply(texts.DESK_CONSENT.format(statement=desk.CONSENT_STATEMENT))
    if sub == "consent":
        if word == "2":
            _forget(ctx)
            return Reply(texts.DESK_NO_CONSENT)
        if word != "1":
            return Reply(texts.DESK_CONSENT.format(statement=desk.CONSENT_STATEMENT))
        return await _open(ctx, staff, case)
    _forget(ctx)
    return Reply(texts.DESK_CANCELLED)


async def _code(ctx: Context, staff: Staff) -> Reply:
    inbound = ctx.inbound
    lookup: codes.Lookup | None
    if inbound.kind in ("scan", "subscribe") and inbound.code:
        lookup = await codes.by_token(ctx.session, inbound.code)
    else:
        lookup = await codes.by_typed_text(ctx.session, inbound.plain)
    if lookup is None or lookup.status != "ok" or lookup.case is None:
        return Reply(texts.DESK_CODE_BAD)
    if lookup.case.court_id != staff.court_id:
        return Reply(texts.DESK_OTHER_COURT)
    ctx.state.update(sub="party", desk_case=lookup.case.id)
    return _party_list(lookup.case, await desk.parties_of(ctx.session, lookup.case))


async def _open(ctx: Context, staff: Staff, case: Case) -> Reply:
    started = await desk.start(
        ctx.session,
        staff,
        case,
        int(ctx.state.get("desk_party") or 0),
        digits=str(ctx.state.get("desk_digits") or ""),
        id_checked=True,  # "已核对身份证件" is part of what the assistant confirmed with 1
        consent=True,
        via="wechat",
    )
    if started.desk is None:
        refused = started.refused or "role"
        if refused == "digits":
            ctx.state.update(sub="digits")
            return Reply(texts.DESK_DIGITS_WRONG)
        _forget(ctx)
        return Reply(texts.desk_refused(refused, started.helper))
    _forget(ctx)
    opened = started.desk
    ctx.state["desk"] = {"id": opened.id, "user": opened.user, "staff": staff.username}
    party = await ctx.session.get_one(Party, opened.party_id)
    return Reply(
        texts.DESK_OPEN.format(
            name=mask_name(party.name), role=party.role, case_number=case.case_number
        )
    )


def _forget(ctx: Context) -> None:
    for key in ("step", "sub", "desk_case", "desk_party", "desk_digits"):
        ctx.state.pop(key, None)


def _party_list(case: Case, parties: list[Party]) -> Reply:
    return Reply(
        texts.DESK_CHOOSE_PARTY.format(case_number=case.case_number),
        tuple(Choice(str(i), f"{p.role} {mask_name(p.name)}") for i, p in enumerate(parties, 1)),
    )


async def _party_name(ctx: Context, current: DeskSession) -> str:
    party = await ctx.session.get(Party, current.party_id)
    return mask_name(party.name) if party else ""
