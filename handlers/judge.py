"""Staff commands in chat: `#n text` answers, `#n 结` closes, `待办` lists open items."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from bot.core.clock import court_tz, now, say_time, say_waited
from bot.core.masking import mask_name
from bot.core.reply import Reply
from bot.rules import access, escalation, media, mediation, tickets
from bot.rules import staff as staff_accounts
from handlers import desk, texts
from handlers.context import Context
from storage.models import Party, Staff, Ticket

COMMAND = re.compile(r"^[#＃](\d{1,9})\s*(.*)$", re.S)
CLOSE_WORDS = {"结", "办结", "结案"}
NO_SHOW = re.compile(r"^(?:未到|缺席)\s*(\d{1,9})$")


async def command(ctx: Context, staff: Staff) -> Reply:
    text = ctx.inbound.text.strip()
    word = ctx.inbound.plain  # commands read plain; an answer's own text is kept as written
    if word in ("待办", "待办事项", "待处理"):
        return Reply(await todo(ctx, staff))
    if word == desk.BEGIN:
        return await desk.begin(ctx, staff)
    if word == desk.END:
        return await desk.finish(ctx, staff)
    if text.startswith("请假"):
        return Reply(await away(ctx, staff, text))
    if word in ("在岗", "销假", "回来了"):
        await escalation.set_away(ctx.session, staff, None, actor=f"staff:{staff.username}")
        return Reply(texts.BACK)
    no_show = NO_SHOW.match(word)
    if no_show is not None and staff.has_role("mediator"):
        booking = await mediation.record_no_show(ctx.session, staff, int(no_show.group(1)))
        if booking is None:
            return Reply(texts.NO_SHOW_BAD)
        return Reply(texts.NO_SHOW_RECORDED, item=f"booking:{booking.id}")
    match = COMMAND.match(text)
    if match is None:
        return Reply(texts.STAFF_HELP.format(example=a_week_on()))
    number, body = int(match.group(1)), match.group(2).strip()
    me = await access.viewer(ctx.session, staff)
    ticket = await ctx.session.get(Ticket, number)
    verb = _verb(body)
    if ticket is None or not access.may_see(me, ticket):
        if ticket is not None:
            await _record_refusal(ctx, staff, ticket, verb=verb, reason="not theirs to see")
        # One answer whether it exists or not: numbers must not tell what exists.
        return Reply(texts.STAFF_NO_TICKET.format(ticket=number))
    return Reply(await _on_ticket(ctx, me, ticket, body, verb), item=f"ticket:{number}")


async def _on_ticket(ctx: Context, me: access.Viewer, ticket: Ticket, body: str, verb: str) -> str:
    """`#n …` on an item the staff member may see."""
    staff, number = me.staff, ticket.id
    if ticket.status == "closed":
        return texts.STAFF_ALREADY_CLOSED.format(ticket=number)
    if not body:  # `#n` alone: the item as it stands, to read before answering
        return texts.STAFF_THREAD.format(
            ticket=number,
            kind=texts.kind_name(ticket.kind),
            status=texts.status_name(ticket.status),
            thread=await thread_text(ctx, ticket),
        )
    if verb == "transfer":
        return await transfer(ctx, me, ticket, body[1:].strip())
    if not access.may_act(me, ticket, verb):
        return await _refuse(ctx, me, ticket, verb)
    if verb == "claim":
        return await claim(ctx, staff, ticket)
    if verb == "close":
        # Its words, and the rating it asks the party for: handlers.notices, handlers.rating.
        await tickets.close(ctx.session, staff=staff, ticket=ticket)
        return texts.STAFF_CLOSED.format(ticket=number)
    said = texts.ANSWERED.format(
        title=texts.staff_title(staff), name=staff.name, ticket=number, text=body
    )
    await tickets.answer(ctx.session, staff=staff, ticket=ticket, text=body, said=said)
    return texts.STAFF_ANSWERED.format(ticket=number)


async def thread_text(ctx: Context, ticket: Ticket) -> str:
    """The whole thread for a staff member's screen: numbered, with times, who said what;
    a photo or a voice message with the link to see or hear it."""
    party = await ctx.session.get(Party, ticket.party_id) if ticket.party_id else None
    litigant = f"{party.role}{mask_name(party.name)}" if party else texts.A_PARTY
    lines = []
    messages = await tickets.thread(ctx.session, ticket)
    # A voice without words: "语音留言（12秒）" once its audio is kept (bot.rules.media).
    lengths = await media.seconds_of(
        ctx.session, [m.id for m in messages if m.id and m.msg_type == "voice" and not m.content]
    )
    for i, m in enumerate(messages, start=1):
        if m.direction == "in":
            who, said = litigant, m.content or texts.unsaid(m.msg_type)
            if m.msg_type == "voice" and not m.content and m.media_id and m.id:
                said = texts.voice_note(lengths.get(m.id))
            if m.media_id and m.id and m.msg_type in media.KINDS:
                said += texts.media_line(m.msg_type, ctx.rules.media.link(m.id))
        else:
            staff = await ctx.session.get(Staff, m.staff_id) if m.staff_id else None
            who = f"{texts.staff_title(staff)}{staff.name}" if staff else texts.THE_COURT
            # The answer as the staff member wrote it; an erased one says so.
            said = m.content.split("：", 1)[-1] if m.content else texts.ERASED
        lines.append(f"{i}. {say_time(m.created_at)} {who}：{said}")
    return "\n".join(lines) or texts.NO_MESSAGES_YET


async def _record_refusal(
    ctx: Context, staff: Staff, ticket: Ticket, *, verb: str, reason: str | None
) -> None:
    await access.record_refusal(ctx.session, staff, ticket, verb=verb, reason=reason)


def _verb(body: str) -> str:
    if body in ("认领", "领"):
        return "claim"
    if body.startswith("转"):
        return "transfer"
    if body in CLOSE_WORDS:
        return "close"
    return "answer"


async def _refuse(ctx: Context, me: access.Viewer, ticket: Ticket, verb: str) -> str:
    """Someone who may see the item asked for what their part does not allow: say what
    they can do instead, and record the refusal."""
    await _record_refusal(ctx, me.staff, ticket, verb=verb, reason=access.relation(me, ticket))
    if verb == "claim":
        if ticket.inbox is not None and ticket.assignee_id is not None:
            holder = await ctx.session.get(Staff, ticket.assignee_id)
            return texts.CLAIM_TAKEN.format(
                ticket=ticket.id, name=holder.name if holder else "他人"
            )
        return texts.CLAIM_NOT_TEAM.format(ticket=ticket.id)
    if access.relation(me, ticket) == "leader":
        return texts.LEADER_ONLY_REASSIGN.format(ticket=ticket.id)
    return texts.STAFF_CANNOT.format(ticket=ticket.id)


async def todo(ctx: Context, staff: Staff) -> str:
    items = await tickets.open_for_staff(ctx.session, await access.viewer(ctx.session, staff))
    if not items:
        return texts.STAFF_TODO_EMPTY
    lines = []
    for ticket, case in items:
        party = await ctx.session.get(Party, ticket.party_id) if ticket.party_id else None
        who = f"{party.role}{mask_name(party.name)}" if party else "当事人"
        state = texts.status_name(ticket.status)
        words = await tickets.first_words(ctx.session, ticket, limit=30)
        lines.append(
            f"#{ticket.id} {texts.kind_name(ticket.kind)} {case.case_number} {who} "
            f"{state}，已等{say_waited(ticket.created_at)}\n    “{words}”"
        )
    return texts.STAFF_TODO.format(lines="\n".join(lines))


def a_week_on() -> str:
    """An example date for 请假 that is always ahead of today (in China time)."""
    day = now().astimezone(court_tz()).date() + timedelta(days=7)
    return f"{day.month}月{day.day}日"


AWAY_UNTIL = re.compile(r"^请假\s*(?:至|到)?\s*(\d{1,2})月(\d{1,2})[日号]?$")


async def away(ctx: Context, staff: Staff, text: str) -> str:
    match = AWAY_UNTIL.match(text.replace(" ", ""))
    if match is None:
        return texts.AWAY_BAD.format(example=a_week_on())
    today = now().astimezone(court_tz()).date()
    try:
        day = date(today.year, int(match.group(1)), int(match.group(2)))
        if day < today:
            day = date(today.year + 1, day.month, day.day)  # 请假至1月3日, said in December
    except ValueError:
        return texts.AWAY_BAD.format(example=a_week_on())
    until = datetime.combine(day + timedelta(days=1), time(0), court_tz())  # away through that day
    await escalation.set_away(ctx.session, staff, until, actor=f"staff:{staff.username}")
    return texts.AWAY_SET.format(until=f"{day.month}月{day.day}日（含）")


async def claim(ctx: Context, staff: Staff, ticket: Ticket) -> str:
    if not await escalation.claim(ctx.session, ctx.rules.deadlines, staff, ticket):
        await ctx.session.refresh(ticket)
        holder = await ctx.session.get(Staff, ticket.assignee_id) if ticket.assignee_id else None
        return texts.CLAIM_TAKEN.format(ticket=ticket.id, name=holder.name if holder else "他人")
    return texts.CLAIMED.format(ticket=ticket.id)


async def transfer(ctx: Context, me: access.Viewer, ticket: Ticket, rest: str) -> str:
    """`#n 转 <name or username> [reason]`: to someone of the same court who may then see
    and handle it (bot.rules.access.may_transfer); a name two people share is asked back."""
    parts = rest.split(maxsplit=1)
    if not parts:
        return texts.TRANSFER_BAD.format(ticket=ticket.id)
    who, reason = parts[0], parts[1] if len(parts) > 1 else ""
    if not access.may_act(me, ticket, "transfer"):
        return await _refuse(ctx, me, ticket, "transfer")
    candidates = await staff_accounts.named(ctx.session, me.staff.court_id, who)
    if not candidates:
        return texts.TRANSFER_NO_STAFF.format(username=who)
    if len(candidates) > 1:
        lines = "\n".join(
            f"{s.name}（{s.team or texts.staff_title(s)}）：#{ticket.id} 转 {s.username}"
            for s in candidates
        )
        return texts.TRANSFER_WHICH.format(name=who, lines=lines)
    target = candidates[0]
    if not access.may_transfer(me, ticket, await access.viewer(ctx.session, target)):
        await _record_refusal(
            ctx, me.staff, ticket, verb="transfer", reason=f"not to {target.username}"
        )
        if ticket.kind == "complaint":
            return texts.TRANSFER_COMPLAINT.format(ticket=ticket.id, name=target.name)
        return texts.TRANSFER_NOT_ALLOWED.format(ticket=ticket.id, name=target.name)
    if not await escalation.transfer(
        ctx.session, ctx.rules.deadlines, me.staff, ticket, target, reason
    ):
        return texts.CLAIM_TAKEN.format(ticket=ticket.id, name="他人")
    return texts.TRANSFERRED.format(ticket=ticket.id, name=target.name)
