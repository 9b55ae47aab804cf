"""Complaints and reports (投诉举报): what it is about, then the text. Handled by the
court's supervision team, never by the staff member it is about (bot.rules.tickets.route)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from bot.core.clock import court_tz, now
from bot.core.context import Context
from bot.core.reply import Link, Reply
from bot.rules import receipts, tickets
from handlers import home, items, texts
from storage import state
from storage.models import Binding, Case, Court

ABOUT = {"1": "staff", "2": "process", "3": "other_party", "4": "other"}


async def start(ctx: Context, case: Case, binding: Binding) -> Reply:
    if await _used_today(ctx, case, "complaints") >= ctx.settings.complaint_daily_cap:
        return await _capped(ctx, case) + await home.menu_text(ctx)
    ctx.state.update(step="complain", sub="about", ticket_id=None)
    return _about()


async def receive(ctx: Context, case: Case, binding: Binding) -> Reply:
    text = ctx.inbound.text.strip()
    if ctx.state.get("sub") == "about":
        about = ABOUT.get(ctx.inbound.plain)
        if about is None:
            return _about()
        ctx.state.update(sub="text", about=about)
        return Reply(texts.COMPLAIN_PROMPT, (texts.TO_MENU_SAID,))
    if not text:
        return Reply(texts.COMPLAIN_PROMPT, (texts.TO_MENU_SAID,))
    ticket = await items.current(ctx, case)
    if ticket is not None:
        cap = ctx.settings.complaint_message_daily_cap
        if await _used_today(ctx, case, "complaint-messages") >= cap:
            return Reply(
                texts.COMPLAIN_MESSAGE_CAP.format(
                    limit=cap, day=_tomorrow(), call=await _call(ctx, case)
                ),
                item=f"ticket:{ticket.id}",
            )
        await items.add(ctx, ticket, case, text)
        _count_today(ctx, case, "complaint-messages")
        return Reply(
            texts.COMPLAIN_ADDED_LEAD.format(ticket=ticket.id),
            (texts.TO_MENU,),
            item=f"ticket:{ticket.id}",
        )
    if await _used_today(ctx, case, "complaints") >= ctx.settings.complaint_daily_cap:
        return await _capped(ctx, case)
    opened = await items.open_new(
        ctx, case, binding, kind="complaint", text=text, about=ctx.state.get("about")
    )
    _count_today(ctx, case, "complaints")
    ctx.state["sub"] = "more"
    receipt = receipts.url(ctx.settings.public_base_url, opened.receipt)
    return Reply(
        texts.COMPLAIN_RECEIVED.format(
            ticket=opened.ticket.id, due=tickets.due_words(opened.ticket), receipt=receipt
        ),
        (texts.TO_MENU_SAID,),
        links=(Link(texts.RECEIPT, receipt),),
        item=f"ticket:{opened.ticket.id}",
    )


def _about() -> Reply:
    return Reply(texts.COMPLAIN_ABOUT_LEAD, texts.COMPLAIN_ABOUT_CHOICES)


async def _capped(ctx: Context, case: Case) -> Reply:
    return Reply(
        texts.COMPLAIN_CAP.format(
            limit=ctx.settings.complaint_daily_cap, day=_tomorrow(), call=await _call(ctx, case)
        )
    )


async def _call(ctx: Context, case: Case) -> str:
    return texts.call(await ctx.session.get(Court, case.court_id))


def _day_key(ctx: Context, case: Case, what: str) -> str:
    return (
        f"cap:{what}:{ctx.inbound.user}:{case.id}:{now().astimezone(court_tz()).date().isoformat()}"
    )


async def _used_today(ctx: Context, case: Case, what: str) -> int:
    return await state.counted(ctx.redis, _day_key(ctx, case, what))


def _count_today(ctx: Context, case: Case, what: str) -> None:
    """Counted once the complaint is stored: one that was rolled back uses none of the cap."""
    ctx.after_commit.append(
        partial(state.bump, ctx.redis, _day_key(ctx, case, what), 2 * 24 * 3600)
    )


def _tomorrow() -> str:
    day = (now().astimezone(court_tz()) + timedelta(days=1)).date()
    return f"明天（{day.month}月{day.day}日）"
