"""Staff commands in chat: `#n text` answers, `#n 结` closes, `待办` lists open items."""

from __future__ import annotations

import re

from bot import mediation, tickets
from bot.clock import say_waited
from bot.context import Context
from bot.masking import mask_name
from handlers import rating, texts
from storage import audit
from storage.models import Party, Staff, Ticket

COMMAND = re.compile(r"^[#＃](\d{1,9})\s*(.*)$", re.S)
CLOSE_WORDS = {"结", "办结", "结案"}
NO_SHOW = re.compile(r"^(?:未到|缺席)\s*(\d{1,9})$")


async def command(ctx: Context, staff: Staff) -> str:
    text = ctx.inbound.text.strip()
    if text in ("待办", "待办事项", "待处理"):
        return await todo(ctx, staff)
    no_show = NO_SHOW.match(text)
    if no_show is not None and staff.has_role("mediator"):
        booking = await mediation.record_no_show(ctx.session, staff, int(no_show.group(1)))
        return texts.NO_SHOW_RECORDED if booking else texts.NO_SHOW_BAD
    match = COMMAND.match(text)
    if match is None:
        return texts.STAFF_HELP
    number, body = int(match.group(1)), match.group(2).strip()
    ticket = await ctx.session.get(Ticket, number)
    if ticket is None:
        return texts.STAFF_NO_TICKET.format(ticket=number)
    if not tickets.may_handle(staff, ticket):
        await audit.append(
            ctx.session,
            actor=f"staff:{staff.username}",
            action="ticket.refused",
            subject=f"ticket:{ticket.id}",
            case_id=ticket.case_id,
            payload={"reason": "not routed to this staff member or team"},
        )
        if ticket.kind == "complaint":
            return texts.STAFF_NO_TICKET.format(ticket=number)  # not even that it exists
        return texts.STAFF_NOT_YOURS.format(ticket=number)
    if ticket.status == "closed":
        return texts.STAFF_ALREADY_CLOSED.format(ticket=number)
    if body in CLOSE_WORDS:
        await tickets.close(ctx.session, staff=staff, ticket=ticket)
        await rating.ask_after_close(ctx.redis, ticket)
        return texts.STAFF_CLOSED.format(ticket=number)
    if not body:
        return texts.STAFF_EMPTY_ANSWER.format(ticket=number)
    await tickets.answer(ctx.session, staff=staff, ticket=ticket, text=body)
    return texts.STAFF_ANSWERED.format(ticket=number)


async def todo(ctx: Context, staff: Staff) -> str:
    items = await tickets.open_for_staff(ctx.session, staff)
    if not items:
        return texts.STAFF_TODO_EMPTY
    lines = []
    for ticket, case in items:
        party = await ctx.session.get(Party, ticket.party_id) if ticket.party_id else None
        who = f"{party.role}{mask_name(party.name)}" if party else "当事人"
        state = tickets.STATUS_NAMES.get(ticket.status, ticket.status)
        lines.append(
            f"#{ticket.id} {tickets.KIND_NAMES.get(ticket.kind, '诉求')} {case.case_number} {who} "
            f"{state}，已等{say_waited(ticket.created_at)}"
        )
    return texts.STAFF_TODO.format(lines="\n".join(lines))
