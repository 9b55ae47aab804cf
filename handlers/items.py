"""What the ask, complaint and asset-lead flows share: the item (ticket) the user is
adding to in this step, or a new one."""

from __future__ import annotations

from bot import tickets
from bot.context import Context
from storage.models import Binding, Case, Ticket


async def current(ctx: Context, case: Case) -> Ticket | None:
    """The ticket this step opened, while it is still open and on this case."""
    ticket_id = ctx.state.get("ticket_id")
    ticket = await ctx.session.get(Ticket, ticket_id) if ticket_id else None
    if ticket is None or ticket.status == "closed" or ticket.case_id != case.id:
        return None
    return ticket


async def add(ctx: Context, ticket: Ticket, case: Case, text: str) -> None:
    await tickets.add_to_ticket(ctx.session, ticket, case, text, ctx.message_id)


async def open_new(
    ctx: Context, case: Case, binding: Binding, *, kind: str, text: str, about: str | None = None
) -> tickets.Opened:
    opened = await tickets.open_ticket(
        ctx.session,
        case=case,
        binding=binding,
        kind=kind,
        text=text,
        message_id=ctx.message_id,
        about=about,
    )
    ctx.state["ticket_id"] = opened.ticket.id
    return opened
