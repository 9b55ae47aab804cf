"""Ask the judge (咨询): the next text becomes a ticket routed to the case's judge; further
texts before going back to the menu join the same ticket."""

from __future__ import annotations

from bot import tickets
from bot.context import Context
from handlers import texts
from storage.models import Binding, Case, Message, Staff, Ticket


async def start(ctx: Context, case: Case, binding: Binding) -> str:
    ctx.state.update(step="ask", ticket_id=None)
    return texts.ASK_PROMPT


def who(assignee: Staff | None) -> str:
    return f"{tickets.staff_title(assignee)}{assignee.name}" if assignee else texts.RECEPTION


async def receive(ctx: Context, case: Case, binding: Binding) -> str:
    text = ctx.inbound.text.strip()
    if not text:
        return texts.ASK_PROMPT
    message = await ctx.session.get(Message, ctx.message_id) if ctx.message_id else None
    ticket = (
        await ctx.session.get(Ticket, ctx.state["ticket_id"])
        if ctx.state.get("ticket_id")
        else None
    )
    if ticket is not None and ticket.status != "closed" and ticket.case_id == case.id:
        await tickets.add_to_ticket(ctx.session, ticket, case, text, message)
        assignee = await ctx.session.get(Staff, ticket.assignee_id) if ticket.assignee_id else None
        return texts.ASK_ADDED.format(ticket=ticket.id, who=who(assignee))
    opened = await tickets.open_ticket(
        ctx.session, case=case, binding=binding, kind="question", text=text, message=message
    )
    ctx.state["ticket_id"] = opened.ticket.id
    return texts.ASK_RECEIVED.format(
        ticket=opened.ticket.id,
        who=who(opened.assignee),
        due=tickets.due_words(opened.ticket),
        receipt=opened.receipt[:16],
    )
