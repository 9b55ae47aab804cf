"""Ask the judge (咨询): the next text becomes a ticket routed to the case's judge; further
texts before going back to the menu join the same ticket."""

from __future__ import annotations

from bot.core.context import Context
from bot.core.reply import Link, Reply
from bot.rules import receipts, tickets
from handlers import items, texts
from storage.models import Binding, Case, Staff


async def start(ctx: Context, case: Case, binding: Binding) -> Reply:
    ctx.state.update(step="ask", ticket_id=None)
    return Reply(texts.ASK_PROMPT_LEAD, (texts.TO_MENU,))


async def receive(ctx: Context, case: Case, binding: Binding) -> Reply:
    text = ctx.inbound.text.strip()
    if not text:
        return Reply(texts.ASK_PROMPT_LEAD, (texts.TO_MENU,))
    return await ask_with(ctx, case, binding, text, [ctx.message_id] if ctx.message_id else [])


async def ask_with(
    ctx: Context, case: Case, binding: Binding, text: str, message_ids: list[int]
) -> Reply:
    """`text` (from the messages `message_ids`) joins the question of this step, or opens it."""
    ticket = await items.current(ctx, case)
    if ticket is not None:
        await items.add(ctx, ticket, case, text, message_ids)
        assignee = await ctx.session.get(Staff, ticket.assignee_id) if ticket.assignee_id else None
        return Reply(
            texts.ASK_ADDED_LEAD.format(
                ticket=ticket.id, who=tickets.holder_words(ticket, assignee)
            ),
            (texts.TO_MENU,),
            item=f"ticket:{ticket.id}",
        )
    opened = await items.open_new(
        ctx, case, binding, kind="question", text=text, message_ids=message_ids
    )
    receipt = receipts.url(ctx.settings.public_base_url, opened.receipt)
    return Reply(
        texts.ASK_RECEIVED.format(
            ticket=opened.ticket.id,
            who=tickets.holder_words(opened.ticket, opened.assignee),
            due=tickets.due_words(opened.ticket),
            receipt=receipt,
        ),
        (texts.TO_MENU_SAID,),
        links=(Link(texts.RECEIPT, receipt),),
        item=f"ticket:{opened.ticket.id}",
    )
