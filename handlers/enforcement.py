"""Enforcement progress (执行进度): the case's public timeline with the money received and
paid out; "I have an asset lead" (财产线索) becomes a ticket for the enforcement officer,
with text and photos."""

from __future__ import annotations

from bot.core.context import Context
from bot.core.reply import Link, Reply
from bot.rules import enforcement, receipts, tickets
from handlers import items, texts
from storage.models import Binding, Case


async def start(ctx: Context, case: Case, binding: Binding) -> Reply:
    events, received, paid = await enforcement.timeline(ctx.session, case.id or 0)
    ctx.state.update(step="progress", sub="timeline", ticket_id=None)
    if not events:
        return Reply(texts.PROGRESS_NONE_LEAD, texts.PROGRESS_CHOICES, item=f"case:{case.id}")
    progress = texts.PROGRESS_LEAD.format(
        case_number=case.case_number,
        lines="\n".join(enforcement.describe(e) for e in events),
        received=enforcement.yuan(received),
        paid=enforcement.yuan(paid),
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
    receipt = receipts.url(ctx.settings.public_base_url, opened.receipt)
    return Reply(
        texts.LEAD_RECEIVED.format(
            ticket=opened.ticket.id,
            who=tickets.holder_words(opened.ticket, opened.assignee),
            due=tickets.due_words(opened.ticket),
            receipt=receipt,
        ),
        (texts.TO_MENU_SAID,),
        links=(Link(texts.RECEIPT, receipt),),
        item=f"ticket:{opened.ticket.id}",
    )
