"""Complaints and reports (投诉举报): what it is about, then the text. Handled by the
court's supervision team, never by the staff member it is about (bot.rules.tickets.route)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from bot.core.clock import court_tz, now
from bot.core.context import Context
from bot.rules import receipts, tickets
from handlers import home, items, texts
from storage import state
from storage.models import Binding, Case, Court

ABOUT = {"1": "staff", "2": "process", "3": "other_party", "4": "other"}


async def start(ctx: Context, case: Case, binding: Binding) -> str:
    if await _used_today(ctx, case, "complaints") >= ctx.settings.complaint_daily_cap:
        return texts.COMPLAIN_CAP.format(
            limit=ctx.settings.complaint_daily_cap, day=_tomorrow(), call=await _call(ctx, case)
        ) + await home.menu_text(ctx)
    ctx.state.update(step="complain", sub="about", ticket_id=None)
    return texts.COMPLAIN_ABOUT


async def receive(ctx: Context, case: Case, binding: Binding) -> str:
    text = ctx.inbound.text.strip()
    if ctx.state.get("sub") == "about":
        about = ABOUT.get(ctx.inbound.plain)
        if about is None:
            return texts.COMPLAIN_ABOUT
        ctx.state.update(sub="text", about=about)
        return texts.COMPLAIN_PROMPT
    if not text:
        return texts.COMPLAIN_PROMPT
    ticket = await items.current(ctx, case)
    if ticket is not None:
        cap = ctx.settings.complaint_message_daily_cap
        if await _used_today(ctx, case, "complaint-messages") >= cap:
            return texts.COMPLAIN_MESSAGE_CAP.format(
                limit=cap, day=_tomorrow(), call=await _call(ctx, case)
            )
        await items.add(ctx, ticket, case, text)
        _count_today(ctx, case, "complaint-messages")
        return texts.COMPLAIN_ADDED.format(ticket=ticket.id)
    if await _used_today(ctx, case, "complaints") >= ctx.settings.complaint_daily_cap:
        return texts.COMPLAIN_CAP.format(
            limit=ctx.settings.complaint_daily_cap, day=_tomorrow(), call=await _call(ctx, case)
        )
    opened = await items.open_new(
        ctx, case, binding, kind="complaint", text=text, about=ctx.state.get("about")
    )
    _count_today(ctx, case, "complaints")
    ctx.state["sub"] = "more"
    return texts.COMPLAIN_RECEIVED.format(
        ticket=opened.ticket.id,
        due=tickets.due_words(opened.ticket),
        receipt=receipts.url(ctx.settings.public_base_url, opened.receipt),
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
