"""What an app does by form rather than by chat: the mini-program's and the H5 pages'
"ask this", "add to #12", "rate #12". Each action puts the conversation in the step the
chat would be in and runs that step's own flow with the person's words, so the rules,
caps, wording and records are the chat's own: one place for each. The person's chat step
is left as it was (an app action is not a turn in the chat).

An action arrives as an Inbound of kind "action": `action` names it, `code` carries its
fields as a query string (case=3&about=staff), `text` the person's words.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.events import Inbound
from bot.core.reply import Reply
from bot.rules import ratings, tickets
from handlers import ask, bind, complain, enforcement, items, mediation, texts
from handlers.context import Context
from storage.models import Binding, Case, MediationSlot, Staff, Ticket

ABOUT = {v: k for k, v in complain.ABOUT.items()}  # staff -> "1": the chat's choice
KINDS = ("question", "complaint", "asset_lead")


async def case_of(session: AsyncSession, inbound: Inbound) -> int | None:
    """The case an action is about (its record goes in that case's chain): the one it names,
    or its item's, when the item is the person's. The action itself checks they are bound."""
    f = fields_of(inbound)
    case_id, ticket_id = _int(f.get("case")), _int(f.get("ticket"))
    if case_id is not None or ticket_id is None:
        return case_id
    ticket = await session.get(Ticket, ticket_id)  # kept for the flow's own look-up
    return ticket.case_id if ticket is not None and ticket.openid == inbound.user else None


def fields_of(inbound: Inbound) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(inbound.code or "").items()}


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None


async def run(ctx: Context) -> Reply | None:
    """The action's answer; None when the person may not do it (not theirs, not found):
    the channel says "not found", never which."""
    before = dict(ctx.state)
    try:
        return await _run(ctx, fields_of(ctx.inbound))
    finally:
        ctx.state.clear()
        ctx.state.update(before)


async def _run(ctx: Context, f: dict[str, str]) -> Reply | None:
    name = ctx.inbound.action
    if name == "verify":
        case_id = _int(f.get("case"))
        if case_id is None:
            return None
        ctx.state.update(step="verify", pending_case=case_id)
        return await bind.verify(ctx)
    if name == "verify_phone":
        case_id = _int(f.get("case"))
        digest = f.get("phone_hash")
        if case_id is None or not digest:
            return None
        return await bind.verify_phone(ctx, case_id, digest)
    if name == "open":
        found = await _bound(ctx, _int(f.get("case")))
        kind = f.get("kind")
        if found is None or kind not in KINDS:
            return None
        case, binding = found
        ctx.state.update(case_id=case.id, ticket_id=None, sub=None)
        if kind == "question":
            ctx.state["step"] = "ask"
            return await ask.receive(ctx, case, binding)
        if kind == "complaint":
            about = f.get("about", "other")
            if about not in ABOUT:
                return None
            started = await complain.start(ctx, case, binding)
            if ctx.state.get("step") != "complain":  # today's cap reached: its words
                return started
            ctx.state.update(sub="text", about=about)
            return await complain.receive(ctx, case, binding)
        ctx.state.update(step="progress", sub="lead")
        return await enforcement.receive(ctx, case, binding)
    if name in ("book", "cancel"):
        found = await _bound(ctx, _int(f.get("case")))
        if found is None:
            return None
        case, binding = found
        ctx.state.update(case_id=case.id, ticket_id=None, step="book")
        if name == "cancel":
            return await mediation.receive(ctx, case, binding)  # its text: 取消
        slot = await ctx.session.get(MediationSlot, _int(f.get("slot")) or 0)
        mediator = await ctx.session.get(Staff, slot.mediator_id) if slot else None
        if slot is None or mediator is None or mediator.court_id != case.court_id:
            return None  # a slot of another court's mediator is not theirs to book
        ctx.state.update(sub="confirm", slot=slot.id, mediator=mediator.id)
        return await mediation.confirm(ctx, case, binding)
    if name == "add":
        found_item = await _ticket(ctx, _int(f.get("ticket")), _int(f.get("case")))
        if found_item is None:
            return None
        case, item = found_item
        if item.status == "closed":
            return Reply(texts.APP_ITEM_CLOSED.format(ticket=item.id), item=f"ticket:{item.id}")
        await items.add(ctx, item, case, ctx.inbound.text.strip())
        return Reply(texts.APP_ADDED.format(ticket=item.id), item=f"ticket:{item.id}")
    if name == "rate":
        score = _int(f.get("score"))
        ticket_id = _int(f.get("ticket"))
        on: tuple[Case, Ticket] | tuple[Case, Binding] | None = (
            await _ticket(ctx, ticket_id, _int(f.get("case")))
            if ticket_id is not None
            else await _bound(ctx, _int(f.get("case")))
        )
        if on is None or score not in (1, 2, 3):
            return None
        case = on[0]
        rated = await ratings.give(
            ctx.session,
            openid=ctx.inbound.user,
            case_id=case.id or 0,
            ticket_id=ticket_id,
            score=score,
        )
        if rated is None:
            return Reply(texts.RATE_TOO_LATE.strip())
        comment = ctx.inbound.text.strip()
        if comment:
            await ratings.comment(
                ctx.session,
                openid=ctx.inbound.user,
                case_id=case.id,
                rating_id=rated.id or 0,
                text=comment,
            )
        return Reply(texts.APP_RATED_WITH_COMMENT if comment else texts.APP_RATED)
    return None


async def _bound(ctx: Context, case_id: int | None) -> tuple[Case, Binding] | None:
    if case_id is None:
        return None
    return await tickets.active_case(ctx.session, ctx.inbound.user, case_id)


async def _ticket(
    ctx: Context, ticket_id: int | None, case_id: int | None
) -> tuple[Case, Ticket] | None:
    """The person's own item (on `case_id`, when one is named), with its case (None: not
    theirs, or none such)."""
    ticket = await ctx.session.get(Ticket, ticket_id) if ticket_id else None
    if ticket is None or ticket.openid != ctx.inbound.user:
        return None
    if case_id is not None and ticket.case_id != case_id:
        return None
    found = await _bound(ctx, ticket.case_id)
    return (found[0], ticket) if found is not None else None
