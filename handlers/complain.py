"""Complaints and reports (投诉举报): what it is about, then the text. Handled by the
court's supervision team, never by the staff member it is about (bot.rules.tickets.route)."""

from __future__ import annotations

from datetime import timedelta

from bot.core.clock import court_tz, now
from bot.core.reply import Reply
from bot.rules import caps
from handlers import home, items, texts
from handlers.context import Context
from storage.models import Binding, Case, Court

ABOUT = {"1": "staff", "2": "process", "3": "other_party", "4": "other"}


async def start(ctx: Context, case: Case, binding: Binding) -> Reply:
    if await _used_today(ctx, case, caps.COMPLAINTS) >= ctx.settings.complaint_daily_cap:
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
        if await _used_today(ctx, case, caps.COMPLAINT_MESSAGES) >= cap:
            return Reply(
                texts.COMPLAIN_MESSAGE_CAP.format(
                    limit=cap, day=_tomorrow(), call=await _call(ctx, case)
                ),
                item=f"ticket:{ticket.id}",
            )
        await items.add(ctx, ticket, case, text)
        _count_today(ctx, case, caps.COMPLAINT_MESSAGES)
        return Reply(
            texts.COMPLAIN_ADDED_LEAD.format(ticket=ticket.id),
            (texts.TO_MENU,),
            item=f"ticket:{ticket.id}",
        )
    if await _used_today(ctx, case, caps.COMPLAINTS) >= ctx.settings.complaint_daily_cap:
        return await _capped(ctx, case)
    opened = await items.open_new(
        ctx, case, binding, kind="complaint", text=text, about=ctx.state.get("about")
    )
    _count_today(ctx, case, caps.COMPLAINTS)
    ctx.state["sub"] = "more"
    return items.received(ctx, opened, texts.COMPLAIN_RECEIVED)


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


async def _used_today(ctx: Context, case: Case, what: str) -> int:
    return await caps.used_today(ctx.redis, what, ctx.inbound.user, case.id)


def _count_today(ctx: Context, case: Case, what: str) -> None:
    """Counted once the complaint is stored: one that was rolled back uses none of the cap."""
    ctx.after_commit.append(caps.count_today(ctx.redis, what, ctx.inbound.user, case.id))


def _tomorrow() -> str:
    day = (now().astimezone(court_tz()) + timedelta(days=1)).date()
    return f"明天（{day.month}月{day.day}日）"
