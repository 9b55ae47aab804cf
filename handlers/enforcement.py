"""Enforcement progress (执行进度): the case's public timeline with the money received and
paid out; "I have an asset lead" (财产线索) becomes a ticket for the enforcement officer,
with text and photos."""

from __future__ import annotations

from bot.core.context import Context
from bot.rules import enforcement, receipts, tickets
from handlers import items, texts
from storage.models import Binding, Case


async def start(ctx: Context, case: Case, binding: Binding) -> str:
    events, received, paid = await enforcement.timeline(ctx.session, case.id or 0)
    ctx.state.update(step="progress", sub="timeline", ticket_id=None)
    if not events:
        return texts.PROGRESS_NONE
    return texts.PROGRESS.format(
        case_number=case.case_number,
        lines="\n".join(enforcement.describe(e) for e in events),
        received=enforcement.yuan(received),
        paid=enforcement.yuan(paid),
    )


async def receive(ctx: Context, case: Case, binding: Binding) -> str:
    if ctx.state.get("sub") == "timeline":
        if ctx.inbound.plain == "1":
            ctx.state["sub"] = "lead"
            return texts.LEAD_PROMPT
        return await start(ctx, case, binding)
    text = texts.PHOTO if ctx.inbound.kind == "image" else ctx.inbound.text.strip()
    if not text:
        return texts.LEAD_PROMPT
    ticket = await items.current(ctx, case)
    if ticket is not None:
        await items.add(ctx, ticket, case, text)
        return texts.LEAD_ADDED.format(ticket=ticket.id)
    opened = await items.open_new(ctx, case, binding, kind="asset_lead", text=text)
    return texts.LEAD_RECEIVED.format(
        ticket=opened.ticket.id,
        who=tickets.holder_words(opened.ticket, opened.assignee),
        due=tickets.due_words(opened.ticket),
        receipt=receipts.url(ctx.settings.public_base_url, opened.receipt),
    )
