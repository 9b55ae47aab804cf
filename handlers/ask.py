"""Ask the judge (咨询): the next text becomes a ticket routed to the case's judge; further
texts before going back to the menu join the same ticket."""

from __future__ import annotations

from bot.core.reply import Reply
from handlers import items, texts
from handlers.context import Context
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
            texts.ASK_ADDED_LEAD.format(ticket=ticket.id, who=texts.holder_words(ticket, assignee)),
            (texts.TO_MENU,),
            item=f"ticket:{ticket.id}",
        )
    opened = await items.open_new(
        ctx, case, binding, kind="question", text=text, message_ids=message_ids
    )
    return items.received(ctx, opened, texts.ASK_RECEIVED)
