"""What the ask, complaint and asset-lead flows share: the item (ticket) the user is
adding to in this step, or a new one."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from bot.core.reply import Link, Reply
from bot.rules import media, receipts, tickets
from handlers import texts
from handlers.context import Context
from storage.models import Binding, Case, Message, Ticket


async def current(ctx: Context, case: Case) -> Ticket | None:
    """The ticket this step opened, while it is still open and on this case. A question the
    judge has answered is not extended: what comes after the answer is a new question."""
    ticket_id = ctx.state.get("ticket_id")
    ticket = await ctx.session.get(Ticket, ticket_id) if ticket_id else None
    if ticket is None or ticket.status == "closed" or ticket.case_id != case.id:
        return None
    if ticket.kind == "question" and ticket.status == "answered":
        return None
    return ticket


async def add(
    ctx: Context, ticket: Ticket, case: Case, text: str, message_ids: list[int] | None = None
) -> None:
    first, *more = message_ids if message_ids is not None else [ctx.message_id]
    said = await _for_staff(ctx, text, [first, *more])
    await tickets.add_to_ticket(ctx.session, ticket, case, said, first)
    for message_id in more:
        await tickets.file_under(ctx.session, message_id, ticket)


async def open_new(
    ctx: Context,
    case: Case,
    binding: Binding,
    *,
    kind: str,
    text: str,
    about: str | None = None,
    message_ids: list[int] | None = None,
) -> tickets.Opened:
    """A new item from this message (or from the messages `message_ids`, kept earlier)."""
    first, *more = message_ids if message_ids else [ctx.message_id]
    opened = await tickets.open_ticket(
        ctx.session,
        case=case,
        binding=binding,
        kind=kind,
        text=await _for_staff(ctx, text, [first, *more]),
        message_id=first,
        deadlines=ctx.rules.deadlines,
        about=about,
    )
    for message_id in more:
        await tickets.file_under(ctx.session, message_id, opened.ticket)
    ctx.state["ticket_id"] = opened.ticket.id
    return opened


async def _for_staff(ctx: Context, text: str, message_ids: list[int | None]) -> str:
    """The words staff are told; a photo or a voice message comes with a link to it: this
    one, or one kept earlier that the item is made of (a sentence said in the menu)."""
    if ctx.inbound.media_id and ctx.message_id and ctx.inbound.kind in media.KINDS:
        url = ctx.rules.media.link(ctx.message_id)
        return f"{text}\n{texts.media_line(ctx.inbound.kind, url)}"
    kept = [i for i in message_ids if i is not None and i != ctx.message_id]
    if not kept:  # the usual case, a typed text: no query
        return text
    found = await ctx.session.execute(
        select(col(Message.id), col(Message.msg_type))
        .where(
            col(Message.id).in_(kept),
            col(Message.media_id).is_not(None),
            col(Message.msg_type).in_(media.KINDS),
        )
        .order_by(col(Message.id))
    )
    lines = [texts.media_line(kind, ctx.rules.media.link(i)) for i, kind in found.all() if i]
    return "\n".join([text, *lines])


def received(ctx: Context, opened: tickets.Opened, words: str) -> Reply:
    """What a person is told of an item just opened (`words`: its text in handlers.texts):
    its number, who holds it, by when, and the link to its receipt."""
    receipt = receipts.url(ctx.settings.public_base_url, opened.receipt)
    return Reply(
        words.format(
            ticket=opened.ticket.id,
            who=texts.holder_words(opened.ticket, opened.assignee),
            due=texts.due_words(opened.ticket),
            receipt=receipt,
        ),
        (texts.TO_MENU_SAID,),
        links=(Link(texts.RECEIPT, receipt),),
        item=f"ticket:{opened.ticket.id}",
    )
