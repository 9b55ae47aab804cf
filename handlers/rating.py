"""Rating (评价): 满意 / 基本满意 / 不满意 and an optional comment, of one ticket's handling
or of the court's service in general (the rules: bot.rules.ratings). Menu 5 starts it; so
does a litigant's first message at the menu after one of their tickets was closed."""

from __future__ import annotations

from bot.core.reply import Choice, Reply
from bot.rules import ratings, tickets
from handlers import home, texts
from handlers.context import Context
from storage.models import Binding, Case, Ticket

SCORES = {"1": 1, "2": 2, "3": 3, "满意": 1, "基本满意": 2, "不满意": 3}
SERVICE = "9"
SERVICE_WORDS = "本院的整体服务"
THIS_ONE = "这件事的办理"


async def start(ctx: Context, case: Case, binding: Binding) -> Reply:
    mine = [
        t
        for t in await tickets.for_user(ctx.session, ctx.inbound.user, case.id or 0)
        if t.status != "open"
    ]
    if not mine:  # nothing of theirs to rate: no list with one choice, straight to the score
        ctx.state.update(step="rate", sub="score", rate_ticket=None)
        return texts.RATE_NOTHING_YET + _score(SERVICE_WORDS)
    # One number per line, the one to reply with; the item is named by its words.
    listed = [
        Choice(
            str(i),
            f"{texts.kind_name(t.kind)}"
            f"“{texts.gist(await tickets.first_words(ctx.session, t), 12)}”"
            f"（{texts.status_name(t.status)}）",
        )
        for i, t in enumerate(mine[:8], start=1)
    ]
    ctx.state.update(step="rate", sub="pick", rate_options=[t.id for t in mine[:8]])
    return Reply(texts.RATE_PICK_LEAD, (*listed, texts.RATE_SERVICE, texts.TO_MENU))


def _score(what: str, ticket_id: int | None = None) -> Reply:
    return Reply(
        texts.RATE_SCORE_LEAD.format(what=what),
        (*texts.SCORE_CHOICES, texts.TO_MENU),
        item=f"ticket:{ticket_id}" if ticket_id else None,
    )


async def receive(ctx: Context, case: Case, binding: Binding) -> Reply:
    text = ctx.inbound.plain if ctx.state.get("sub") != "comment" else ctx.inbound.text.strip()
    sub = ctx.state.get("sub")
    if sub == "pick":
        options = ctx.state.get("rate_options", [])
        if text == SERVICE:
            ctx.state.update(sub="score", rate_ticket=None)
            return _score(SERVICE_WORDS)
        if text.isdigit() and 1 <= int(text) <= len(options):
            ctx.state.update(sub="score", rate_ticket=options[int(text) - 1])
            return _score(THIS_ONE, options[int(text) - 1])
        return await start(ctx, case, binding)
    if sub == "score":
        score = SCORES.get(text)
        if score is None:
            ticket_id = ctx.state.get("rate_ticket")
            return _score(THIS_ONE if ticket_id else SERVICE_WORDS, ticket_id)
        rating = await ratings.give(
            ctx.session,
            openid=ctx.inbound.user,
            case_id=case.id or 0,
            ticket_id=ctx.state.get("rate_ticket"),
            score=score,
        )
        if rating is None:
            return await _done(ctx, texts.RATE_TOO_LATE)
        ctx.state.update(sub="comment", rating_id=rating.id)
        return Reply(texts.RATE_THANKS, (texts.TO_MENU_SAID,), item=f"rating:{rating.id}")
    if sub == "comment" and text:
        await ratings.comment(
            ctx.session,
            openid=ctx.inbound.user,
            case_id=case.id,
            rating_id=ctx.state.get("rating_id") or 0,
            text=text,
        )
        return await _done(ctx, texts.RATE_COMMENT_SAVED)
    return await start(ctx, case, binding)


async def _done(ctx: Context, prefix: str) -> Reply:
    home.home(ctx)
    return prefix + await home.menu_text(ctx)


async def asked_after_close(ctx: Context, case: Case, binding: Binding) -> tuple[Case, Binding]:
    """A litigant whose ticket was closed since their last message was asked to rate it
    (the closing's notice): this message answers that, 1/2/3, on that ticket's case —
    when they are at the menu, or still in the step of an item that is closed now (a
    question they asked, say). The case and binding to go on with."""
    if ctx.message_id is None or not (ctx.state.get("step") is None or await _item_closed(ctx)):
        return case, binding
    ticket = await ratings.asked(ctx.session, ctx.inbound.user, ctx.message_id)
    if ticket is None:
        return case, binding
    if ticket.case_id != case.id:
        found = await tickets.active_case(ctx.session, ctx.inbound.user, ticket.case_id)
        if found is None:  # no longer theirs to see
            return case, binding
        case, binding = found
    ctx.state.update(case_id=case.id, step="rate", sub="score", rate_ticket=ticket.id)
    return case, binding


async def _item_closed(ctx: Context) -> bool:
    """Whether the item this step adds to is closed (the dialog loaded it with the case)."""
    ticket_id = ctx.state.get("ticket_id")
    ticket = await ctx.session.get(Ticket, ticket_id) if ticket_id else None
    return ticket is not None and ticket.status == "closed"
