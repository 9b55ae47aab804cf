"""Enforcement progress (执行进度): the case's public timeline with the money received and
paid out; "I have an asset lead" (财产线索) becomes a ticket for the enforcement officer,
with text and photos."""

from __future__ import annotations

from bot.core.reply import Reply
from bot.rules import enforcement
from handlers import items, texts
from handlers.context import Context
from storage.models import Binding, Case


async def start(ctx: Context, case: Case, binding: Binding) -> Reply:
    events, received, paid = await enforcement.timeline(ctx.session, case.id or 0)
    ctx.state.update(step="progress", sub="timeline", ticket_id=None)
    if not events:
        return Reply(texts.PROGRESS_NONE_LEAD, texts.PROGRESS_CHOICES, item=f"case:{case.id}")
    progress = texts.PROGRESS_LEAD.format(
        case_number=case.case_number,
        lines="\n".join(
            texts.event_line(e.kind, e.happened_at, e.amount_cents, e.note) for e in events
        ),
        received=texts.yuan(received),
        paid=texts.yuan(paid),
    )
    return Reply(progress, texts.PROGRESS_CHOICES, item=f"case:{case.id}")


async def receive(ctx: Context, case: Case, binding: Binding) -> Reply:
    if ctx.state.get("sub") == "timeline":
        if ctx.inbound.plain == "1":
            ctx.state["sub"] = "lead"
            return Reply(texts.LEAD_PROMPT_LEAD, (texts.TO_MENU,))
        return await start(ctx, case, binding)
    text = texts.PHOTO if ctx.inbound.kind == "image" else ctx.inbound.text.strip()
    if not text:
        return Reply(texts.LEAD_PROMPT_LEAD, (texts.TO_MENU,))
    ticket = await items.current(ctx, case)
    if ticket is not None:
        await items.add(ctx, ticket, case, text)
        return Reply(
            texts.LEAD_ADDED_LEAD.format(ticket=ticket.id),
            (texts.TO_MENU,),
            item=f"ticket:{ticket.id}",
        )
    opened = await items.open_new(ctx, case, binding, kind="asset_lead", text=text)
    return items.received(ctx, opened, texts.LEAD_RECEIVED)
