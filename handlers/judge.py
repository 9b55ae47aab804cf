"""Staff commands in chat: `#n text` answers, `#n 结` closes, `待办` lists open items."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from functools import partial

from sqlalchemy import select

from bot import escalation, mediation, tickets
from bot.clock import CHINA_TZ, now, say_waited
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
    if text.startswith("请假"):
        return await away(ctx, staff, text)
    if text in ("在岗", "销假", "回来了"):
        await escalation.set_away(ctx.session, staff, None, actor=f"staff:{staff.username}")
        return texts.BACK
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
    if body in ("认领", "领"):
        return await claim(ctx, staff, ticket)
    if body.startswith("转"):
        return await transfer(ctx, staff, ticket, body[1:].strip())
    if body in CLOSE_WORDS:
        await tickets.close(ctx.session, staff=staff, ticket=ticket)
        ctx.after_commit.append(partial(rating.ask_after_close, ctx.redis, ticket))
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


AWAY_UNTIL = re.compile(r"^请假\s*(?:至|到)?\s*(\d{1,2})月(\d{1,2})[日号]?$")


async def away(ctx: Context, staff: Staff, text: str) -> str:
    match = AWAY_UNTIL.match(text.replace(" ", ""))
    if match is None:
        return texts.AWAY_BAD
    today = now().astimezone(CHINA_TZ).date()
    try:
        day = date(today.year, int(match.group(1)), int(match.group(2)))
        if day < today:
            day = date(today.year + 1, day.month, day.day)  # 请假至1月3日, said in December
    except ValueError:
        return texts.AWAY_BAD
    until = datetime.combine(day + timedelta(days=1), time(0), CHINA_TZ)  # away through that day
    await escalation.set_away(ctx.session, staff, until, actor=f"staff:{staff.username}")
    return texts.AWAY_SET.format(until=f"{day.month}月{day.day}日（含）")


async def claim(ctx: Context, staff: Staff, ticket: Ticket) -> str:
    if ticket.assignee_id is not None:
        holder = await ctx.session.get(Staff, ticket.assignee_id)
        return texts.CLAIM_TAKEN.format(ticket=ticket.id, name=holder.name if holder else "他人")
    if ticket.team != staff.team:
        return texts.CLAIM_NOT_TEAM.format(ticket=ticket.id)
    if not await escalation.claim(ctx.session, staff, ticket):
        await ctx.session.refresh(ticket)
        holder = await ctx.session.get(Staff, ticket.assignee_id) if ticket.assignee_id else None
        return texts.CLAIM_TAKEN.format(ticket=ticket.id, name=holder.name if holder else "他人")
    return texts.CLAIMED.format(ticket=ticket.id)


async def transfer(ctx: Context, staff: Staff, ticket: Ticket, rest: str) -> str:
    parts = rest.split(maxsplit=1)
    if not parts:
        return texts.TRANSFER_BAD.format(ticket=ticket.id)
    target = (
        await ctx.session.execute(select(Staff).where(Staff.username == parts[0], Staff.active))
    ).scalar_one_or_none()
    if target is None or target.court_id != staff.court_id:
        return texts.TRANSFER_NO_STAFF.format(username=parts[0])
    if ticket.kind == "complaint" and target.id == ticket.subject_staff_id:
        return texts.TRANSFER_NO_STAFF.format(username=parts[0])  # never to the person named
    if not await escalation.transfer(
        ctx.session, staff, ticket, target, parts[1] if len(parts) > 1 else ""
    ):
        return texts.CLAIM_TAKEN.format(ticket=ticket.id, name="他人")
    return texts.TRANSFERRED.format(ticket=ticket.id, name=target.name)
